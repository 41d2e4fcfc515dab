# The two commands of the README. Both set up what is missing first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test demo report experiments clean-venv lint install uninstall ctest

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
GRIDS ?= tune-zero-natural zero-natural tune-inn-natural inn-natural mismatch tune-dps-natural paper digital bcr \
	tune-zero-perceptual tune-sdedit unseen held-out-metric
experiments: setup
	for g in $(GRIDS); do $(PY) sim/sweep.py $$g $(if $(WORKER),--worker $(WORKER)) $(if $(AUTOCAST),--autocast $(AUTOCAST)) || exit 1; done
	$(MAKE) --no-print-directory report

clean-venv:
	rm -rf $(VENV)

# GNU Radio module (docs/gnuradio.md): blocks, GRC YAML, examples, models and the link that lets
# Debian's python3 (GNU Radio Companion, grcc -r) import sing and torch. Idempotent; root via sudo.
BUILD ?= build
PREFIX ?= /usr/local
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CMAKE_ARGS ?=
install: setup
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) -DSING_VENV=$(abspath $(VENV)) $(CMAKE_ARGS) > $(BUILD).log || { cat $(BUILD).log; exit 1; }
	cmake --build $(BUILD) > /dev/null
	$(SUDO) cmake --install $(BUILD) > $(BUILD).install.log || { cat $(BUILD).install.log; exit 1; }
	@echo "[install] $$(grep -c '^-- \(Installing\|Up-to-date\)' $(BUILD).install.log) files under $(PREFIX) (list: $(BUILD)/install_manifest.txt)"
	@echo "[install] done: blocks under [SING] in GNU Radio Companion, examples in $(PREFIX)/share/gr-sing/examples"

# Removes everything `make install` put under $(PREFIX), and the folders it leaves empty.
uninstall:
	@if [ -f $(BUILD)/cmake_uninstall.cmake ]; then \
	  $(SUDO) cmake -P $(BUILD)/cmake_uninstall.cmake > $(BUILD).uninstall.log || { cat $(BUILD).uninstall.log; exit 1; }; \
	  echo "[uninstall] removed $$(grep -c '^-- Uninstalling' $(BUILD).uninstall.log) files, $$(grep -c '^-- Removing empty' $(BUILD).uninstall.log) empty folders"; \
	else echo "[uninstall] nothing installed from $(BUILD)/"; fi

# The QA files of the blocks (sing_blocks/qa_*.py) through ctest, against the build tree.
ctest: setup
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) -DSING_VENV=$(abspath $(VENV)) \
	  -DSING_TEST_PYTHON=$(abspath $(PY)) $(CMAKE_ARGS) > $(BUILD).log || { cat $(BUILD).log; exit 1; }
	cmake --build $(BUILD) > /dev/null
	ctest --test-dir $(BUILD) --output-on-failure
