# The two commands a newcomer needs: `make demo` and `make test`. Everything else they use
# (the virtual environment, the package, demo data and models) is created on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The BigQuery emulator for tests and demo-bigquery: Python 3.13 (pyenv's on the machine image).
EMULATOR_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) python3.13)
EMULATOR_VENV := .venv-bigquery
EMULATOR_INSTALLED := $(EMULATOR_VENV)/.installed
EMULATOR_PINS := coverage_serving_tests/emulator
export COVERAGE_SERVING_HOME ?= $(CURDIR)/.coverage_serving

.PHONY: install emulator chromium demo demo-bigquery test lint dev serve bench clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv>=0.9,<1"
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -e ".[dev]"
	touch $@

install: $(INSTALLED)

$(EMULATOR_INSTALLED): $(EMULATOR_PINS)/requirements.txt $(EMULATOR_PINS)/overrides.txt
	test -x $(EMULATOR_VENV)/bin/python || $(EMULATOR_PYTHON) -m venv $(EMULATOR_VENV)
	$(EMULATOR_VENV)/bin/python -m pip install --quiet "uv>=0.9,<1"
	$(EMULATOR_VENV)/bin/uv pip install --python $(EMULATOR_VENV)/bin/python --quiet \
		--override $(EMULATOR_PINS)/overrides.txt -r $(EMULATOR_PINS)/requirements.txt
	$(EMULATOR_VENV)/bin/python -c "from duckdb_extensions import import_extension; \
		[import_extension(name) for name in ('icu', 'ducklake', 'spatial')]"
	touch $@

emulator: $(EMULATOR_INSTALLED)

demo: $(INSTALLED)
	$(BIN)/coverage-serving demo

# The same main job with sources and predictions in a BigQuery emulator started for the run.
demo-bigquery: $(INSTALLED) $(EMULATOR_INSTALLED)
	$(BIN)/coverage-serving demo-bigquery

# Debian's Chromium for the browser test, installed when missing and allowed (root, or sudo
# without a password); without it the browser test is skipped and says why.
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| (sudo -n apt-get update -qq && sudo -n apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the browser test will be skipped"

test: $(INSTALLED) $(EMULATOR_INSTALLED) lint chromium
	$(BIN)/pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/lint-imports  # the layer rule of docs/architecture.md

dev: $(INSTALLED)
	$(BIN)/coverage-serving dev

# On-demand scoring over HTTP on 127.0.0.1:8000 (README: On-demand scoring).
serve: $(INSTALLED)
	$(BIN)/coverage-serving serve

# The scale benchmarks with the Spark peer (benchmarks/README.md); not part of `make test`.
bench: $(INSTALLED)
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -e ".[dev,bench]"
	$(BIN)/python benchmarks/scale.py --spark

clean:
	rm -rf $(VENV) $(EMULATOR_VENV) $(COVERAGE_SERVING_HOME)
