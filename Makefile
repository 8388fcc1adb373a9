# The two commands: `make run` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: run test test-fast lint bootstrap bootstrap-test bootstrap-bench messages bench chaos fuzz-money fuzz-lines prod-smoke
.DEFAULT_GOAL := run

bootstrap:
	scripts/bootstrap run

bootstrap-test:
	scripts/bootstrap test

bootstrap-bench:
	scripts/bootstrap bench

messages:
	$(PY) manage.py compilemessages --ignore=.venv -v 0

run: bootstrap messages
	mkdir -p var
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	@echo
	@echo "  esimsite: http://127.0.0.1:8000/   (admin: http://127.0.0.1:8000/admin/)"
	@echo "  operator: operator@example.com / operator-demo-pass"
	@echo "  customer: customer@example.com / customer-demo-pass"
	@echo "  new eSIM: http://127.0.0.1:8000/plans/ (README: playing the phone on the SM-DP+ stand-in, :8430)"
	@echo "  Ctrl-C stops everything."
	@echo
	exec .venv/bin/honcho start -f Procfile

test: bootstrap-test messages
	scripts/with-services $(PY) -m pytest $(PYTEST_ARGS)

# The tests marked `pure` (no database, Redis or localstripe: tests/conftest.py refuses any other
# without the services), on SQLite in memory and a cache in the process; seconds, not minutes.
test-fast: bootstrap messages
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest -m pure -q -p no:cacheprovider $(PYTEST_ARGS)

# The production shape, run and walked from outside (scripts/prod-smoke says what it checks): nginx
# with TLS in front of gunicorn on the production settings, worker and beat, on throwaway services.
# Prints PASS/FAIL lines; exit status 1 if any check fails. `make test` runs its --quick form
# (tests/test_prod_smoke.py).
prod-smoke: bootstrap-test messages
	WITH_SERVICES_QUIET=1 scripts/with-services $(PY) scripts/prod-smoke $(PROD_SMOKE_ARGS)

# Lint, format, types and import contracts (the same hooks as .pre-commit-config.yaml); .ci/run runs
# this before the tests.
lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	@if grep -qs '^\[importlinter\]' .importlinter setup.cfg || grep -qs '^\[tool.importlinter\]' pyproject.toml; then \
		echo ".venv/bin/lint-imports"; .venv/bin/lint-imports; \
	else echo "lint-imports: no contract configured yet"; fi

# Benchmarks (bench/RESULTS.md): each bench on its own throwaway services; figures printed and
# kept in var/bench/<bench>.out. Not part of `make test` (tests/bench/ runs them at tiny sizes).
BENCHES ?= dispatcher ingest threshold throughput burst portal history
# The history bench writes ~12 GB: PostgreSQL gets room for it (bench/history.py's docstring).
HISTORY_PG_OPTS ?= -c shared_buffers=1GB -c max_wal_size=8GB -c maintenance_work_mem=512MB -c checkpoint_timeout=30min
bench: bootstrap-bench messages
	mkdir -p var/bench
	for b in $(BENCHES); do \
		echo "### bench.$$b"; \
		opts=""; if [ $$b = history ]; then opts="$(HISTORY_PG_OPTS)"; fi; \
		WITH_SERVICES_QUIET=1 WITH_SERVICES_PG_OPTS="$$opts" scripts/with-services $(PY) -m bench.$$b 2>&1 | tee var/bench/$$b.out; \
	done
	@echo "### every figure against its goal (bench/common.goal; var/bench/<bench>.out has the rest)"
	@for b in $(BENCHES); do grep -h '^GOAL ' var/bench/$$b.out | sed "s/^GOAL /$$b: /" || echo "$$b: no GOAL line (the bench failed: var/bench/$$b.out)"; done

# The chaos run (bench/chaos.py says what it breaks and what it checks); exit status 1 if an
# invariant fails. CHAOS_ARGS="--lines 2000 --duration 180 --settle 600" for the issue's size.
CHAOS_ARGS ?=
chaos: bootstrap-bench messages
	mkdir -p var/bench
	WITH_SERVICES_QUIET=1 scripts/with-services $(PY) -m bench.chaos $(CHAOS_ARGS) 2>&1 | tee var/bench/chaos.out

# The money model (tests/stateful/test_money_model.py) at a much larger size than in `make test`:
# random (not derandomized) runs, failures shrunk to a minimal step list and kept in
# .hypothesis/money-model so the next run replays them first. Each counterexample becomes a named
# test in tests/stateful/test_money_regressions.py.
FUZZ_MONEY_EXAMPLES ?= 2000
FUZZ_MONEY_STEPS ?= 30
fuzz-money: bootstrap-test messages
	LOG_LEVEL=$${LOG_LEVEL:-ERROR} FUZZ_MONEY_EXAMPLES=$(FUZZ_MONEY_EXAMPLES) FUZZ_MONEY_STEPS=$(FUZZ_MONEY_STEPS) FUZZ_MONEY_RANDOM=1 FUZZ_MONEY_SHRINK=1 \
		scripts/with-services $(PY) -m pytest -p no:logging --show-capture=no --runxfail -q tests/stateful/test_money_model.py $(PYTEST_ARGS)

# The line model (tests/stateful/test_line_model.py: line lifecycle and the network outbox against a
# partner stand-in over HTTP) at a larger size than in `make test`, the same way as fuzz-money;
# failures are kept in .hypothesis/line-model, each becomes a test in test_line_regressions.py.
FUZZ_LINES_EXAMPLES ?= 500
FUZZ_LINES_STEPS ?= 40
fuzz-lines: bootstrap-test messages
	LOG_LEVEL=$${LOG_LEVEL:-ERROR} FUZZ_LINES_EXAMPLES=$(FUZZ_LINES_EXAMPLES) FUZZ_LINES_STEPS=$(FUZZ_LINES_STEPS) FUZZ_LINES_RANDOM=1 FUZZ_LINES_SHRINK=1 \
		scripts/with-services $(PY) -m pytest -p no:logging --show-capture=no -q tests/stateful/test_line_model.py $(PYTEST_ARGS)
