"""The compose deployment starting for the first time, without Docker.

A site is set up by the install steps of docs/deploy.md (tests/compose.py).
Each container then runs natively, as compose would run it: `db` is a real
PostgreSQL put through the postgres image's first start (socket-only server,
deploy/initdb.sh, then the real server), `orthanc` is the Debian Orthanc with
the configuration the Orthanc Team image would build from compose.yaml, and
`web` is the image's entrypoint, run from the build context `.dockerignore`
leaves, as the image's user (uid 10001), with the environment compose gives it.
Each container's own health check from compose.yaml decides when it is up.

Stand-ins for what only Docker has: service names and ports become loopback
addresses, `/run/secrets/NAME` is a hard link to the secret file (the same
inode, owner and mode, as compose's bind mount gives), the `/data` volume is
a directory owned by the image's user, and the OHIF build is the shared cache
that `python -m viewer.bundle` fills (the image runs the same command).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from orthanc.server import OrthancNotInstalled, OrthancServer, PostgresIndex
from tests.compose import (
    SECRETS_DIR,
    Container,
    Project,
    copy_build_context,
    make_site,
    orthanc_configuration,
    run_documented,
    set_env,
    shell_blocks,
)
from tests.services import PostgresCluster, free_port, require_binary
from viewer import bundle

pytestmark = pytest.mark.live

HOST = "pacs.hospital.example"
VENV_BIN = str(Path(sys.executable).parent)
START_TIMEOUT = 180


def everyone_can_enter(path: Path) -> bool:
    return all(part.stat().st_mode & 0o001 for part in [path, *path.parents])


def python_for_the_image_user(directory: Path) -> dict[str, str]:
    """PATH (and PYTHONPATH) giving the image's user a `python` with this venv's packages,
    as the image's python has them. The venv's interpreter may live where only root can
    reach it (a pyenv under /root): then the system's python of the same version."""
    packages = Path(sysconfig.get_paths()["purelib"])
    if not everyone_can_enter(packages):
        pytest.fail(
            f"the image's user cannot read this venv's packages in {packages}: use a venv outside /root"
        )
    if everyone_can_enter(Path(VENV_BIN)) and everyone_can_enter(Path(os.path.realpath(sys.executable))):
        return {"PATH": f"{VENV_BIN}:/usr/bin:/bin"}
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists() or not everyone_can_enter(system.resolve()):
        pytest.fail(f"no python the image's user can run: install {system.name} (apt-get install python3)")
    bin_dir = directory / "bin"
    bin_dir.mkdir(exist_ok=True)
    bin_dir.chmod(0o755)
    if not (bin_dir / "python").exists():
        (bin_dir / "python").symlink_to(system)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(packages)}


def secrets_as_mounted(container: Container, root: Path) -> None:
    """Point the container's /run/secrets at hard links under a directory any user can
    enter: the secret's own owner and mode then decide, as inside a container, and not
    the 0700 secrets/ directory around it on the host."""
    for mount, source in list(container.mounts.items()):
        if mount.startswith(f"{SECRETS_DIR}/"):
            link = root / mount.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.parent.chmod(0o755)
            if not link.exists():
                os.link(source, link)
            container.mounts[mount] = link


def health_check(container: Container, project: Project, env: dict[str, str], **run: object) -> int:
    """The service's own compose health check, with its timeout."""
    check = project.services[container.service]["healthcheck"]
    kind, *args = check["test"]
    command = ["sh", "-c", args[0]] if kind == "CMD-SHELL" else args
    timeout = float(str(check.get("timeout", "30s")).removesuffix("s"))
    try:
        return subprocess.run(command, env=env, capture_output=True, timeout=timeout, **run).returncode  # type: ignore[call-overload]
    except subprocess.TimeoutExpired:
        return -1


@dataclass
class Database:
    """The db service: PostgreSQL brought up the way the postgres image's entrypoint does it."""

    project: Project
    root: Path
    cluster: PostgresCluster = field(default_factory=PostgresCluster)
    health_during_init: int | None = None
    health_after_init: int | None = None

    @property
    def data(self) -> Path:
        return self.cluster.dir / "data"

    def client_env(self) -> dict[str, str]:
        # The image's psql defaults: its socket directory and port.
        bin_dir = str(self.cluster.bin_dir)
        return {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "PGHOST": str(self.cluster.dir),
            "PGPORT": str(self.cluster.port),
        }

    def pg_ctl_start(self, listen: str) -> None:
        options = f"-c listen_addresses={listen} -p {self.cluster.port} -k {self.cluster.dir} -c fsync=off"
        self.cluster.run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.cluster.dir / "log"), "-w", "start"
        )

    def start(self) -> None:
        container = self.project.container("db")
        secrets_as_mounted(container, self.root)
        env = container.native_env()
        password_file = env["POSTGRES_PASSWORD_FILE"]
        self.cluster.run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8", f"--pwfile={password_file}"
        )
        # The image trusts its own socket and loopback, and asks every other
        # container for scram-sha-256. Every client is on loopback here: only
        # the superuser's health check keeps the trust, the portal and Orthanc
        # must give their passwords, as they do from their own containers.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        # First start: a server on its socket only while the init scripts run.
        self.pg_ctl_start("''")
        self.health_during_init = health_check(container, self.project, self.client_env())
        script = container.host_path("/docker-entrypoint-initdb.d/10-databases.sh")
        assert os.access(script, os.X_OK), f"{script} is not executable: the image would source it instead"
        result = subprocess.run(
            [require_binary("runuser", "apt-get install util-linux"), "-u", "postgres", "--", str(script)],
            env={**env, **self.client_env(), "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"initdb.sh failed:\n{result.stdout}\n{result.stderr}"
        self.cluster.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.pg_ctl_start("127.0.0.1")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.health_after_init = health_check(container, self.project, self.client_env())
            if self.health_after_init == 0:
                return
            time.sleep(0.5)
        pytest.fail(f"db never became healthy; see {self.cluster.dir / 'log'}", pytrace=False)

    def stop(self) -> None:
        self.cluster.stop()


@dataclass
class Web:
    """The web container: the image's entrypoint as the image's user."""

    project: Project
    app: Path
    static_root: Path
    root: Path
    database: Database
    orthanc: OrthancServer
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.container = self.project.container("web")
        assert self.container.image is not None
        self.image = self.container.image
        data = self.root / "data"
        data.mkdir(mode=0o755)
        os.chown(data, self.image.uid, self.image.uid)  # the image's /data belongs to its user
        self.container.mounts.update(
            {
                "/app": self.app,
                "/app/static-root": self.static_root,
                "/app/ohif": bundle.cache_dir(),
                "/data": data,
            }
        )
        secrets_as_mounted(self.container, self.root)
        env = self.container.native_env(
            {
                "@db:5432/": f"@127.0.0.1:{self.database.cluster.port}/",
                "http://orthanc:8042": self.orthanc.url,
            }
        )
        # The container's own network namespace is this machine's loopback here.
        env.update(
            HOST="127.0.0.1", PORT=str(self.port), HOME=str(data), **python_for_the_image_user(self.root)
        )
        self.env = env
        self.log = self.root / "web.log"

    @property
    def scheme(self) -> str:
        return "https" if self.env.get("TLS_CERT_FILE") else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def as_image_user(self) -> list[str]:
        uid = str(self.image.uid)
        setpriv = require_binary("setpriv", "apt-get install util-linux")
        return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]

    def start(self) -> None:
        command = self.as_image_user() + self.image.command
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.app,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self) -> int | None:
        """Until healthy (None) or the entrypoint's exit (its code)."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if (code := self.process.poll()) is not None:
                return code
            uid = self.image.uid
            if health_check(self.container, self.project, self.env, cwd=self.app, user=uid, group=uid) == 0:
                return None
            time.sleep(1)
        raise AssertionError(f"web neither became healthy nor exited in {START_TIMEOUT} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    """A directory every user may enter, as /opt is (pytest's own tmp dirs are root's only)."""
    directory = Path(tempfile.mkdtemp(prefix="pacsportal-compose-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def site(root: Path) -> Path:
    (root / "site").mkdir()
    return make_site(root / "site", host=HOST)


@pytest.fixture(scope="module")
def database(site: Path, root: Path) -> Iterator[Database]:
    db = Database(Project(site), root / "db")
    try:
        db.start()
        yield db
    finally:
        db.stop()


@pytest.fixture(scope="module")
def orthanc_service(site: Path, database: Database) -> Iterator[OrthancServer]:
    config = orthanc_configuration(Project(site).container("orthanc"))
    ((user, password),) = config["RegisteredUsers"].items()
    index = config["PostgreSQL"]
    server = OrthancServer(
        work_dir=Path(tempfile.mkdtemp(prefix="pacsportal-compose-orthanc-")),
        http_port=free_port(),
        user=user,
        password=password,
        postgres=PostgresIndex(
            "127.0.0.1", database.cluster.port, index["Database"], index["Username"], index["Password"]
        ),
    )
    try:
        server.start()
    except OrthancNotInstalled as error:
        pytest.fail(str(error), pytrace=False)
    yield server
    server.stop()
    shutil.rmtree(server.work_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def image(site: Path, root: Path) -> tuple[Path, Path]:
    """`docker compose build web`, the parts that matter: the build context as the
    image's code, and `collectstatic` as the Dockerfile runs it."""
    if not bundle.is_installed():
        pytest.fail("the OHIF bundle is missing: run `.venv/bin/python -m viewer.bundle`", pytrace=False)
    app, static_root = root / "app", root / "static-root"
    copy_build_context(site, app)
    build_var = root / "build-var"
    build_var.mkdir()
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=app,
        env={
            "PATH": f"{VENV_BIN}:/usr/bin:/bin",
            "DEBUG": "true",
            "PORTAL_VAR_DIR": str(build_var),
            "STATIC_ROOT": str(static_root),
            "OHIF_CACHE_DIR": str(bundle.cache_dir()),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return app, static_root


StartWeb = Callable[[Path], Web]


@pytest.fixture
def start_web(
    image: tuple[Path, Path], database: Database, orthanc_service: OrthancServer
) -> Iterator[StartWeb]:
    started: list[Web] = []

    def start(checkout: Path) -> Web:
        web_root = Path(tempfile.mkdtemp(prefix="pacsportal-compose-web-"))
        web_root.chmod(0o755)
        app, static_root = image
        web = Web(Project(checkout), app, static_root, web_root, database, orthanc_service)
        started.append(web)
        web.start()
        return web

    yield start
    for web in started:
        web.stop()
        shutil.rmtree(web.root, ignore_errors=True)


def variant(site: Path, root: Path, name: str) -> Path:
    """A copy of the site to change, file modes kept (the key's owner is root in the copy)."""
    checkout = root / name
    shutil.copytree(site, checkout, symlinks=True)
    os.chown(checkout / "certs" / "key.pem", site.stat().st_uid, site.stat().st_gid)
    return checkout


def test_it_serves_https_after_the_documented_install(site: Path, start_web: StartWeb) -> None:
    web = start_web(site)
    code = web.wait()
    assert code is None, f"the entrypoint exited with {code}:\n{web.output()}"
    assert web.scheme == "https"
    session = requests.Session()
    session.verify = str(site / "certs" / "cert.pem")
    session.trust_env = False
    session.headers["Host"] = HOST
    assert session.get(f"{web.url}/healthz", timeout=10).json() == {
        "status": "ok",
        "database": "ok",
        "orthanc": "ok",
    }
    home = session.get(f"{web.url}/", timeout=10, allow_redirects=False)
    assert (home.status_code, home.headers["Location"]) == (302, "/accounts/login/?next=/")
    login = f"{web.url}/accounts/login/"
    page = session.get(login, timeout=10)
    assert page.status_code == 200
    assert "Strict-Transport-Security" in page.headers
    admin_password = (site / "secrets" / "portal_admin_password").read_text().strip()
    answer = session.post(
        login,
        data={
            "username": "admin",
            "password": admin_password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"https://{HOST}/accounts/login/"},
        timeout=30,
        allow_redirects=False,
    )
    assert answer.status_code == 302, "the first admin cannot log in with secrets/portal_admin_password"
    assert admin_password not in web.output()


def test_it_serves_plain_http_when_the_admin_chooses_it(site: Path, root: Path, start_web: StartWeb) -> None:
    checkout = variant(site, root, "plain-http")
    (plain,) = shell_blocks("Plain HTTP")
    run_documented(plain, checkout)
    set_env(checkout, ALLOWED_HOSTS=".hospital.example")  # the health check must find a host it may use
    web = start_web(checkout)
    code = web.wait()
    assert code is None, f"the entrypoint exited with {code}:\n{web.output()}"
    assert web.scheme == "http"
    page = requests.get(
        f"{web.url}/accounts/login/", headers={"Host": HOST}, timeout=10, allow_redirects=False
    )
    assert page.status_code == 200, "plain HTTP chosen, yet the login page is not served over it"
    assert "Strict-Transport-Security" not in page.headers


def test_it_refuses_to_start_with_a_tls_key_it_cannot_read(
    site: Path, root: Path, start_web: StartWeb
) -> None:
    checkout = variant(site, root, "root-key")
    key = checkout / "certs" / "key.pem"
    assert (key.stat().st_uid, key.stat().st_mode & 0o777) == (0, 0o600)  # as copied from the host by root
    web = start_web(checkout)
    code = web.wait()
    assert code not in (None, 0), f"it started with a key it cannot read:\n{web.output()}"
    assert "/certs/key.pem cannot be read by this container's user (uid 10001)" in web.output()
    assert "chown 10001" in web.output()
    assert "Listening at" not in web.output()


def test_it_refuses_https_that_nothing_here_terminates(site: Path, root: Path, start_web: StartWeb) -> None:
    checkout = variant(site, root, "no-tls")
    set_env(checkout, TLS_CERT_FILE="", TLS_KEY_FILE="")  # PORTAL_HTTPS stays true, WEB_PORT 443
    web = start_web(checkout)
    code = web.wait()
    assert code not in (None, 0), f"it served plain HTTP with PORTAL_HTTPS=true:\n{web.output()}"
    assert "PORTAL_HTTPS=true, but nothing speaks HTTPS" in web.output()


def test_the_database_is_healthy_only_once_initdb_has_made_both_databases(database: Database) -> None:
    assert database.health_during_init != 0, (
        "healthy while the image's init-only server ran, before initdb.sh"
    )
    assert database.health_after_init == 0
