# The two commands a newcomer needs: `make demo` and `make test`. Everything else they use
# (the virtual environment, the package, demo data and models) is created on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
export COVERAGE_SERVING_HOME ?= $(CURDIR)/.coverage_serving

.PHONY: install demo test lint dev clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv>=0.9,<1"
	$(BIN)/uv pip install --python $(BIN)/python --quiet -e ".[dev]"
	touch $@

install: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/coverage-serving demo

test: $(INSTALLED) lint
	$(BIN)/pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .

dev: $(INSTALLED)
	$(BIN)/coverage-serving dev

clean:
	rm -rf $(VENV) $(COVERAGE_SERVING_HOME)
