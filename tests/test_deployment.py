"""The container deployment, checked statically (no Docker engine here) and by `check --deploy`."""

from __future__ import annotations

import datetime
import http.server
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.http.request import validate_host

from tests.compose import build_context, shell_blocks
from tests.services import REPO, free_port

SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY|REGISTERED_USERS|DATABASE_URL")
SUBSTITUTION = re.compile(r"\$\{[A-Z_]+(?::?[-?][^}]*)?\}")
# Node.js release lines and their end of life (nodejs.org/about/previous-releases).
NODE_END_OF_LIFE = {
    18: datetime.date(2025, 4, 30),
    20: datetime.date(2026, 4, 30),
    22: datetime.date(2027, 4, 30),
    24: datetime.date(2028, 4, 30),
    26: datetime.date(2029, 4, 30),
}


def compose(name: str = "compose.yaml") -> dict[str, Any]:
    return yaml.safe_load((REPO / name).read_text())


def test_it_publishes_no_orthanc_http_port() -> None:
    services = compose()["services"]
    assert "ports" not in services["orthanc"]
    assert "ports" not in services["db"]
    assert services["web"]["ports"] == ["${WEB_PORT:-443}:8000"]
    assert compose("compose.dicom.yaml")["services"]["orthanc"]["ports"] == [
        "${ORTHANC_DICOM_PORT:-4242}:4242"
    ]
    assert compose()["networks"]["backend"]["internal"] is True


def test_it_gives_every_service_a_health_check_and_a_restart_policy() -> None:
    for name, service in compose()["services"].items():
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name
    assert "HEALTHCHECK" in (REPO / "Dockerfile").read_text()
    web = compose()["services"]["web"]["depends_on"]
    assert web == {"db": {"condition": "service_healthy"}, "orthanc": {"condition": "service_healthy"}}


def test_it_has_no_literal_secret() -> None:
    for name, service in compose()["services"].items():
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                secret_parts = SUBSTITUTION.sub("", str(value))
                assert SUBSTITUTION.search(str(value)), f"{name}.{key} is a literal"
                assert not re.search(r":[^@/]+@", secret_parts), f"{name}.{key} embeds a password"


def filled_env_example(tmp_path: Path) -> dict[str, str]:
    """.env.example with its blanks filled with test values, as an admin would."""
    env: dict[str, str] = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(.*)", line)
        if match:
            env[match.group(1)] = match.group(2)
    env.update(
        SECRET_KEY="t" * 30 + "-a-long-random-test-secret-value",
        ORTHANC_PASSWORD="orthanc-test-password",
        DATABASE_URL="postgres://portal:x@db.invalid:5432/portal",
        PORTAL_VAR_DIR=str(tmp_path),
        STATIC_ROOT=str(tmp_path / "static"),
        PATH="/usr/bin:/bin",
    )
    return env


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_it_passes_the_deploy_check_with_the_production_template(tmp_path: Path) -> None:
    result = run_manage(filled_env_example(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    env = filled_env_example(tmp_path)
    env["SECRET_KEY"] = ""
    result = run_manage(env, "check", "--deploy")
    assert result.returncode != 0
    assert "missing required setting(s): SECRET_KEY" in result.stderr


def database_settings(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = "from django.conf import settings; print(settings.DATABASES['default']['PASSWORD'])"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "pacsportal.settings",
            "DEBUG": "true",
            "PORTAL_VAR_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_takes_the_database_password_from_a_file_as_written(tmp_path: Path) -> None:
    password = "ab/cd+ef/gh=="  # base64 with `/`: it would break a URL
    (tmp_path / "db_password").write_text(password + "\n")
    result = database_settings(
        {
            "DATABASE_URL": "postgres://portal@db:5432/portal",
            "DATABASE_PASSWORD_FILE": str(tmp_path / "db_password"),
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == password


def test_it_refuses_a_database_password_in_two_places(tmp_path: Path) -> None:
    result = database_settings(
        {"DATABASE_URL": "postgres://portal:one@db:5432/portal", "DATABASE_PASSWORD": "two"}, tmp_path
    )
    assert result.returncode != 0
    assert "in DATABASE_URL or DATABASE_PASSWORD, not both" in result.stderr


def run_python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


class HostRecorder(http.server.BaseHTTPRequestHandler):
    hosts: list[str] = []

    def do_GET(self) -> None:
        self.hosts.append(self.headers["Host"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def host_recorder() -> Iterator[tuple[int, list[str]]]:
    server = http.server.HTTPServer(("127.0.0.1", free_port()), HostRecorder)
    HostRecorder.hosts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], HostRecorder.hosts
    server.shutdown()


@pytest.mark.parametrize("allowed", [".hospital.example", "pacs.hospital.example,.example.org", "*"])
def test_the_health_check_asks_as_a_host_django_allows(
    host_recorder: tuple[int, list[str]], allowed: str
) -> None:
    port, hosts = host_recorder
    env = {"ALLOWED_HOSTS": allowed, "PORT": str(port)}
    result = run_python(env, "deploy/healthcheck.py")
    assert result.returncode == 0, result.stderr
    (host,) = hosts
    assert validate_host(host, allowed.split(",")), f"Host: {host} is refused with ALLOWED_HOSTS={allowed}"


def test_it_builds_with_a_node_release_that_is_still_maintained() -> None:
    (major,) = re.findall(r"^FROM node:(\d+)\b", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    end_of_life = NODE_END_OF_LIFE.get(int(major))
    assert end_of_life, f"node {major} is not an LTS line this test knows: add it with its end of life"
    assert end_of_life > datetime.date.today() + datetime.timedelta(days=90), (
        f"node {major} ends {end_of_life}"
    )
    assert int(major) % 2 == 0, "odd Node.js releases never become LTS"


def test_it_leaves_data_and_secrets_out_of_the_image(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO, checkout, symlinks=True, ignore=shutil.ignore_patterns(".venv", "var", ".git"))
    strays = [
        "portal.dump",
        "orthanc.dump",
        "orthanc-storage.tgz",
        "backups/2025-01-31/portal.dump",
        "secrets/secret_key",
        "certs/key.pem",
        ".env",
        "var/portal.sqlite3",
        "var/orthanc/storage/00/00/0000",
        "pacsportal/__pycache__/settings.cpython-311.pyc",
    ]
    for stray in strays:
        (checkout / stray).parent.mkdir(parents=True, exist_ok=True)
        (checkout / stray).write_text("patient data or a secret\n")
    context = set(build_context(checkout))
    assert context.isdisjoint(strays), sorted(context & set(strays))
    # ...and everything the image runs, down to the viewer's pin and the templates.
    needed = ["manage.py", "gunicorn.conf.py", "requirements.txt", "viewer/ohif.json", "deploy/entrypoint.sh"]
    needed += ["deploy/healthcheck.py", "pacsportal/settings.py", "templates/home.html", "audit/models.py"]
    assert set(needed) <= context, sorted(set(needed) - context)


def test_the_backups_are_written_outside_the_checkout() -> None:
    for block in shell_blocks("Backup and restore"):
        assignments = re.findall(r"^BACKUP_DIR=(\S+)", block, re.MULTILINE)
        assert [path[:1] for path in assignments] == ["/"], f"no absolute BACKUP_DIR in:\n{block}"
        for target in re.findall(r"[<>]\s*(\S+)", block):
            assert target.startswith('"$BACKUP_DIR/'), f"{target} is not under $BACKUP_DIR"
        for source in re.findall(r"-v (\S+):/b\b", block):
            assert source == '"$BACKUP_DIR"', f"{source} is not $BACKUP_DIR"
