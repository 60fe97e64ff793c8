# Two commands on a fresh machine: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/nexus-aio-*)
STAMP := $(VENV)/.installed

.PHONY: install run test test-core lint format docs bench soak clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml $(wildcard plugins/*/setup.cfg)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[pydantic,schedules,test,dev]' $(foreach p,$(PLUGINS),-e ./$(p))
	touch $(STAMP)

run: install
	$(BIN)/python -m nexus_aio serve --host 127.0.0.1 --port 8000

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy nexus_aio
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

# The figures of docs/benchmarks.md, every peer of issue 13 (FastAPI and Kailash Nexus install
# into .bench/ on first use); BENCH_ARGS adds options, e.g. BENCH_ARGS=--profile (py-spy) or
# BENCH_ARGS=--quick (a temp report).
bench: install
	$(BIN)/python scripts/bench.py --with-fastapi --with-kailash $(BENCH_ARGS)

soak: install
	$(BIN)/python scripts/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .nexus build site *.egg-info
