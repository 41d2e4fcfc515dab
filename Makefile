# The two commands of the README. Both set up what is missing first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test demo report experiments clean-venv lint

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(PY) sim/demo_radio.py --out out/demo

# Every table, plot and the README results block, from the committed result files (seconds),
# and the paired comparisons with bootstrap intervals (sim/compare.py).
COMPARE_INN := --grid sim/results/inn-natural --grid sim/results/zero-natural --a sing-inn \
	--b deepjscc --b sing-zero@spectral --out sim/results/inn/compare-natural
report: setup
	$(PY) sim/report.py
	$(PY) sim/compare.py $(COMPARE_INN) > /dev/null

# Re-run the experiment grids (resumable: points with a result file are skipped; `--list` on any
# grid prints what is left and the estimated time). WORKER=tcp://host:port fans out over a broker.
GRIDS ?= tune-zero-natural zero-natural tune-inn-natural inn-natural mismatch tune-dps-natural paper digital bcr
experiments: setup
	for g in $(GRIDS); do $(PY) sim/sweep.py $$g $(if $(WORKER),--worker $(WORKER)) $(if $(AUTOCAST),--autocast $(AUTOCAST)) || exit 1; done
	$(MAKE) --no-print-directory report

clean-venv:
	rm -rf $(VENV)
