"""The compose deployment starting for the first time, without Docker.

A site is set up by the install steps of docs/deploy.md (tests/compose.py).
Each container then runs natively, as compose would run it: `db` is a real
PostgreSQL put through the postgres image's first start (socket-only server,
deploy/initdb.sh, then the real server), `orthanc` is the Debian Orthanc with
the configuration the Orthanc Team image would build from compose.yaml, and
`web` is the image's entrypoint, run from the build context `.dockerignore`
leaves, as the image's user (uid 10001), with the environment compose gives it,
and `front` is Debian's nginx running the configuration that entrypoint wrote
into the front's volume, as the nginx image's `nginx -c` would. Each
container's own health check from compose.yaml decides when it is up, and
every request of the tests goes through the front, as a client's would.

Stand-ins for what only Docker has: service names and ports become loopback
addresses, `/run/secrets/NAME` is a hard link to the secret file (the same
inode, owner and mode, as compose's bind mount gives), the `/data` volume is
a directory owned by the image's user, the tmpfs volume and mounts are
directories in /dev/shm, and the OHIF build is the shared cache that `python
-m viewer.bundle` fills (the image runs the same command). The front's
container paths, ports and user (`nginx`, Debian's `www-data`) are replaced
in a copy of its configuration, and nothing else. The edge network is
loopback too: the front connects from 127.0.0.1, the only address the portal
trusts here, and the tests' clients from other loopback addresses.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.nginx import FrontNotInstalled, nginx_binary, nginx_version
from devstack.orthanc_server import OrthancNotInstalled, OrthancServer, PostgresIndex
from pacsportal.front import CONTAINER_HEALTH_PORT, CONTAINER_PORT, HTTP2_DIRECTIVE_SINCE
from tests.compose import (
    NGINX_IMAGE_ID,
    SECRETS_DIR,
    Container,
    Project,
    copy_build_context,
    make_site,
    orthanc_configuration,
    run_documented,
    self_signed_certificate,
    set_env,
    shell_blocks,
)
from tests.services import PostgresCluster, free_port, require_binary
from viewer import bundle

pytestmark = pytest.mark.live

HOST = "pacs.hospital.example"
VENV_BIN = str(Path(sys.executable).parent)
START_TIMEOUT = 180
# The edge network on loopback: the front's address as the portal sees it, and two clients.
FRONT_PEER = "127.0.0.1"
CLIENT = "127.0.0.7"
STRANGER = "127.0.0.9"
MEMORY = Path("/dev/shm")  # tmpfs, where the stand-ins of compose's tmpfs volumes live


def native_id(image_id: int, kind: str) -> int:
    """The id on this machine of a user or group id named in compose.yaml (www-data for nginx's)."""
    if image_id != NGINX_IMAGE_ID:
        return image_id
    www_data = pwd.getpwnam("www-data")
    return www_data.pw_uid if kind == "uid" else www_data.pw_gid


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


def health_check(
    container: Container,
    project: Project,
    env: dict[str, str],
    replacements: dict[str, str] | None = None,
    **run: object,
) -> int:
    """The service's own compose health check, with its timeout (and loopback ports for its own)."""
    check = project.services[container.service]["healthcheck"]
    kind, *args = check["test"]
    for old, new in (replacements or {}).items():
        args = [arg.replace(old, new) for arg in args]
    command = ["sh", "-c", args[0]] if kind == "CMD-SHELL" else args
    timeout = float(str(check.get("timeout", "30s")).removesuffix("s"))
    try:
        # `run` is passed through to subprocess.run, whose overloads need each keyword's own type.
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
        # The front-config volume: a tmpfs owned by the image's user, mode 0700 (compose.yaml).
        self.front_config = Path(tempfile.mkdtemp(prefix="pacsportal-compose-front-config-", dir=MEMORY))
        os.chown(self.front_config, self.image.uid, self.image.uid)
        # The decisions volume: a tmpfs shared with the front, with compose.yaml's owner and mode.
        self.decisions = Path(tempfile.mkdtemp(prefix="pacsportal-compose-decisions-", dir=MEMORY))
        options = self.project.volume_mount_options("decisions")
        os.chown(self.decisions, native_id(int(options["uid"]), "uid"), native_id(int(options["gid"]), "gid"))
        self.decisions.chmod(int(options["mode"], 8))
        self.container.mounts.update(
            {
                "/app": self.app,
                "/app/static-root": self.static_root,
                "/app/ohif": bundle.cache_dir(),
                "/data": data,
                self.volume_target("front-config"): self.front_config,
                self.volume_target("decisions"): self.decisions,
            }
        )
        secrets_as_mounted(self.container, self.root)
        (edge,) = self.project.config["networks"]["edge"]["ipam"]["config"]
        env = self.container.native_env(
            {
                "@db:5432/": f"@127.0.0.1:{self.database.cluster.port}/",
                "http://orthanc:8042": self.orthanc.url,
                "web:8000": f"127.0.0.1:{self.port}",
                edge["subnet"]: f"{FRONT_PEER}/32",
            }
        )
        # The container's own network namespace is this machine's loopback here.
        env.update(
            HOST="127.0.0.1", PORT=str(self.port), HOME=str(data), **python_for_the_image_user(self.root)
        )
        self.env = env
        self.log = self.root / "web.log"

    def volume_target(self, name: str) -> str:
        (target,) = [
            volume.split(":")[1]
            for volume in self.project.services["web"]["volumes"]
            if volume.split(":")[0] == name
        ]
        return str(target)

    @property
    def url(self) -> str:
        """Plain HTTP on the internal network: TLS is the front's."""
        return f"http://127.0.0.1:{self.port}"

    def as_image_user(self) -> list[str]:
        uid = str(self.image.uid)
        setpriv = require_binary("setpriv", "apt-get install util-linux")
        added = [native_id(int(group), "gid") for group in self.project.services["web"].get("group_add", [])]
        groups = f"--groups={','.join(map(str, added))}" if added else "--clear-groups"
        return [setpriv, f"--reuid={uid}", f"--regid={uid}", groups, "--"]

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
        stop_process_group(self.process)
        shutil.rmtree(self.front_config, ignore_errors=True)
        shutil.rmtree(self.decisions, ignore_errors=True)


def stop_process_group(process: subprocess.Popen[bytes] | None) -> None:
    if process and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class FrontService:
    """The front container: nginx started as the image starts it, on what the web container wrote."""

    project: Project
    web: Web
    root: Path
    port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.container = self.project.container(
            "front", {"front-config": self.web.front_config, "decisions": self.web.decisions}
        )
        self.cache = Path(tempfile.mkdtemp(prefix="pacsportal-compose-tmpfs-", dir=MEMORY))
        for target in self.container.tmpfs:
            self.container.mounts.setdefault(target, self.cache)
        self.log = self.root / "front.log"

    @property
    def scheme(self) -> str:
        return "https" if "ssl_certificate " in (self.root / "pacsportal.conf").read_text() else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def translated(self, text: str) -> str:
        """The configuration with Docker's namespaces replaced by this machine's: ports on
        loopback, container paths by their host paths, the image's user by Debian's."""
        replacements = {
            f"listen {CONTAINER_PORT}": f"listen 127.0.0.1:{self.port}",
            f"listen 127.0.0.1:{CONTAINER_HEALTH_PORT};": f"listen 127.0.0.1:{self.health_port};",
            "user nginx;": "user www-data;",
            "pid /run/nginx.pid;": f"pid {self.root}/nginx.pid;",
            f"{self.web.front_config}/pacsportal.conf": f"{self.root}/pacsportal.conf",
        }
        for old, new in replacements.items():
            text = text.replace(old, new)
        if nginx_version() < HTTP2_DIRECTIVE_SINCE:
            # The image's nginx takes `http2 on;`; Debian 12's 1.22 the older `listen ... http2`.
            text = re.sub(r"listen (\S+) ssl;(\s*)http2 on; ", r"listen \1 ssl http2;\2", text)
        for mount in sorted(self.container.mounts, key=len, reverse=True):
            path = re.compile(rf"(?<=\s){re.escape(mount)}(?=[/;\s])")
            text = path.sub(str(self.container.mounts[mount]), text)
        return text

    def start(self) -> None:
        command = self.project.services["front"]["command"]
        assert command[:2] == ["nginx", "-c"], command
        main = self.container.host_path(command[2])
        assert main.exists(), f"the web container wrote no {command[2]} for the front"
        (self.root / "nginx.conf").write_text(self.translated(main.read_text()))
        (self.root / "pacsportal.conf").write_text(
            self.translated((main.parent / "pacsportal.conf").read_text())
        )
        try:
            binary = nginx_binary()
        except FrontNotInstalled as error:
            pytest.fail(str(error), pytrace=False)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-c", str(self.root / "nginx.conf"), *command[3:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self) -> int | None:
        """Until healthy (None) or nginx's exit (its code)."""
        assert self.process is not None
        ports = {f"127.0.0.1:{CONTAINER_HEALTH_PORT}/": f"127.0.0.1:{self.health_port}/"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (code := self.process.poll()) is not None:
                return code
            if health_check(self.container, self.project, {"PATH": "/usr/bin:/bin"}, ports) == 0:
                return None
            time.sleep(0.5)
        raise AssertionError(f"front neither became healthy nor exited in 60 s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def access_log(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        stop_process_group(self.process)
        shutil.rmtree(self.cache, ignore_errors=True)


class FromAddress(requests.adapters.HTTPAdapter):
    """Connections from one loopback address: a client of its own on the edge network."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client_session(address: str, verify: str | bool = True) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = verify
    session.headers["Host"] = HOST
    for prefix in ("http://", "https://"):
        session.mount(prefix, FromAddress(address))
    return session


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
StartFront = Callable[[Web], FrontService]


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


@pytest.fixture
def start_front() -> Iterator[StartFront]:
    """The front, started once its web is healthy (compose.yaml's depends_on)."""
    started: list[FrontService] = []

    def start(web: Web) -> FrontService:
        code = web.wait()
        assert code is None, f"the entrypoint exited with {code}:\n{web.output()}"
        front = FrontService(web.project, web, web.root)
        started.append(front)
        front.start()
        return front

    yield start
    for front in started:
        front.stop()


def log_in(session: requests.Session, url: str, password: str) -> requests.Response:
    login = f"{url}/accounts/login/"
    # What Django takes the request's scheme to be: the front's, or a forged X-Forwarded-Proto.
    secure = url.startswith("https:") or session.headers.get("X-Forwarded-Proto") == "https"
    scheme = "https" if secure else "http"
    page = session.get(login, timeout=10)
    assert page.status_code == 200, page.status_code
    return session.post(
        login,
        data={"username": "admin", "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{scheme}://{HOST}/accounts/login/"},
        timeout=30,
        allow_redirects=False,
    )


def log_out(session: requests.Session, url: str) -> None:
    scheme = "https" if url.startswith("https:") else "http"
    answer = session.post(
        f"{url}/accounts/logout/",
        data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{scheme}://{HOST}/portal/"},
        timeout=30,
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.status_code


def speaks_http2(front: FrontService, cafile: Path) -> bool:
    context = ssl.create_default_context(cafile=str(cafile))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", front.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        return tls.selected_alpn_protocol() == "h2"


def audit_rows(database: Database, since: int) -> list[tuple[str, str, str]]:
    """(action, client address, username) of the portal's audit rows after id `since`."""
    result = database.cluster.run(
        "psql", "-h", str(database.cluster.dir), "-p", str(database.cluster.port), "-U", "postgres",
        "-d", "portal", "-AtF", "|", "-c",
        f"SELECT action, host(client_ip), username FROM audit_auditevent WHERE id > {since:d} ORDER BY id",  # noqa: S608
    )  # fmt: skip
    # psql prints the three columns asked for: a tuple of three.
    return [tuple(line.split("|")) for line in result.stdout.splitlines()]  # type: ignore[misc]


def last_audit_id(database: Database) -> int:
    result = database.cluster.run(
        "psql", "-h", str(database.cluster.dir), "-p", str(database.cluster.port), "-U", "postgres",
        "-d", "portal", "-Atc", "SELECT coalesce(max(id), 0) FROM audit_auditevent",
    )  # fmt: skip
    return int(result.stdout.strip())


def variant(site: Path, root: Path, name: str) -> Path:
    """A copy of the site to change, file modes kept (the key's owner is root in the copy)."""
    checkout = root / name
    shutil.copytree(site, checkout, symlinks=True)
    return checkout


def test_it_serves_https_with_http2_through_the_front_after_the_documented_install(
    site: Path, start_web: StartWeb, start_front: StartFront
) -> None:
    web = start_web(site)
    front = start_front(web)
    code = front.wait()
    assert code is None, f"nginx exited with {code}:\n{front.output()}"
    assert front.scheme == "https"
    cert = site / "certs" / "cert.pem"
    assert speaks_http2(front, cert), "the front offers no HTTP/2 over TLS"
    session = client_session(CLIENT, verify=str(cert))
    assert session.get(f"{front.url}/healthz", timeout=10).json() == {
        "status": "ok",
        "database": "ok",
        "orthanc": "ok",
    }
    home = session.get(f"{front.url}/", timeout=10, allow_redirects=False)
    assert (home.status_code, home.headers["Location"]) == (302, "/accounts/login/?next=/")
    admin_password = (site / "secrets" / "portal_admin_password").read_text().strip()
    answer = log_in(session, front.url, admin_password)
    assert answer.status_code == 302, "the first admin cannot log in with secrets/portal_admin_password"
    assert "Strict-Transport-Security" in answer.headers
    studies = session.get(
        f"{front.url}/pacs/dicom-web/studies", headers={"Accept": "application/dicom+json"}, timeout=30
    )
    assert studies.status_code in (200, 204), studies.text
    assert studies.headers["Cache-Control"] == "no-store, private"
    # nginx writes a request's log line after its last byte: the client may read first.
    deadline = time.monotonic() + 5
    while not (
        streamed := [line for line in front.access_log() if line["path"] == "/pacs/dicom-web/studies"]
    ):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [line["user"] for line in streamed] == ["admin (session)"], "nginx did not stream the read"
    # The portal (uid 10001) empties the front's decision cache (nginx's user's files) on logout:
    # the cookie, replayed, is refused at once.
    replay = client_session(CLIENT, verify=str(cert))
    replay.cookies.update(dict(session.cookies))
    assert any(web.decisions.iterdir()), "the front cached no decision in the shared volume"
    log_out(session, front.url)
    again = replay.get(
        f"{front.url}/pacs/dicom-web/studies", headers={"Accept": "application/dicom+json"}, timeout=30
    )
    assert again.status_code == 401, again.text
    assert admin_password not in web.output() + front.output()
    credential = web.front_config / "secrets" / "orthanc-credential.conf"
    assert credential.stat().st_mode & 0o077 == 0


def test_it_serves_plain_http_through_the_front_when_the_admin_chooses_it(
    site: Path, root: Path, start_web: StartWeb, start_front: StartFront
) -> None:
    checkout = variant(site, root, "plain-http")
    (plain,) = shell_blocks("Plain HTTP")
    run_documented(plain, checkout)
    set_env(checkout, ALLOWED_HOSTS=".hospital.example")  # the health check must find a host it may use
    front = start_front(start_web(checkout))
    code = front.wait()
    assert code is None, f"nginx exited with {code}:\n{front.output()}"
    assert front.scheme == "http"
    session = client_session(CLIENT)
    answer = log_in(session, front.url, (checkout / "secrets" / "portal_admin_password").read_text().strip())
    assert answer.status_code == 302, "plain HTTP chosen, yet the login page is not served over it"
    assert "Strict-Transport-Security" not in answer.headers
    studies = session.get(
        f"{front.url}/pacs/dicom-web/studies", headers={"Accept": "application/dicom+json"}, timeout=30
    )
    assert studies.status_code in (200, 204), studies.text


def test_it_believes_x_forwarded_for_from_the_front_only(
    site: Path, root: Path, database: Database, start_web: StartWeb, start_front: StartFront
) -> None:
    checkout = variant(site, root, "forwarded-for")
    web = start_web(checkout)
    front = start_front(web)
    assert front.wait() is None, front.output()
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    studies = "/pacs/dicom-web/studies"
    # A client of the front: nginx replaces the forged hop with the address it sees.
    through_front = client_session(CLIENT, verify=str(checkout / "certs" / "cert.pem"))
    since = last_audit_id(database)
    refused = through_front.get(f"{front.url}{studies}", auth=("admin", "wrong"), headers=forged, timeout=30)
    assert refused.status_code == 401
    via_front = audit_rows(database, since)
    # A peer reaching gunicorn itself (nothing can in compose: no port, internal networks only).
    since = last_audit_id(database)
    refused = client_session(STRANGER).get(
        f"{web.url}{studies}", auth=("admin", "wrong"), headers=forged, timeout=30
    )
    assert refused.status_code == 401
    direct = audit_rows(database, since)
    assert via_front and direct, "the refusals were not audited"
    assert {address for _, address, _ in via_front} == {CLIENT}, via_front
    assert {address for _, address, _ in direct} == {STRANGER}, direct


def test_the_front_refuses_to_start_with_a_key_that_is_not_its_certificates(
    site: Path, root: Path, start_web: StartWeb, start_front: StartFront
) -> None:
    checkout = variant(site, root, "wrong-key")
    other = root / "other-key"
    other.mkdir()
    _, key = self_signed_certificate(other, HOST)
    shutil.copy(key, checkout / "certs" / "key.pem")
    front = start_front(start_web(checkout))
    code = front.wait()
    assert code not in (None, 0), f"nginx served with a key that is not its certificate's:\n{front.output()}"
    assert "key values mismatch" in front.output()


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
