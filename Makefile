# The two commands of the README. Each sets up everything it needs on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup bench clean

$(VENV)/.installed: pyproject.toml tools/setup.sh
	bash tools/setup.sh $(VENV)
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) tools/bench_pack.py
	$(PY) tools/bench_read.py

clean:
	rm -rf demo_out bench_out .pytest_cache
