# The README's two commands: `make demo` and `make test`. Both set up the virtualenv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo down test test-frontend lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("thorcut needs Python 3.11+") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,backend]'
	touch $(STAMP)

# `make demo PORT=8100` serves the backend on another port (default 8000, or THORCUT_DEV_PORT).
demo: $(STAMP)
	$(BIN)/thorcut dev up $(if $(PORT),--port $(PORT))

down: $(STAMP)
	$(BIN)/thorcut dev down

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --config-file backend/mypy.ini

# The backend's database tests run again on PostgreSQL (a throwaway database on this server).
THOR_TEST_POSTGRES ?= postgres://postgres@127.0.0.1:5432/postgres

# The page's unit tests (Vitest). The Python suite's end-to-end tests (tests/e2e) build the page
# themselves when frontend/dist is missing or stale, as `thorcut dev up` does.
test-frontend:
	cd frontend && npm ci --no-audit --no-fund && npm test

test: lint test-frontend
	$(BIN)/pytest
	THOR_TEST_POSTGRES=$(THOR_TEST_POSTGRES) $(BIN)/pytest -q -p no:cacheprovider \
		tests/backend/test_jobs.py tests/backend/test_rest.py tests/backend/test_openapi.py tests/backend/test_stack.py

bench: $(STAMP)
	$(BIN)/python benchmarks/flag_propagation.py
	$(BIN)/python benchmarks/status_startup.py
	$(BIN)/python benchmarks/channel_layers.py --rate 150
	$(BIN)/python benchmarks/heartbeat_lateness.py
	$(BIN)/python benchmarks/fanout.py --servers uvicorn,daphne
	$(BIN)/python benchmarks/compare_engine.py
	$(BIN)/python benchmarks/replay.py --pairs 20000
	$(BIN)/python benchmarks/tail_throughput.py --runs 5

clean:
	rm -rf $(VENV) .thorcut .pytest_cache .mypy_cache .ruff_cache frontend/node_modules frontend/dist
