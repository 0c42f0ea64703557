"""Session fixtures: one real Orthanc, one real PostgreSQL cluster (in PostgreSQL
mode), one portal under gunicorn, shared by the whole run.

PORTAL_TEST_DATABASE=postgresql runs the suite on PostgreSQL: the test
database and the live portal's database live in the throwaway cluster, and
Orthanc keeps its index there too (the production path).
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from orthanc.server import OrthancNotInstalled, OrthancServer, PostgresIndex
from tests.browser import browser  # noqa: F401  (the one session-wide Chromium)
from tests.front import start_front
from tests.recorder import Recorder
from tests.services import LivePortal, PostgresCluster, free_port

TEST_DATABASE = os.environ.get("PORTAL_TEST_DATABASE", "sqlite")
# The door the live portals are reached through: gunicorn itself (the Django
# door), or the portal's nginx in front of it (nginx streams the reads).
TEST_DOOR = os.environ.get("PORTAL_TEST_DOOR", "django")
DEMO_SLICES = 40

# Named users of the live portal, one per role (healthchecks' Alice, Bob, Charlie habit).
ROLE_USERS = {
    "alice": ["clinician"],
    "bob": ["uploader"],
    "carol": ["pacs-admin"],
    "dave": ["auditor"],
    "eve": [],
}


def pytest_report_header() -> str:
    return f"pacsportal: database={TEST_DATABASE}, door={TEST_DOOR}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster | None]:
    if TEST_DATABASE == "sqlite":
        yield None
        return
    if TEST_DATABASE != "postgresql":
        pytest.fail(f"PORTAL_TEST_DATABASE={TEST_DATABASE!r}: use sqlite or postgresql", pytrace=False)
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, postgres: PostgresCluster | None
) -> None:
    if postgres is None:
        return
    # Updated in place: django.db.connections holds this same dict.
    settings.DATABASES["default"].update(
        ENGINE="django.db.backends.postgresql",
        NAME="portal",
        USER="postgres",
        PASSWORD="",
        HOST="127.0.0.1",
        PORT=str(postgres.port),
        CONN_MAX_AGE=0,
    )


@pytest.fixture(scope="session")
def orthanc(postgres: PostgresCluster | None) -> Iterator[OrthancServer]:
    index = None
    if postgres is not None:
        postgres.create_database("orthanc")
        index = PostgresIndex("127.0.0.1", postgres.port, "orthanc", "postgres")
    server = OrthancServer(
        work_dir=Path(tempfile.mkdtemp(prefix="pacsportal-orthanc-")),
        http_port=free_port(),
        user=settings.ORTHANC_USER,
        password=settings.ORTHANC_PASSWORD,
        postgres=index,
        verbose=True,
    )
    try:
        server.start()
    except OrthancNotInstalled as error:
        pytest.fail(str(error), pytrace=False)
    settings.ORTHANC_URL = server.url
    settings.ORTHANC_HTTP_PORT = server.http_port
    call_command("load_demo", slices=DEMO_SLICES, stdout=io.StringIO())
    yield server
    server.stop()
    shutil.rmtree(server.work_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _orthanc_url(request: pytest.FixtureRequest) -> None:
    """Point the in-process portal at the session's Orthanc when a test uses it."""
    if "orthanc" in request.fixturenames or "live_portal" in request.fixturenames:
        server = request.getfixturevalue("orthanc")
        settings.ORTHANC_URL = server.url


def start_portal(
    name: str,
    upstream_url: str,
    orthanc: OrthancServer,
    postgres: PostgresCluster | None,
    front: bool = False,
    **extra: str,
) -> LivePortal:
    """The portal under gunicorn with its own database and the named users of ROLE_USERS."""
    work_dir = Path(tempfile.mkdtemp(prefix=f"pacsportal-{name}-"))
    database_url = postgres.create_database(name) if postgres else f"sqlite:///{work_dir}/portal.sqlite3"
    env = {
        "PATH": os.environ["PATH"],
        "PORTAL_VAR_DIR": str(work_dir),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "ORTHANC_URL": upstream_url,
        "ORTHANC_USER": orthanc.user,
        "ORTHANC_PASSWORD": orthanc.password,
        "PORTAL_ADMIN_USER": "root",
        "PORTAL_ADMIN_PASSWORD": secrets.token_urlsafe(16),
        "WEB_WORKERS": "1",
        "WEB_THREADS": "8",
        "AXES_FAILURE_LIMIT": "3",
        **extra,
    }
    portal = LivePortal(env=env, work_dir=work_dir)
    portal.manage("migrate", "--noinput", "-v0")
    portal.manage("collectstatic", "--noinput", "-v0")
    portal.manage("ensure_admin")
    portal.passwords["root"] = env["PORTAL_ADMIN_PASSWORD"]
    for username, groups in ROLE_USERS.items():
        portal.add_user(username, *groups)
    if TEST_DOOR == "nginx" or front:
        start_front(portal, orthanc)
    portal.start()
    return portal


@pytest.fixture(scope="session")
def live_portal(orthanc: OrthancServer, postgres: PostgresCluster | None) -> Iterator[LivePortal]:
    portal = start_portal("live_portal", orthanc.url, orthanc, postgres)
    yield portal
    portal.stop()
    shutil.rmtree(portal.work_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def recorder() -> Iterator[Recorder]:
    upstream = Recorder(port=free_port())
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="session")
def recording_portal(
    recorder: Recorder, orthanc: OrthancServer, postgres: PostgresCluster | None
) -> Iterator[LivePortal]:
    """A portal whose "Orthanc" is the recorder, with a short read timeout."""
    portal = start_portal("recording_portal", recorder.url, orthanc, postgres, ORTHANC_READ_TIMEOUT="2")
    yield portal
    portal.stop()
    shutil.rmtree(portal.work_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_always(postgres: PostgresCluster | None) -> Iterator[PostgresCluster]:
    """The run's PostgreSQL cluster, or one of its own when the run is on SQLite:
    the append-only trigger and the outage tests are about PostgreSQL."""
    if postgres is not None:
        yield postgres
        return
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.stop()
