# The README's two commands: `make demo` and `make test`. Both set up the virtualenv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo down scale scale-down test test-frontend test-pythons lint bench clean

# The other Pythons thorcut supports (pyproject's requires-python and classifiers, the README): each
# gets a virtualenv of its own (.venv-3.12, .venv-3.13), installed like .venv, and runs the suite
# there but for what runs on 3.11 alone: the end-to-end test (tests/e2e, Chromium), the
# multi-process and restart tests (the slow marker), `thorcut dev up`'s whole stacks
# (tests/commands/test_dev.py), PostgreSQL, and the wheel test (which installs the wheel on every
# version itself). A version this machine lacks fails the run, naming how to get it
# (scripts/find_python.py): never a skip.
EXTRA_PYTHONS  ?= 3.12 3.13
PORTABLE_TESTS ?= tests/compare tests/flags tests/commands tests/parity tests/wire tests/backend tests/openfeature tests/test_*.py
PORTABLE_ARGS  ?= -m 'not slow' --ignore=tests/e2e --ignore=tests/commands/test_dev.py --ignore=tests/test_wheel.py
EXTRA_STAMPS   := $(foreach v,$(EXTRA_PYTHONS),.venv-$(v)/.installed)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("thorcut needs Python 3.11+") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,backend]'
	touch $(STAMP)

.venv-%/.installed: pyproject.toml
	@$(PYTHON) scripts/find_python.py $* >/dev/null
	"$$($(PYTHON) scripts/find_python.py $*)" -m venv --clear .venv-$*
	echo '*' > .venv-$*/.gitignore  # git ignores the folder, as 3.13's venv makes it
	.venv-$*/bin/python -m pip install -q --upgrade pip
	.venv-$*/bin/python -m pip install -q -e '.[dev,backend]'
	touch $@

# `make demo PORT=8100` serves the backend on another port (default 8000, or THORCUT_DEV_PORT).
demo: $(STAMP)
	$(BIN)/thorcut dev up $(if $(PORT),--port $(PORT))

down: $(STAMP)
	$(BIN)/thorcut dev down

# The scale-out topology (issue 13; as root): hosts in network namespaces behind HAProxy, Redis behind
# Sentinel; prints what runs where. `make scale HOSTS=2 SCALE_PORT=8700` (defaults 3 and 8600).
# `make scale-down` removes every process, namespace, veth and bridge it made, leftovers of a failed
# `make scale` too. thorcut/dev/scale/ says more.
scale: $(STAMP)
	$(BIN)/python -m thorcut.dev.scale up $(if $(HOSTS),--hosts $(HOSTS)) $(if $(SCALE_PORT),--port $(SCALE_PORT))

scale-down: $(STAMP)
	$(BIN)/python -m thorcut.dev.scale down

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

# The extra versions' virtualenvs come first, so a missing Python fails the run at once.
test: $(EXTRA_STAMPS) lint test-frontend
	$(BIN)/pytest
	THOR_TEST_POSTGRES=$(THOR_TEST_POSTGRES) $(BIN)/pytest -q -p no:cacheprovider \
		tests/backend/test_jobs.py tests/backend/test_rest.py tests/backend/test_openapi.py tests/backend/test_stack.py
	$(MAKE) --no-print-directory test-pythons

# Every version runs even when one fails; the run fails if any did, naming them.
test-pythons: $(EXTRA_STAMPS)
	@failed=""; for v in $(EXTRA_PYTHONS); do \
		echo "== Python $$v ($$(.venv-$$v/bin/python -V 2>&1)): pytest $(PORTABLE_ARGS) $(PORTABLE_TESTS)"; \
		.venv-$$v/bin/pytest -q -p no:cacheprovider $(PORTABLE_ARGS) $(PORTABLE_TESTS) || failed="$$failed $$v"; \
	done; \
	if [ -n "$$failed" ]; then echo "Error: the suite failed on Python$$failed" >&2; exit 1; fi

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
	rm -rf $(VENV) $(foreach v,$(EXTRA_PYTHONS),.venv-$(v)) .thorcut .pytest_cache .mypy_cache .ruff_cache frontend/node_modules frontend/dist
