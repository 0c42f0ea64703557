"""Session fixtures: one real Orthanc, one real PostgreSQL cluster (in PostgreSQL
mode), one portal under gunicorn, shared by the whole run.

PORTAL_TEST_DATABASE=postgresql runs the suite on PostgreSQL: the test
database and the live portal's database live in the throwaway cluster, and
Orthanc keeps its index there too (the production path).

PORTAL_TEST_ORTHANC picks the Orthanc generation: `native` (this machine's
Debian packages, the default), `other` (the other supported Debian release's,
from a root filesystem under var/rootfs/, run with chroot), or a release by
name (`bookworm`: Orthanc 1.10, `trixie`: 1.12). Every test that uses the
session's Orthanc is marked `orthanc`, so `make test` runs those against both.
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
from django.db import connections

from devstack import debian
from devstack.orthanc_server import OrthancNotInstalled, OrthancServer, OrthancStartError, PostgresIndex
from tests.browser import browser, playwright_driver  # noqa: F401  (the one session-wide Playwright and Chromium)
from tests.front import start_front
from tests.recorder import Recorder
from tests.services import LivePortal, PostgresCluster, free_port

TEST_DATABASE = os.environ.get("PORTAL_TEST_DATABASE", "sqlite")
# The door the live portals are reached through: gunicorn itself (the Django
# door), or the portal's nginx in front of it (nginx streams the reads).
TEST_DOOR = os.environ.get("PORTAL_TEST_DOOR", "django")
TEST_ORTHANC = os.environ.get("PORTAL_TEST_ORTHANC", "native")
SESSION_ORTHANC = pytest.StashKey[OrthancServer]()
DEMO_SLICES = 40

# Named users of the live portal, one per role (healthchecks' Alice, Bob, Charlie habit).
ROLE_USERS = {
    "alice": ["clinician"],
    "bob": ["uploader"],
    "carol": ["pacs-admin"],
    "dave": ["auditor"],
    "eve": [],
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "orthanc: uses the session's Orthanc (set by conftest on every test that does)"
    )


def chosen_orthanc_source() -> debian.Source:
    return debian.resolve(TEST_ORTHANC, debian.this_host(), debian.cache_root())


def pytest_report_header() -> list[str]:
    try:
        orthanc = chosen_orthanc_source().describe()
    except (debian.UnsupportedHost, ValueError) as error:
        orthanc = f"unavailable: {error}"
    return [
        f"pacsportal: database={TEST_DATABASE}, door={TEST_DOOR}",
        f"pacsportal: orthanc={TEST_ORTHANC}: {orthanc}",
    ]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tryfirst: before `-m` deselects by marker.
    for item in items:
        if "orthanc" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.orthanc)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    server = config.stash.get(SESSION_ORTHANC, None)
    if server is None or server.versions is None:
        return
    where = f"under chroot in {server.rootfs}" if server.rootfs else "native"
    line = f"{server.versions} ({where}), database={TEST_DATABASE}, door={TEST_DOOR}"
    terminalreporter.write_line(f"pacsportal: ran against {line}")
    report = os.environ.get("PORTAL_TEST_VERSIONS_REPORT")
    if report:
        with open(report, "a") as stream:
            stream.write(f"  {line}\n")


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
    # Updated in place: django.db.connections holds this same dict. The wrapper made
    # from it before (SQLite's, at collection) is dropped: the next one is PostgreSQL's.
    settings.DATABASES["default"].update(
        {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "portal",
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": "127.0.0.1",
            "PORT": str(postgres.port),
            "CONN_MAX_AGE": 0,
            "OPTIONS": {},  # SQLite's (init_command), which psycopg refuses
        }
    )
    connections["default"].close()
    del connections["default"]


@pytest.fixture(scope="session")
def orthanc_source() -> debian.Source:
    """Where the session's Orthanc comes from (PORTAL_TEST_ORTHANC); fails saying how to install it."""
    try:
        source = chosen_orthanc_source()
        debian.require(source)
    except (debian.UnsupportedHost, debian.RootfsMissing, ValueError) as error:
        pytest.fail(f"PORTAL_TEST_ORTHANC={TEST_ORTHANC}: {error}", pytrace=False)
    return source


@pytest.fixture(scope="session")
def orthanc(
    orthanc_source: debian.Source, postgres: PostgresCluster | None, pytestconfig: pytest.Config
) -> Iterator[OrthancServer]:
    """The session's Orthanc; `orthanc.versions` says which generation tests are talking to."""
    index = None
    if postgres is not None:
        postgres.create_database("orthanc")
        index = PostgresIndex("127.0.0.1", postgres.port, "orthanc", "postgres")
    server = new_orthanc(orthanc_source, postgres=index, verbose=True)
    try:
        server.start()
    except (OrthancNotInstalled, OrthancStartError) as error:
        server.stop()
        pytest.fail(str(error), pytrace=False)
    pytestconfig.stash[SESSION_ORTHANC] = server
    settings.ORTHANC_URL = server.url
    settings.ORTHANC_HTTP_PORT = server.http_port
    call_command("load_demo", slices=DEMO_SLICES, stdout=io.StringIO())
    yield server
    server.stop()
    shutil.rmtree(server.work_dir, ignore_errors=True)


def new_orthanc(
    source: debian.Source, postgres: PostgresIndex | None = None, verbose: bool = False
) -> OrthancServer:
    """An Orthanc of the source's generation, not started; it dies with the test process."""
    # Under chroot, Orthanc's files must be inside the root filesystem.
    parent = source.rootfs / "tmp" if source.rootfs else None
    return OrthancServer(
        work_dir=Path(tempfile.mkdtemp(prefix="pacsportal-orthanc-", dir=parent)),
        http_port=free_port(),
        user=settings.ORTHANC_USER,
        password=settings.ORTHANC_PASSWORD,
        rootfs=source.rootfs,
        postgres=postgres,
        verbose=verbose,
        die_with_parent=True,
    )


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
    portal = new_portal(name, upstream_url, orthanc, postgres, **extra)
    portal.manage("migrate", "--noinput", "-v0")
    portal.manage("collectstatic", "--noinput", "-v0")
    portal.manage("ensure_admin")
    portal.passwords["root"] = portal.env["PORTAL_ADMIN_PASSWORD"]
    for username, groups in ROLE_USERS.items():
        portal.add_user(username, *groups)
    if TEST_DOOR == "nginx" or front:
        start_front(portal, orthanc)
    portal.start()
    return portal


def new_portal(
    name: str, upstream_url: str, orthanc: OrthancServer, postgres: PostgresCluster | None, **extra: str
) -> LivePortal:
    """A portal configured as `make run` configures it, with a new empty database; not set up."""
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
    return LivePortal(env=env, work_dir=work_dir)


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
    # Not following the stand-in's change feed: the tests count what reaches it.
    portal = start_portal(
        "recording_portal",
        recorder.url,
        orthanc,
        postgres,
        ORTHANC_READ_TIMEOUT="2",
        ORTHANC_FOLLOW_CHANGES="false",
    )
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
