"""Real services for the tests: a throwaway PostgreSQL cluster and the portal under gunicorn."""

from __future__ import annotations

import glob
import os
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from psycopg.rows import dict_row

REPO = Path(__file__).resolve().parent.parent


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing holds now, outside the kernel's ephemeral range.

    Ports are picked now and bound later by another process. Below the ephemeral
    range, no outgoing connection (Orthanc's to PostgreSQL, say) can take one in
    between; and a port is never handed out twice, so two servers set up before
    either starts cannot be given the same one. Passes that run side by side
    (`make test`) each draw from their own slice (PORTAL_TEST_PORT_SLOT).
    """
    first, last = port_range()
    while True:
        port = random.randrange(first, last)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port


def port_range() -> tuple[int, int]:
    """The ports this process may hand out: a slice of the 20,000 below the ephemeral range."""
    high = ephemeral_range()[0]
    low = max(1024, high - 20000)
    slot, _, slots = os.environ.get("PORTAL_TEST_PORT_SLOT", "0/1").partition("/")
    width = (high - low) // int(slots)
    return low + int(slot) * width, low + (int(slot) + 1) * width


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def require_binary(path: str, install: str) -> str:
    found = shutil.which(path) if "/" not in path else (path if os.path.exists(path) else None)
    if not found:
        pytest.fail(f"{path} is missing: install it with `{install}` (make test does this)", pytrace=False)
    return found


class PostgresCluster:
    """initdb in a temp dir, a free port, trust auth on loopback; as the postgres user when root."""

    def __init__(self, durable: bool = False) -> None:
        # Tests trade durability for speed; the bench measures what production pays.
        self.durable = durable
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            pytest.fail(
                "PostgreSQL server is missing: install it with `apt-get install postgresql`", pytrace=False
            )
        self.bin_dir = Path(bins[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="pacsportal-pg-"))
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        self.run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        if not self.durable:
            options += " -c fsync=off"
        self.run(
            "pg_ctl", "-D", str(self.dir / "data"), "-o", options, "-l", str(self.dir / "log"), "-w", "start"
        )

    def stop(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def create_database(self, name: str) -> str:
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-qc",
                f'CREATE DATABASE "{name}"',
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"


@dataclass
class LivePortal:
    """The portal under gunicorn, configured as `make run` configures it."""

    env: dict[str, str]
    work_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    passwords: dict[str, str] = field(default_factory=dict)
    # The checkout it runs from: another one for an upgrade from an older release.
    repo: Path = REPO

    @property
    def url(self) -> str:
        scheme = "https" if self.env.get("TLS_CERT_FILE") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> str | bool:
        """What requests should trust: the portal's own (self-signed) certificate under TLS."""
        return self.env.get("TLS_CERT_FILE") or True

    @property
    def log_path(self) -> Path:
        return self.work_dir / "gunicorn.log"

    def manage(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.repo,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def add_user(self, username: str, *groups: str) -> str:
        password = secrets.token_urlsafe(16)
        group_args = [arg for group in groups for arg in ("--group", group)]
        self.manage("adduser", username, *group_args, "--password-stdin", stdin=password + "\n")
        self.passwords[username] = password
        return password

    def start(self) -> None:
        env = {**self.env, "PORT": str(self.port)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "pacsportal.wsgi"],
                cwd=self.repo,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited early:\n{self.log_path.read_text()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=2, verify=self.verify).status_code in (
                    200,
                    503,
                ):
                    return
            except (requests.ConnectionError, requests.Timeout):
                # A worker still booting on a busy machine may take longer than the 2 s to answer.
                time.sleep(0.1)
        raise AssertionError(f"gunicorn did not answer on {self.url}")

    def stop(self) -> None:
        front = getattr(self, "front", None)  # tests/front.py: the portal's nginx, if in front
        if front is not None:
            front.stop()
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def audit_events(self, after_id: int = 0) -> list[dict[str, Any]]:
        """Audit rows written by this portal, read straight from its database."""
        return self.rows("SELECT * FROM audit_auditevent WHERE id > %s ORDER BY id", after_id)

    def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """A query's rows (placeholders written %s), straight from this portal's database."""
        url = self.env["DATABASE_URL"]
        if url.startswith("sqlite:///"):
            with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
                db.row_factory = sqlite3.Row
                return [dict(row) for row in db.execute(sql.replace("%s", "?"), params)]
        with psycopg.connect(url.replace("postgres://", "postgresql://"), row_factory=dict_row) as db:
            return list(db.execute(sql, params))

    def last_audit_id(self) -> int:
        events = self.audit_events()
        return int(events[-1]["id"]) if events else 0

    def login(self, username: str) -> requests.Session:
        """A browser-like session logged in through the real login form."""
        session = requests.Session()
        session.verify = self.verify
        session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides `verify`
        login_url = f"{self.url}/accounts/login/"
        session.get(login_url, timeout=10)
        response = session.post(
            login_url,
            data={
                "username": username,
                "password": self.passwords[username],
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            headers={"Referer": login_url},
            timeout=10,
            allow_redirects=False,
        )
        assert response.status_code == 302, f"login of {username} failed: {response.status_code}"
        return session
