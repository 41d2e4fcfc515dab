# The two commands of the README. Both set up what is missing first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test demo clean-venv lint

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(PY) sim/demo_radio.py --out out/demo

clean-venv:
	rm -rf $(VENV)
