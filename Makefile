# Set-up is part of every target: a fresh clone needs only Python 3.11 and pip.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/quickstart
# JAX's persistent compilation cache makes a second quickstart much faster.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax

.PHONY: quickstart test install clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

quickstart: $(VENV)/.installed
	$(PY) experiments/main.py --config=experiments/configs/quickstart.py --mode=sequence --workdir=$(WORKDIR)

test: $(VENV)/.installed-test
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs .cache
