# One-command set-up: `make demo` and `make test` each create .venv and install on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo lint test test-fast bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/simpool-bench demo --out demo_out

lint: $(STAMP)
	$(VENV)/bin/ruff check simpool_bench tests benchmarks
	$(VENV)/bin/ruff format --check simpool_bench tests benchmarks
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q -x -n 2 --dist loadfile

test-fast: lint
	$(PY) -m pytest -q -x -n 2 --dist loadfile -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/boxacc_speed.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/vs_peers.py

clean:
	rm -rf $(VENV) demo_out
