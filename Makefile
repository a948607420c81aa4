# Quick start:  make run   (install + start the daemon on ./var, SQLite, Syncthing off)
#               make test  (install everything + ruff, black --check, pytest with coverage)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/local.yaml

.PHONY: install system-deps run test lint format bench clean css

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

system-deps:
	bash scripts/system-deps.sh

run: install
	$(BIN)/media-pipeline run -c $(CONFIG)

lint: install
	$(BIN)/ruff check .
	$(BIN)/black --check --line-length 88 .
	$(BIN)/mypy

test: install system-deps lint
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=85

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/black --line-length 88 .

bench: install system-deps
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/sort.py

clean:
	rm -rf $(VENV) var .coverage .coverage.* htmlcov

# The dashboard's stylesheet, generated once and committed (web/static/app.css), so
# installing and running need no Node. Needs npm; the version is pinned here and in
# web/static/vendor/README.md.
TAILWIND_VERSION := 4.3.5
css:
	cd web/tailwind && npm install --no-save --no-audit --no-fund --no-package-lock \
		tailwindcss@$(TAILWIND_VERSION) @tailwindcss/cli@$(TAILWIND_VERSION)
	cd web/tailwind && npx @tailwindcss/cli -i input.css -o ../static/app.css --minify
