# `make demo` and `make test` create (or reuse) .venv and install the package into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test e2e install clean

# Debian packages the synth corpus reads: flite and festival (with an HTS and a diphone voice), the other
# synthesizers; wordnet-base, the open text. Installed with apt-get when one is missing (as root, or
# through sudo).
DEBS := flite festival festvox-us-slt-hts festvox-kallpc16k wordnet-base
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
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
