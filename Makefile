# The two commands of the README: `make report` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JOURNEYS := $(VENV)/bin/journeys
STAMP := $(VENV)/.installed
SAMPLE_DB ?= data/sample.duckdb
SAMPLE_FILES := $(wildcard data/sample/*.csv.gz)

.PHONY: setup report test bench lint sample clean browser audit

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,spark,dagster]'
	touch $(STAMP)

setup: $(STAMP)

# The whole pipeline on data/sample/, from an empty database, then the report.
report: $(STAMP)
	rm -f $(SAMPLE_DB) $(SAMPLE_DB).wal
	$(JOURNEYS) ingest $(SAMPLE_FILES) --db $(SAMPLE_DB)
	$(JOURNEYS) build --db $(SAMPLE_DB)
	$(JOURNEYS) report --db $(SAMPLE_DB) --out reports
	@echo "open reports/report.html"

# Headless Chromium for the report's browser tests (tests/report/test_browser.py), from Debian's
# packages: playwright drives /usr/bin/chromium (it cannot download a browser of its own here).
# Installs only when /usr/bin/chromium is missing; without root it says what to run, and the browser
# tests skip with the same hint.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x "$(CHROMIUM)" ]; then \
		echo "chromium: $(CHROMIUM) is present"; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "chromium: installing Debian's chromium (apt-get) for the browser tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && \
		echo "chromium: installed $(CHROMIUM)"; \
	else \
		echo "chromium: $(CHROMIUM) is missing and this is not root."; \
		echo "  Run: sudo apt-get update && sudo apt-get install -y chromium   (then make test again)"; \
		echo "  Until then the report's browser tests are skipped."; \
	fi

test: $(STAMP) browser
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .

# Regenerate the committed sample (byte-identical for the same seed).
sample: $(STAMP)
	$(PY) -c 'from pipeline.simulate import SAMPLE, simulate, write_sample; write_sample(simulate(**SAMPLE), "data/sample")'

# Known vulnerabilities (PyPI advisory data) in the dependency versions installed in .venv, frozen
# with `pip freeze`. pip-audit lives in its own venv so its dependencies are not audited with ours.
# --strict: a package that could not be checked (advisory service unreachable) fails the target
# instead of passing as "no known vulnerabilities".
# pip-audit stays the primary check. Only when it fails because a package "could not be audited"
# (its per-version endpoint pypi.org/pypi/<name>/<version>/json answers 404 in some sandboxes) and
# reports no vulnerability, tools/audit_latest.py takes over: it proves "no known advisory" only for
# pins equal to the project's latest release, and fails listing every other pin as unverified.
AUDIT_VENV := .venv-audit
audit: $(STAMP)
	@test -x $(AUDIT_VENV)/bin/pip-audit || { $(PYTHON) -m venv $(AUDIT_VENV) && \
		$(AUDIT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check pip-audit; }
	$(PY) -m pip freeze --exclude-editable --disable-pip-version-check > $(AUDIT_VENV)/requirements.txt
	@log=$(AUDIT_VENV)/pip-audit.log; status=0; \
	$(AUDIT_VENV)/bin/pip-audit --strict --no-deps --disable-pip --progress-spinner off \
		-r $(AUDIT_VENV)/requirements.txt > $$log 2>&1 || status=$$?; \
	cat $$log; \
	if [ $$status -eq 0 ]; then echo "audit: pip-audit passed"; exit 0; fi; \
	if grep -q 'could not be audited' $$log && ! grep -q -E 'known vulnerabilit(y|ies) in|Traceback' $$log; then \
		echo "audit: pip-audit stopped at a package it could not audit (no vulnerability reported);"; \
		echo "audit: fallback tools/audit_latest.py (PyPI advisories of each project's latest release)"; \
		$(PY) tools/audit_latest.py $(AUDIT_VENV)/requirements.txt; \
	else \
		echo "audit: pip-audit failed (exit $$status)"; exit $$status; \
	fi

# The benchmark's comparison with retentioneering (bench/baseline_retentioneering.py) in its own
# venv, since it pins pandas/duckdb versions of its own (bench/requirements-retentioneering.txt).
# An install that fails does not fail the benchmark: its log stays in the venv (install.log) and
# bench/run.py reports that stage as unavailable, with the log's error line.
RETE_VENV := bench/.venv-retentioneering
$(RETE_VENV)/.installed: bench/requirements-retentioneering.txt
	@rm -rf $(RETE_VENV) && mkdir -p $(RETE_VENV)
	@echo "bench: installing $< into $(RETE_VENV) (log: $(RETE_VENV)/install.log)"
	@{ $(PYTHON) -m venv $(RETE_VENV) && \
		$(RETE_VENV)/bin/python -m pip install --disable-pip-version-check -r $<; } > $(RETE_VENV)/install.log 2>&1 \
		&& touch $@ \
		|| { echo "bench: install failed; the stage will be reported unavailable:"; tail -n 3 $(RETE_VENV)/install.log; }

bench: $(STAMP) $(RETE_VENV)/.installed
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .venv-audit $(RETE_VENV) reports $(SAMPLE_DB) $(SAMPLE_DB).wal .pytest_cache .ruff_cache
