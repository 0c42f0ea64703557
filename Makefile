# pacsportal: `make run` serves the portal, `make test` runs every test.
# Both set up what they need on a fresh Debian 12 machine (as root, or with sudo).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

RUN_PACKAGES := orthanc orthanc-dicomweb orthanc-postgresql python3-venv
TEST_PACKAGES := $(RUN_PACKAGES) postgresql chromium

.PHONY: run test lint bench system-run system-test clean help

help:
	@echo "make run    set up and serve the portal on http://127.0.0.1:$${PORT:-8000}/"
	@echo "make test   set up and run the whole test suite"
	@echo "make lint   ruff, migrations and deploy checks"
	@echo "make bench  the portal against direct Orthanc, same run (about 10 minutes)"

# Install Debian packages only when one is missing, so a second run starts in seconds.
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

# npm fetches the pinned OHIF release; any npm will do, Debian's only if none is there.
system-run:
	$(call apt_install,$(RUN_PACKAGES))
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }

system-test:
	$(call apt_install,$(TEST_PACKAGES))
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }

$(VENV)/.run-installed: requirements.txt
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.test-installed: requirements.txt requirements-dev.txt $(VENV)/.run-installed
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

run: system-run $(VENV)/.run-installed
	@$(PY) -m pacsportal.localenv
	@$(PY) manage.py migrate --noinput -v0
	@$(PY) manage.py collectstatic --noinput -v0
	@$(PY) -m viewer.bundle
	@$(PY) manage.py ensure_admin
	@$(PY) manage.py serve

test: system-test $(VENV)/.test-installed lint
	$(PY) -m viewer.bundle
	@echo "== tests on SQLite =="
	$(PY) -m pytest
	@echo "== tests on PostgreSQL =="
	PORTAL_TEST_DATABASE=postgresql $(PY) -m pytest -m "not browser"

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml compose.dicom.yaml
	DEBUG=true PORTAL_VAR_DIR=$$(mktemp -d) $(PY) manage.py makemigrations --check --dry-run
	@tmp=$$(mktemp -d); env -i PATH="$$PATH" PORTAL_VAR_DIR=$$tmp \
		SECRET_KEY=$$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=') ALLOWED_HOSTS=pacs.example.org \
		ORTHANC_USER=pacsportal ORTHANC_PASSWORD=$$(head -c 24 /dev/urandom | base64 | tr -d '\n/+=') \
		PORTAL_HTTPS=true DATABASE_URL=postgres://portal@db:5432/portal \
		$(PY) manage.py check --deploy --fail-level WARNING

bench: system-test $(VENV)/.test-installed
	$(call apt_install,wrk)
	$(PY) -m viewer.bundle
	$(PY) bench/bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
