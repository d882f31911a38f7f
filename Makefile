# The two commands of the README's quick start. Each sets up its own virtual environment.
VENV ?= .venv
PYTHON ?= python3
MODEL ?= examples/models/pdb1akg.uai

.PHONY: run test lint docs clean

# torch is pinned: an open range may fetch a multi-GB CUDA build; 2.13.0 is the CPU build
# that lies on the CI machine's disk.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[dev,docs,convert,dask,torch]" "torch==2.13.0"
	touch $@

## run: the main job, min-sum and sum-product BP on a real UAI model shipped in the repo
run: $(VENV)/.installed
	$(VENV)/bin/fgebm map $(MODEL) --verbose
	$(VENV)/bin/fgebm pr $(MODEL) --verbose

## test: the whole test suite (what CI runs)
test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check factorgraph_ebm tests examples benchmarks

## docs: the API reference from the docstrings, in docs/_build/html; warnings are errors
docs: $(VENV)/.installed
	rm -rf docs/generated
	$(VENV)/bin/python -m sphinx -W --keep-going -E -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) .cache .pytest_cache .hypothesis docs/_build docs/generated
