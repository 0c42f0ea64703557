"""Run a local Orthanc: the embedded default of `make run`, and the tests' archive.

Orthanc 1.10 has no bind-address setting: `RemoteAccessAllowed: false` makes it
refuse every client that is not on loopback, and the service credential guards
loopback. The DICOM port stays closed unless a port is configured.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = PLUGIN_DIR / "libOrthancDicomWeb.so"
POSTGRESQL_INDEX_PLUGIN = PLUGIN_DIR / "libOrthancPostgreSQLIndex.so"
INSTALL_HINT = "install it with: apt-get install orthanc orthanc-dicomweb orthanc-postgresql"


class OrthancNotInstalled(RuntimeError):
    pass


class OrthancStartError(RuntimeError):
    pass


@dataclass
class PostgresIndex:
    host: str
    port: int
    database: str
    user: str
    password: str = ""


@dataclass
class OrthancServer:
    """A local Orthanc's files under one directory, and its process once started."""

    work_dir: Path
    http_port: int
    user: str
    password: str
    dicom_port: int = 0
    dicom_aet: str = "PACSPORTAL"
    postgres: PostgresIndex | None = None
    verbose: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

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

    def config(self) -> dict[str, Any]:
        storage = str(self.work_dir / "storage")
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
            "HttpThreadsCount": 50,
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

    def start(self, timeout: float = 60) -> None:
        binary = shutil.which("Orthanc")
        if binary is None:
            raise OrthancNotInstalled(f"the Orthanc binary is not on PATH; {INSTALL_HINT}")
        for plugin in [DICOMWEB_PLUGIN] + ([POSTGRESQL_INDEX_PLUGIN] if self.postgres else []):
            if not plugin.exists():
                raise OrthancNotInstalled(f"{plugin} is missing; {INSTALL_HINT}")
        self.stop_stale()
        self.write_config()
        args = [binary, str(self.config_path)] + (["--verbose"] if self.verbose else [])
        # A new session keeps Ctrl-C in the terminal from killing Orthanc before
        # the portal has stopped using it; whoever started it stops it.
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pid_path.write_text(str(self.process.pid))
        self.wait_ready(timeout)

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
