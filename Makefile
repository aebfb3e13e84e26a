# make run: install into .venv, apply the schema, make a demo app, start gunicorn.
# make test: install into .venv and run the test suite (test database gobelieve_test, Redis DB 15).
VENV ?= .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app app

.PHONY: run test venv bench

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

venv: $(VENV)/.installed

run: venv
	$(FLASK) check
	$(FLASK) init-db
	$(FLASK) create-app --name demo --if-missing
	$(VENV)/bin/gunicorn -c gunicorn.conf.py app:app

test: venv
	$(FLASK) check
	$(PY) -m pytest -q $(PYTEST_ARGS)
