# make run: install production's packages into .venv, apply the schema, make a demo app, start gunicorn.
# make test: install production's and the test packages into .venv and run the test suite
# (test database gobelieve_test, Redis DB 15).
VENV ?= .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app app
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: run test venv test-venv bench

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements.txt requirements-test.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) -r requirements-test.txt
	touch $@

venv: $(VENV)/.installed

test-venv: $(VENV)/.installed-test

run: venv
	$(FLASK) check
	$(FLASK) init-db
	$(FLASK) create-app --name demo --if-missing
	$(PY) serve.py

test: test-venv
	$(VENV)/bin/ruff check .
	$(FLASK) check
	$(PY) -m pytest -q $(PYTEST_ARGS)
