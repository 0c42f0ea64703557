# pacsportal: `make run` serves the portal, `make test` runs every test.
# Both set up what they need on a fresh Debian 12 or 13 machine (as root, or with sudo).
# `make test` runs the tests that use Orthanc against both Orthanc generations: this
# machine's Debian packages, and the other release's (Debian 12: Orthanc 1.10,
# Debian 13: 1.12) from a root filesystem built once into var/rootfs/ and run with chroot.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

RUN_PACKAGES := orthanc orthanc-dicomweb orthanc-postgresql python3-venv nginx
TEST_PACKAGES := $(RUN_PACKAGES) postgresql chromium debootstrap
# Each pass appends the versions its Orthanc reported; the last line of `make test` shows them.
VERSIONS_REPORT := test-artifacts/orthanc-versions.txt
SECOND_GROUP_LOG := test-artifacts/second-group.log
# What runs through both doors (gunicorn alone, and nginx in front of it).
FRONT_TESTS := tests/test_proxy_roles.py tests/test_attribution.py tests/test_viewer_e2e.py \
	tests/test_proxy_corpus.py tests/test_live_sessions.py tests/test_audit_live.py tests/test_proxy_dicomweb_client.py \
	tests/test_stow_hostile.py tests/test_hostile_clients.py tests/test_live_shares.py tests/test_shares_browser.py \
	tests/test_live_tokens.py tests/test_one_reading_credentials.py tests/test_one_reading_queries.py tests/test_admin_stow.py tests/test_admin_exports.py

.PHONY: run test test-first-group test-second-group lint bench system-run system-test orthanc-other clean help

help:
	@echo "make run    set up and serve the portal on http://127.0.0.1:$${PORT:-8000}/"
	@echo "make test   set up and run the whole test suite"
	@echo "make lint   ruff, mypy, migrations and deploy checks"
	@echo "make bench  the portal against direct Orthanc, same run (about 10 minutes); rewrites docs/performance.md's figures"

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

# The other Debian release's Orthanc packages in a root filesystem (debootstrap, about
# a minute and 360 MB the first time; kept in var/rootfs/ until removed). Needs only python3.
orthanc-other:
	$(call apt_install,debootstrap)
	@$(SUDO) $(PYTHON) -m devstack.debian build other

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

# The passes run as two groups side by side, one per core: each pass uses a little under
# one (84% measured on the nginx pass), and each group draws ports from its own slice.
test: system-test $(VENV)/.test-installed lint orthanc-other
	$(PY) -m viewer.bundle
	@mkdir -p $(dir $(VERSIONS_REPORT)) && rm -f $(VERSIONS_REPORT) $(SECOND_GROUP_LOG)
	@echo "== two groups of passes side by side; the second's output ($(SECOND_GROUP_LOG)) follows the first's =="
	@PORTAL_TEST_PORT_SLOT=1/2 $(MAKE) --no-print-directory test-second-group > $(SECOND_GROUP_LOG) 2>&1 & second=$$!; \
	PORTAL_TEST_PORT_SLOT=0/2 $(MAKE) --no-print-directory test-first-group; first_rc=$$?; \
	wait $$second; second_rc=$$?; \
	echo "== the second group of passes =="; cat $(SECOND_GROUP_LOG); \
	if [ $$first_rc != 0 ] || [ $$second_rc != 0 ]; then \
		echo "== make test FAILED: first group rc=$$first_rc, second group rc=$$second_rc"; exit 1; fi
	@echo "== make test passed against:" && cat $(VERSIONS_REPORT)

test-first-group:
	@echo "== tests on SQLite, $$($(PYTHON) -m devstack.debian describe native) =="
	PORTAL_TEST_VERSIONS_REPORT=$(VERSIONS_REPORT) $(PY) -m pytest
	@echo "== the live tests through the portal's nginx (nginx streams the reads after Django's decision) =="
	PORTAL_TEST_VERSIONS_REPORT=$(VERSIONS_REPORT) PORTAL_TEST_DOOR=nginx $(PY) -m pytest -m "live or browser" $(FRONT_TESTS)
	@echo "== the live tests through nginx, $$($(PYTHON) -m devstack.debian describe other) =="
	PORTAL_TEST_VERSIONS_REPORT=$(VERSIONS_REPORT) PORTAL_TEST_ORTHANC=other PORTAL_TEST_DOOR=nginx \
		$(PY) -m pytest -m "live or browser" $(FRONT_TESTS)
	@echo "== the other Orthanc with its index in PostgreSQL =="
	PORTAL_TEST_VERSIONS_REPORT=$(VERSIONS_REPORT) PORTAL_TEST_ORTHANC=other PORTAL_TEST_DATABASE=postgresql \
		$(PY) -m pytest tests/test_orthanc_server.py

test-second-group:
	@echo "== tests on PostgreSQL, same Orthanc, its index in PostgreSQL too =="
	PORTAL_TEST_VERSIONS_REPORT=$(VERSIONS_REPORT) PORTAL_TEST_DATABASE=postgresql $(PY) -m pytest -m "not browser"
	@echo "== tests that use Orthanc, on SQLite, $$($(PYTHON) -m devstack.debian describe other); those of both doors went through nginx =="
	PORTAL_TEST_VERSIONS_REPORT=$(VERSIONS_REPORT) PORTAL_TEST_ORTHANC=other $(PY) -m pytest -m "orthanc or live or browser" \
		$(addprefix --ignore=,$(FRONT_TESTS))

# mypy's django-stubs plugin loads the settings, as makemigrations does: DEBUG lets them
# load with no secrets set.
lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml compose.dicom.yaml
	DEBUG=true PORTAL_VAR_DIR=$$(mktemp -d) $(PY) manage.py makemigrations --check --dry-run
	DEBUG=true PORTAL_VAR_DIR=$$(mktemp -d) $(VENV)/bin/mypy
	@tmp=$$(mktemp -d); env -i PATH="$$PATH" PORTAL_VAR_DIR=$$tmp \
		SECRET_KEY=$$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=') ALLOWED_HOSTS=pacs.example.org \
		ORTHANC_USER=pacsportal ORTHANC_PASSWORD=$$(head -c 24 /dev/urandom | base64 | tr -d '\n/+=') \
		PORTAL_HTTPS=true DATABASE_URL=postgres://portal@db:5432/portal \
		$(PY) manage.py check --deploy --fail-level WARNING

bench: system-test $(VENV)/.test-installed
	$(call apt_install,wrk)
	$(PY) -m viewer.bundle
	$(PY) bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
