# The two commands of the README. Each sets up everything it needs on a fresh machine.
VENV ?= .venv
# lerobot 0.6.1's environment (Python 3.12, torch 2.11, torchcodec 0.11) for tests_lerobot/.
LEROBOT_VENV ?= .venv-lerobot
PY := $(VENV)/bin/python

.PHONY: demo test test-lerobot setup bench clean

$(VENV)/.installed: pyproject.toml tools/setup.sh
	bash tools/setup.sh $(VENV)
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) tools/demo.py

# The main suite (newest torch/torchcodec), then the lerobot suite wherever its environment can be built.
test: setup
	$(PY) -m pytest -q tests
	$(MAKE) --no-print-directory test-lerobot

test-lerobot:
	@bash tools/setup_lerobot.sh $(LEROBOT_VENV); rc=$$?; \
	if [ $$rc = 3 ]; then echo "make test: tests_lerobot/ NOT RUN (no Python 3.12 for lerobot 0.6.1's environment)"; exit 0; fi; \
	[ $$rc = 0 ] && $(LEROBOT_VENV)/bin/python -m pytest -q tests_lerobot

bench: setup
	$(PY) tools/bench_pack.py
	$(PY) tools/bench_read.py

clean:
	rm -rf demo_out bench_out .pytest_cache
