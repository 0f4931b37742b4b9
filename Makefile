# Every target bootstraps .venv on a fresh machine (Python >= 3.11 on PATH as python3).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# pycanon pins exact numpy/pandas versions: it gets an environment of its own, used only by the
# k-anonymity cross-check (tests/test_kanon_pycanon.py).
PYCANON_VENV  ?= .venv-pycanon
PYCANON_STAMP := $(PYCANON_VENV)/.installed-stamp

.PHONY: demo test lint bench services venv pycanon-venv clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

$(PYCANON_STAMP): scripts/pycanon-requirements.txt
	@test -x $(PYCANON_VENV)/bin/python || $(PYTHON) -m venv $(PYCANON_VENV)
	$(PYCANON_VENV)/bin/python -m pip install --quiet -r scripts/pycanon-requirements.txt
	@touch $(PYCANON_STAMP)

pycanon-venv: $(PYCANON_STAMP)

services:
	@bash scripts/ensure-services.sh

demo: $(STAMP)
	$(VENV)/bin/intelgraph-privacy demo

test: $(STAMP) $(PYCANON_STAMP) services
	$(VENV)/bin/intelgraph-privacy policy test rego/
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# kanon_adult reads ../shared/data/adult/ by default (--data elsewhere); ledger_debits, rtbf and
# the ledger row of dp_release need PostgreSQL (`make services`). --write updates benchmarks/README.md.
bench: $(STAMP) services
	$(PY) benchmarks/redact_apply.py
	$(PY) benchmarks/sidecar_overhead.py
	$(PY) benchmarks/kanon_adult.py
	$(PY) benchmarks/dp_release.py
	$(PY) benchmarks/ledger_debits.py
	$(PY) benchmarks/rtbf.py

clean:
	rm -rf $(VENV) $(PYCANON_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
