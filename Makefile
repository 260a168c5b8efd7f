# lpstudy: `make demo` sets up and starts the demo; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export LPSTUDY_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(CURDIR)/data)

.PHONY: setup demo test lint bench-load clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[worker,dev]'
	touch $@

demo: setup
	$(BIN)/lpstudy demo

test: setup
	bash .ci/test.sh

lint: setup
	$(BIN)/ruff check app workers tests bench migrations
	$(BIN)/mypy app

clean:
	rm -rf $(VENV) var *.egg-info
