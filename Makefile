# `make demo` and `make test` create (or reuse) .venv and install the package into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test e2e install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash recipes/synth/run.sh

test: $(STAMP)
	$(PY) -m pytest -q tests

e2e: $(STAMP)
	$(PY) -m pytest -q -m e2e tests

clean:
	rm -rf exp data/synth-* data/fbank data/manifests data/lang*
