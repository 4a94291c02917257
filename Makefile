# Set-up is part of every target: a fresh clone needs only Python 3.11 and pip.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/quickstart
# JAX's persistent compilation cache makes a second quickstart much faster.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax

.PHONY: quickstart test install clean device-kit

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

# What a lent accelerator needs beside the repository (docs/BENCHMARKS.md): the sample data and,
# as Python 3.12 wheels, the packages its image lacks. Carry .device in the device run.
DEVICE_WHEELS = grain==0.2.18 array-record==0.8.6 dm-pix==0.4.5 ml-collections zstandard portpicker
device-kit:
	mkdir -p .device/data .device/whl
	cp -r ../shared/data/voc_samples ../shared/data/coco_samples .device/data/
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	    --platform manylinux2014_x86_64 -d .device/whl $(DEVICE_WHEELS)

clean:
	rm -rf $(VENV) runs .cache .device
