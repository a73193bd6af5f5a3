# The two commands of the README: `make report` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JOURNEYS := $(VENV)/bin/journeys
STAMP := $(VENV)/.installed
SAMPLE_DB ?= data/sample.duckdb
SAMPLE_FILES := $(wildcard data/sample/*.csv.gz)

.PHONY: setup report test bench lint sample clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The whole pipeline on data/sample/, from an empty database, then the report.
report: $(STAMP)
	rm -f $(SAMPLE_DB) $(SAMPLE_DB).wal
	$(JOURNEYS) ingest $(SAMPLE_FILES) --db $(SAMPLE_DB)
	$(JOURNEYS) build --db $(SAMPLE_DB)
	$(JOURNEYS) report --db $(SAMPLE_DB) --out reports
	@echo "open reports/report.html"

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .

# Regenerate the committed sample (byte-identical for the same seed).
sample: $(STAMP)
	$(PY) -c 'from pipeline.simulate import SAMPLE, simulate, write_sample; write_sample(simulate(**SAMPLE), "data/sample")'

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) reports $(SAMPLE_DB) $(SAMPLE_DB).wal .pytest_cache .ruff_cache
