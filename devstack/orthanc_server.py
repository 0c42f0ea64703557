"""Run a local Orthanc: the embedded default of `make run`, and the tests' archive.

Orthanc 1.10 has no bind-address setting: `RemoteAccessAllowed: false` makes it
refuse every client that is not on loopback, and the service credential guards
loopback. The DICOM port stays closed unless a port is configured.

The same server runs this machine's Orthanc or, given a root filesystem of the
other Debian release (`devstack.debian`), that release's Orthanc under chroot on
the shared loopback; its files then live inside the root filesystem.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

from devstack import debian

BINARY = Path("/usr/sbin/Orthanc")
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = PLUGIN_DIR / "libOrthancDicomWeb.so"
POSTGRESQL_INDEX_PLUGIN = PLUGIN_DIR / "libOrthancPostgreSQLIndex.so"
INSTALL_HINT = "install it with: apt-get install orthanc orthanc-dicomweb orthanc-postgresql"


class OrthancNotInstalled(RuntimeError):
    pass


class OrthancStartError(RuntimeError):
    pass


class Version(tuple[int, ...]):
    """A version as Orthanc reports it, compared as numbers: `version >= (1, 12)`.

    Anything but leading numbers (a `mainline` build) compares as the empty tuple.
    """

    text: str

    def __new__(cls, text: str) -> Version:
        numbers = re.match(r"\d+(?:\.\d+)*", text)
        self = super().__new__(cls, (int(part) for part in numbers.group().split(".")) if numbers else ())
        self.text = text
        return self

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class OrthancVersions:
    """What a running Orthanc says it is: `GET /system` and its plugins' pages."""

    orthanc: Version
    api: int
    dicomweb: Version | None
    postgresql: Version | None

    def __str__(self) -> str:
        parts = [f"Orthanc {self.orthanc} (REST API {self.api})"]
        parts.append(f"DICOMweb {self.dicomweb}" if self.dicomweb else "no DICOMweb plugin")
        if self.postgresql:
            parts.append(f"PostgreSQL index {self.postgresql}")
        return ", ".join(parts)


def fetch_versions(http: urllib3.PoolManager, url: str) -> OrthancVersions:
    def get(path: str) -> Any:
        response = http.request("GET", f"{url}{path}", timeout=10, retries=False)
        return json.loads(response.data) if response.status == 200 else None

    system = get("/system")
    plugins = get("/plugins") or []

    def plugin_version(name: str) -> Version | None:
        return Version(get(f"/plugins/{name}")["Version"]) if name in plugins else None

    return OrthancVersions(
        orthanc=Version(system["Version"]),
        api=int(system["ApiVersion"]),
        dicomweb=plugin_version("dicom-web"),
        postgresql=plugin_version("postgresql-index"),
    )


@dataclass
class PostgresIndex:
    host: str
    port: int
    database: str
    user: str
    password: str = ""


HTTP_THREADS = 256


@dataclass
class OrthancServer:
    """A local Orthanc's files under one directory, and its process once started.

    With `rootfs`, Orthanc is that root filesystem's, run under chroot (in a
    user namespace unless root), and `work_dir` must lie inside it.
    `die_with_parent` has the kernel stop Orthanc when the process that started
    it dies, even by SIGKILL (the tests' habit; `manage.py orthanc start`
    detaches instead). `versions` is what Orthanc reported once it answered.
    """

    work_dir: Path
    http_port: int
    user: str
    password: str
    dicom_port: int = 0
    dicom_aet: str = "PACSPORTAL"
    postgres: PostgresIndex | None = None
    verbose: bool = False
    rootfs: Path | None = None
    die_with_parent: bool = False
    http_threads: int = HTTP_THREADS
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    versions: OrthancVersions | None = field(default=None, init=False)

    @property
    def config_path(self) -> Path:
        return self.work_dir / "orthanc.json"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "orthanc.log"

    @property
    def pid_path(self) -> Path:
        return self.work_dir / "orthanc.pid"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def inside(self, path: Path) -> str:
        """The path as Orthanc sees it: relative to the root filesystem under chroot."""
        if self.rootfs is None:
            return str(path)
        try:
            return "/" + str(path.resolve().relative_to(self.rootfs.resolve()))
        except ValueError:
            raise OrthancStartError(f"{path} is outside Orthanc's root filesystem {self.rootfs}") from None

    def config(self) -> dict[str, Any]:
        storage = self.inside(self.work_dir / "storage")
        plugins = [str(DICOMWEB_PLUGIN)]
        config: dict[str, Any] = {
            "Name": "pacsportal",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "HttpDescribeErrors": True,
            "KeepAlive": True,
            "TcpNoDelay": True,
            # Orthanc gives each connection a thread for as long as it lasts, and nginx
            # holds one per request in flight: at 50 (the default), 64 clients left the
            # portal's own look-ups and some clients waiting for tens of seconds
            # (docs/performance.md, "Cold study reads"). Threads waiting cost little.
            "HttpThreadsCount": self.http_threads,
            "DicomServerEnabled": self.dicom_port > 0,
            "DicomPort": self.dicom_port or 4242,
            "DicomAet": self.dicom_aet,
            "ExecuteLuaEnabled": False,
            "LuaScripts": [],
            "WebDavEnabled": False,
            "StableAge": 5,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                # No "Host": the plugin then builds absolute URLs from the
                # Forwarded header the portal sends, so they point at the portal.
                "Ssl": False,
            },
        }
        if self.postgres:
            plugins.append(str(POSTGRESQL_INDEX_PLUGIN))
            config["PostgreSQL"] = {
                "EnableIndex": True,
                "EnableStorage": False,
                "Host": self.postgres.host,
                "Port": self.postgres.port,
                "Database": self.postgres.database,
                "Username": self.postgres.user,
                "Password": self.postgres.password,
                "Lock": True,
            }
        config["Plugins"] = plugins
        return config

    def write_config(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "storage").mkdir(exist_ok=True)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as stream:
            json.dump(self.config(), stream, indent=2)
        return self.config_path

    def command(self) -> list[str]:
        plugins = [DICOMWEB_PLUGIN] + ([POSTGRESQL_INDEX_PLUGIN] if self.postgres else [])
        if self.rootfs is None:
            binary = shutil.which("Orthanc")
            if binary is None:
                raise OrthancNotInstalled(f"the Orthanc binary is not on PATH; {INSTALL_HINT}")
            args = [binary, str(self.config_path)]
            hint = INSTALL_HINT
        else:
            binary = str(BINARY)
            args = ["chroot", str(self.rootfs), binary, self.inside(self.config_path)]
            hint = f"rebuild it with: python -m devstack.debian build {self.rootfs.name}"
        root = self.rootfs or Path("/")
        for path in [Path(binary), *plugins]:
            if not (root / path.relative_to("/")).exists():
                raise OrthancNotInstalled(f"{root / path.relative_to('/')} is missing; {hint}")
        if self.verbose:
            args.append("--verbose")
        # setpriv, unshare and chroot exec in place: the process started is Orthanc itself.
        if self.die_with_parent:
            args = ["setpriv", "--pdeathsig", "TERM", *args]
        if self.rootfs is not None and os.geteuid() != 0:
            # chroot needs root; a user namespace gives an ordinary user a root of its own.
            args = ["unshare", "--map-root-user", *args]
        return args

    def start(self, timeout: float = 60) -> None:
        args = self.command()
        self.stop_stale()
        if self.rootfs is not None:
            self.share_host_files()
        self.write_config()
        # A new session keeps Ctrl-C in the terminal from killing Orthanc before
        # the portal has stopped using it; whoever started it stops it.
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pid_path.write_text(str(self.process.pid))
        self.wait_ready(timeout)

    def share_host_files(self) -> None:
        """The chroot resolves names as the host does (a cached root filesystem may predate it)."""
        assert self.rootfs is not None
        try:
            debian.share_host_files(self.rootfs)
        except OSError as error:  # a root filesystem root built, an ordinary user running it
            print(
                f"warning: could not copy the host's {' and '.join(debian.HOST_FILES)} into "
                f"{self.rootfs} ({error}): Orthanc may wait on DNS there; "
                "run `python -m devstack.debian build other` as root",
                file=sys.stderr,
            )

    def wait_ready(self, timeout: float) -> None:
        http = urllib3.PoolManager(headers=urllib3.make_headers(basic_auth=f"{self.user}:{self.password}"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise OrthancStartError(
                    f"Orthanc exited with {self.process.returncode}; see {self.log_path}:\n{self.log_tail()}"
                )
            try:
                response = http.request("GET", f"{self.url}/system", timeout=2, retries=False)
                if response.status == 200:
                    self.versions = fetch_versions(http, self.url)
                    return
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.1)
        raise OrthancStartError(
            f"Orthanc did not answer on {self.url} within {timeout:.0f} s; see {self.log_path}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.pid_path.unlink(missing_ok=True)

    def stop_stale(self, timeout: float = 30) -> None:
        """Stop an Orthanc left running on this directory by an earlier run.

        A new Orthanc on the same SQLite index dies while the old one is still
        shutting down, so wait until the old process is gone.
        """
        try:
            pid = int(self.pid_path.read_text())
        except (OSError, ValueError):
            return
        if not _is_orthanc(pid):
            self.pid_path.unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_orthanc(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _is_orthanc(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)


def _is_orthanc(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return command.endswith(b"Orthanc") and state != "Z"


def from_settings() -> OrthancServer:
    """The embedded default's Orthanc, as `make run` and manage.py see it."""
    from django.conf import settings

    return OrthancServer(
        work_dir=settings.ORTHANC_DIR,
        http_port=settings.ORTHANC_HTTP_PORT,
        user=settings.ORTHANC_USER,
        password=settings.ORTHANC_PASSWORD,
        dicom_port=settings.ORTHANC_DICOM_PORT,
        dicom_aet=settings.ORTHANC_DICOM_AET,
    )
