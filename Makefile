# Two set-up commands on a fresh clone: `make demo` (the main job) and `make test` (everything CI checks).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Fast, predictable threading on small CPU machines (must be set before torch starts).
export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_OFFLINE ?= 1
export DIFFUSERS_OFFLINE ?= 1
export MPLBACKEND ?= Agg

.PHONY: demo test lint format pytest docs bench install clean mutation

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch first, pinned, so that no other torch build is ever pulled in
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e ".[dev,docs,lpips,ray]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/captum-pags sweep --out report

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

pytest: $(STAMP)
	$(PY) -m pytest

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

test: lint docs pytest

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

# Mutation testing of the core modules, one room at a time with that room's tests
# (scripts/mutation.py; base settings in [tool.mutmut] of pyproject.toml); not part of `make test`.
# By default a seeded 20 % sample of every module's mutants (under an hour on 2 cores);
# MUTATION_SAMPLE=1 runs all of them (about four hours).
# `make mutation ROOMS=training MUTANTS='captum_pags.training.losses*' MUTATION_SAMPLE=1` runs one room, matching mutants.
MUTATION_JOBS ?= 2
MUTATION_SAMPLE ?= 0.2
ROOMS ?=
MUTANTS ?=
mutation: $(STAMP)
	$(PY) scripts/mutation.py $(ROOMS) --jobs $(MUTATION_JOBS) --sample $(MUTATION_SAMPLE) $(if $(MUTANTS),--mutants $(MUTANTS))

clean:
	rm -rf docs/_build docs/auto_examples docs/generated report .pytest_cache
