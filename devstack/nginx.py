"""The local stack's nginx: the front of `manage.py serve`, the tests and the bench.

Configured by the one renderer (`pacsportal/front.py`), with everything under
one working directory and the decision cache on this machine's tmpfs; started,
checked and stopped here, as `devstack/orthanc_server.py` runs Orthanc.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from pacsportal.front import Front, FrontStartError, options_from_settings
from pacsportal.localenv import MEMORY_FILESYSTEM, native_decision_cache

INSTALL_HINT = "install it with: apt-get install nginx (make run and make test do this)"
TEMP_DIRECTORIES = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class FrontNotInstalled(RuntimeError):
    pass


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise FrontNotInstalled(f"nginx is not installed; {INSTALL_HINT}")
    return found


def nginx_version() -> tuple[int, ...]:
    """The installed nginx's version, from `nginx -v` ("nginx version: nginx/1.22.1")."""
    result = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, timeout=30)
    found = re.search(r"nginx/(\d+(?:\.\d+)*)", result.stderr + result.stdout)
    if found is None:
        raise FrontStartError(f"could not read nginx's version from: {result.stderr.strip()!r}")
    return tuple(int(part) for part in found.group(1).split("."))


@dataclass
class NativeFront(Front):
    """This machine's nginx, run from `work_dir`, and its process once started."""

    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.work_dir / "error.log"

    @property
    def access_log_path(self) -> Path:
        return self.work_dir / "access.log"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def decision_cache(self) -> Path:
        return native_decision_cache(self.work_dir)

    def read_version(self) -> tuple[int, ...]:
        return nginx_version()

    def prepare(self) -> None:
        if not MEMORY_FILESYSTEM.is_dir():
            raise FrontStartError(
                f"{MEMORY_FILESYSTEM} (tmpfs) is missing: the decision cache must not touch disk"
            )
        for name in TEMP_DIRECTORIES:
            (self.work_dir / name).mkdir(parents=True, exist_ok=True, mode=0o700)
        own_private_directory(self.decision_cache)

    def process_directives(self) -> list[str]:
        # Started as root, nginx would drop its workers to `nobody`, who cannot
        # reach the private unix socket and directories of a portal that (like
        # Orthanc and gunicorn under `make run`) runs as root too. Production
        # runs each under its own user (compose; docs/deploy.md).
        user = ["user root root;"] if os.geteuid() == 0 else []
        return [*user, f"pid {self.work_dir}/nginx.pid;", f"error_log {self.log_path} warn;", "daemon off;"]

    def http_directives(self) -> list[str]:
        temp = [f"{name}_temp_path {self.work_dir}/{name};" for name in TEMP_DIRECTORIES]
        return [*temp, f"access_log {self.access_log_path} pacsportal;"]

    def check(self) -> None:
        result = subprocess.run(
            [nginx_binary(), "-t", "-q", "-c", str(self.write_config()), "-p", str(self.work_dir)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise FrontStartError(f"nginx refused its configuration ({self.config_path}):\n{result.stderr}")

    def start(self, timeout: float = 30) -> None:
        self.check()
        with open(self.work_dir / "nginx.out", "ab") as out:
            self.process = subprocess.Popen(
                [nginx_binary(), "-c", str(self.config_path), "-p", str(self.work_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FrontStartError(f"nginx exited with {self.process.returncode}; see {self.log_path}")
            with socket.socket() as probe:
                probe.settimeout(1)
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise FrontStartError(f"nginx did not listen on {self.port} within {timeout:.0f} s")

    def stop(self, timeout: float = 20) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish what is being served
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.decision_cache, ignore_errors=True)


def own_private_directory(path: Path) -> None:
    """Create `path` (mode 0700), refusing one that another user made or that is a symlink."""
    path.mkdir(mode=0o700, exist_ok=True)
    found = path.lstat()
    if path.is_symlink() or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise FrontStartError(f"{path} is not a private directory of this user; remove it")


def from_settings(port: int, socket_path: Path) -> NativeFront:
    """The front of `manage.py serve`: nginx on `port`, gunicorn behind it on `socket_path`."""
    from django.conf import settings

    return NativeFront(
        work_dir=settings.VAR_DIR / "nginx",
        port=port,
        portal_upstream=f"unix:{socket_path}",
        tls_cert=os.environ.get("TLS_CERT_FILE", ""),
        tls_key=os.environ.get("TLS_KEY_FILE", ""),
        **options_from_settings(),
    )
