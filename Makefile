# The two commands: `make run` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: run test bootstrap bootstrap-test messages
.DEFAULT_GOAL := run

bootstrap:
	scripts/bootstrap run

bootstrap-test:
	scripts/bootstrap test

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
	@echo "  Ctrl-C stops everything."
	@echo
	exec .venv/bin/honcho start -f Procfile

test: bootstrap-test messages
	scripts/with-services $(PY) -m pytest $(PYTEST_ARGS)
