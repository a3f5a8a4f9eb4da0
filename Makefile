# The commands README.md promises. Each creates .venv (or $(VENV)) on first use.
PYTHON ?= python3
VENV ?= .venv
# CI pins the Django series per Python, e.g. DJANGO='django>=5.2,<5.3'
DJANGO ?=
PY := $(VENV)/bin/python
# make demo PORT=8011 (HOST=0.0.0.0 to reach it from another machine)
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: demo test bench install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,redis,postgres]' $(if $(DJANGO),'$(DJANGO)')
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	cd example_project && ../$(PY) manage.py demo --host $(HOST) --port $(PORT)

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
