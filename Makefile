# flightledger: every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak unit integration clean screenshots

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flightledger demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The suite mostly waits on I/O (subprocesses, HTTP, PostgreSQL): several processes pay off
# even on 2 cores. Every test has its own database schema or file, so order does not matter.
# `serial` tests (SIGKILL crash and multi-worker runs) aim their kills at timing windows, so
# they run afterwards on their own, not beside other tests competing for the two cores.
# `slow` tests (long crash loops) belong to `make soak`, not here.
TEST_WORKERS ?= 3

test: $(STAMP) lint
	$(BIN)/pytest -q -n $(TEST_WORKERS) -m "not slow and not serial"
	$(BIN)/pytest -q -p no:cacheprovider -m "serial and not slow"

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

bench: $(STAMP)
	$(BIN)/python -m bench.run

# The dashboard's main states as pictures in docs/screens/ (Playwright + Debian's chromium).
screenshots: $(STAMP)
	$(BIN)/python -m bench.screenshots

# Longer crash and multi-worker runs with fresh seeds (needs PostgreSQL), then the QBO
# throughput bench. SOAK_RUNS=20 make soak for a long soak.
SOAK_RUNS ?= 5

soak: $(STAMP)
	@for i in $$(seq 1 $(SOAK_RUNS)); do \
		echo "soak run $$i of $(SOAK_RUNS) (crash seed $$((1000 + i)))"; \
		FLIGHTLEDGER_CRASH_SEED=$$((1000 + i)) CI=true $(BIN)/pytest -q -m "slow or serial" -p no:cacheprovider \
			tests/integration/test_worker_crash.py tests/integration/test_multi_worker.py \
			tests/integration/test_corrections_crash.py \
			|| exit 1; \
	done
	$(BIN)/python -m bench.run --only throughput

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis flightledger.db*
