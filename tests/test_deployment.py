"""The container deployment, checked without a Docker engine: the compose files
rendered as compose renders them (tests/compose.py) for a site set up by the
steps of docs/deploy.md, the build context, the image's base, and `check --deploy`.
The containers' start itself is in test_compose_startup.py."""

from __future__ import annotations

import base64
import datetime
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.http.request import validate_host

from pacsportal import front
from tests.compose import (
    NGINX_IMAGE_ID,
    SECRETS_DIR,
    Container,
    Project,
    build_context,
    interpolate,
    make_site,
    mount_options,
    orthanc_configuration,
    read_env_file,
    set_env,
    shell_blocks,
)
from tests.services import REPO, free_port
from tests.test_env_example import READERS

SECRET_NAME = re.compile(r"(PASSWORD|SECRET_KEY|REGISTERED_USERS(__\w+)?)(_FILE|_SECRET)?$")
# What compose.yaml sets for the portal itself, over .env: addresses and paths
# inside the image (listed in .env.example's compose section too).
SET_BY_COMPOSE = {
    "HOST",
    "PORT",
    "PORTAL_VAR_DIR",
    "STATIC_ROOT",
    "OHIF_CACHE_DIR",
    "DATABASE_URL",
    "ORTHANC_URL",
    "ORTHANC_USER",
    # Behind the front: its configuration, its address, and what of its headers is believed.
    "FRONT_CONFIG_DIR",
    "FRONT_PORTAL_UPSTREAM",
    "TRUST_PROXY_SSL_HEADER",
    "TRUSTED_PROXIES",
    # The front's decision cache, which the portal empties when access changes.
    "NGINX_DECISION_CACHE_DIR",
}
# Secrets the portal reads, and the compose secret each comes from.
PORTAL_SECRETS = {
    "SECRET_KEY": "secret_key",
    "ORTHANC_PASSWORD": "orthanc_password",
    "DATABASE_PASSWORD": "portal_db_password",
    "PORTAL_ADMIN_PASSWORD": "portal_admin_password",
}
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


def documented_variables() -> dict[str, str]:
    return read_env_file(REPO / ".env.example")


def variables_read_by_the_portal() -> set[str]:
    """Every variable read by the code the image runs: all packages, not only those test_env_example scans."""
    names: set[str] = set()
    for top in REPO.iterdir():
        if top.name in {"tests", "bench", ".venv", "var", ".git"}:
            continue
        for path in [top] if top.is_file() else top.rglob("*.py"):
            if path.suffix == ".py":
                names |= set(READERS.findall(path.read_text()))
    return names


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_site(tmp_path_factory.mktemp("site"))


def web_container(site: Path, tmp_path: Path) -> Container:
    web = Project(site).container("web")
    web.mounts.update({"/app": REPO, "/data": tmp_path, "/app/ohif": REPO / "var" / "ohif"})
    web.mounts["/app/static-root"] = tmp_path / "static"
    return web


def run_python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_front_is_the_only_service_that_publishes_a_port() -> None:
    services = compose()["services"]
    published = {name: service["ports"] for name, service in services.items() if "ports" in service}
    assert published == {"front": [f"${{WEB_PORT:-443}}:{front.CONTAINER_PORT}"]}
    assert services["front"]["image"].startswith("nginx:1."), "the official nginx image, pinned"


def test_the_portal_is_reachable_from_the_front_only() -> None:
    config = compose()
    networks, services = config["networks"], config["services"]
    for name in ("web", "orthanc", "db"):
        for network in services[name]["networks"]:
            assert networks[network].get("internal") is True, f"{name} is on {network}, not internal"
    members = {
        network: {name for name, service in services.items() if network in service["networks"]}
        for network in networks
    }
    # The portal believes X-Forwarded-For from the edge subnet: only the front may be there.
    assert members["edge"] == {"front", "web"}
    assert services["web"]["environment"]["TRUSTED_PROXIES"] == "${EDGE_SUBNET:-172.30.249.0/27}"
    assert networks["edge"]["ipam"]["config"] == [{"subnet": "${EDGE_SUBNET:-172.30.249.0/27}"}]
    # The front shares exactly one network with each service it proxies (one address to resolve),
    # and none with the database.
    shared = {name: set(services["front"]["networks"]) & set(services[name]["networks"]) for name in services}
    assert shared["web"] == {"edge"} and shared["orthanc"] == {"archive"} and not shared["db"]


def test_it_gives_every_service_a_health_check_and_a_restart_policy() -> None:
    for name, service in compose()["services"].items():
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name
    assert "HEALTHCHECK" in (REPO / "Dockerfile").read_text()
    web = compose()["services"]["web"]["depends_on"]
    assert web == {"db": {"condition": "service_healthy"}, "orthanc": {"condition": "service_healthy"}}
    # nginx resolves both names once, at its start: it waits for them, and restarts with them.
    assert compose()["services"]["front"]["depends_on"] == {
        "web": {"condition": "service_healthy", "restart": True},
        "orthanc": {"condition": "service_healthy", "restart": True},
    }


def test_it_publishes_the_dicom_server_on_4242_with_the_template() -> None:
    template = documented_variables()
    override = compose("compose.dicom.yaml")["services"]["orthanc"]
    assert [interpolate(port, template) for port in override["ports"]] == ["4242:4242"]
    assert override["environment"]["ORTHANC__DICOM_SERVER_ENABLED"] == "true"
    assert compose()["services"]["orthanc"]["environment"]["ORTHANC__DICOM_SERVER_ENABLED"] == "false"


def test_it_locks_the_orthanc_index_for_its_single_orthanc() -> None:
    # The image's default is false; natively (devstack/orthanc_server.py) the lock is on.
    assert compose()["services"]["orthanc"]["environment"].get("ORTHANC__POSTGRESQL__LOCK") == "true"


def test_it_builds_with_a_node_release_that_is_still_maintained() -> None:
    (major,) = re.findall(r"^FROM node:(\d+)\b", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    end_of_life = NODE_END_OF_LIFE.get(int(major))
    assert end_of_life, f"node {major} is not an LTS line this test knows: add it with its end of life"
    assert end_of_life > datetime.date.today() + datetime.timedelta(days=90), (
        f"node {major} ends {end_of_life}"
    )
    assert int(major) % 2 == 0, "odd Node.js releases never become LTS"


def test_every_documented_generator_makes_a_secret_key_django_accepts() -> None:
    """Django's deploy check wants SECRET_KEY to have 50 characters or more."""
    texts = [(REPO / "docs" / "deploy.md").read_text(), (REPO / ".env.example").read_text()]
    sizes = [int(n) for text in texts for n in re.findall(r"openssl rand -base64 (\d+)", text)]
    assert sizes, "the docs recommend no generator"
    for size in sizes:
        assert 4 * -(-size // 3) >= 50, f"`openssl rand -base64 {size}` makes {4 * -(-size // 3)} characters"


def test_the_template_has_tls_wherever_it_asks_for_https() -> None:
    template = documented_variables()
    assert template["PORTAL_HTTPS"] == "true"
    assert template["WEB_PORT"] == "443"
    front_volumes = compose()["services"]["front"]["volumes"]
    volumes = [interpolate(v, template) for v in front_volumes if "TLS_DIR" in str(v)]
    (mount,) = [volume.split(":")[1] for volume in volumes]
    for name in ("TLS_CERT_FILE", "TLS_KEY_FILE"):
        assert template[name].startswith(mount + "/"), f"{name}={template[name]!r} is not under {mount}"
    install = shell_blocks("Install (compose)")[0]
    assert "certs/cert.pem" in install and "certs/key.pem" in install, (
        "the install steps skip the certificate"
    )


@pytest.fixture
def front_config(site: Path, tmp_path: Path) -> Iterator[tuple[Container, Container, Path]]:
    """`manage.py render_front` with the web container's environment, into a tmpfs directory
    standing in for the front-config volume; (web, front, that directory)."""
    web = web_container(site, tmp_path)
    directory = Path(tempfile.mkdtemp(prefix="pacsportal-front-config-", dir="/dev/shm"))
    result = run_python({**web.native_env(), "FRONT_CONFIG_DIR": str(directory)}, "manage.py", "render_front")
    assert result.returncode == 0, result.stderr
    assert "HTTPS with HTTP/2" in result.stdout
    yield web, Project(site).container("front", {"front-config": directory}), directory
    shutil.rmtree(directory, ignore_errors=True)


def test_the_front_configuration_names_only_what_the_front_container_has(
    front_config: tuple[Container, Container, Path],
) -> None:
    web, front_container, directory = front_config
    (target,) = [
        v.split(":")[1] for v in compose()["services"]["front"]["volumes"] if "front-config:" in str(v)
    ]
    assert target == web.env["FRONT_CONFIG_DIR"], "the front mounts the volume where the portal writes it"
    assert compose()["services"]["front"]["command"][:3] == ["nginx", "-c", f"{target}/nginx.conf"]
    text = "\n".join(
        (directory / name).read_text().replace(str(directory), target)
        for name in ("nginx.conf", "pacsportal.conf")
    )
    files = re.compile(
        r"(?:^|;)\s*(?:ssl_certificate|ssl_certificate_key|include|proxy_cache_path|pid|error_log|access_log"
        r"|\w+_temp_path)\s+(/[^\s;]+)",
        re.MULTILINE,
    )
    named = set(files.findall(text))
    assert len(named) >= 6, named
    for path in named:
        if path in {"/run/nginx.pid", "/dev/stdout", "/dev/stderr"}:
            continue  # the image's own
        inside = [
            m
            for m in [*front_container.mounts, *front_container.tmpfs]
            if path.startswith(m + "/") or path == m
        ]
        assert inside, f"{path} is named by the front's configuration, but nothing is mounted there"
    assert f"ssl_certificate {web.env['TLS_CERT_FILE']};" in text
    assert web.env["TLS_CERT_FILE"].startswith("/certs/") and "/certs" in front_container.mounts
    assert f"proxy_cache_path {front.CONTAINER_DECISION_CACHE} " in text
    assert front.CONTAINER_DECISION_CACHE in front_container.tmpfs, "the decision cache must be in memory"
    # The portal empties that cache when access changes: the same volume, where it looks.
    volumes = {str(v) for v in compose()["services"]["front"]["volumes"]}
    (shared,) = [v for v in volumes if v.endswith(f":{front.CONTAINER_DECISION_CACHE}")]
    assert shared in compose()["services"]["web"]["volumes"]
    # nginx's user owns it; the portal may remove entries through the group, no one else anything.
    options = mount_options(compose()["volumes"][shared.split(":")[0]])
    assert options["mode"] == "0770" and options["uid"] == options["gid"] == str(NGINX_IMAGE_ID)
    assert [str(group) for group in compose()["services"]["web"]["group_add"]] == [str(NGINX_IMAGE_ID)]
    assert web.env["NGINX_DECISION_CACHE_DIR"] == front.CONTAINER_DECISION_CACHE
    assert f"include {target}/secrets/orthanc-credential.conf;" in text
    assert f"server {web.env['FRONT_PORTAL_UPSTREAM']};" in text
    assert "server orthanc:8042;" in text
    assert f"listen {front.CONTAINER_PORT} ssl;" in text and "http2 on;" in text  # nginx 1.30


def test_the_front_gets_the_orthanc_credential_from_the_secret_in_memory_only(
    site: Path, front_config: tuple[Container, Container, Path]
) -> None:
    web, _, directory = front_config
    credential = directory / "secrets" / "orthanc-credential.conf"
    password = (site / "secrets" / "orthanc_password").read_text().strip()
    token = base64.b64encode(f"{web.env['ORTHANC_USER']}:{password}".encode()).decode()
    assert credential.read_text() == f'proxy_set_header Authorization "Basic {token}";\n'
    assert credential.stat().st_mode & 0o777 == 0o600
    volume = compose()["volumes"]["front-config"]
    assert volume["driver_opts"]["type"] == "tmpfs", "the credential's volume must be memory-backed"
    assert "uid=10001" in volume["driver_opts"]["o"], "the portal (uid 10001) writes it"


def test_it_refuses_to_write_the_front_credential_to_disk(tmp_path: Path) -> None:
    container = front.ContainerFront(
        work_dir=tmp_path,
        port=front.CONTAINER_PORT,
        portal_upstream="web:8000",
        orthanc_upstream="orthanc:8042",
        orthanc_user="pacsportal",
        orthanc_password="secret",
    )
    with pytest.raises(front.FrontStartError, match="not on a memory filesystem"):
        container.write_config()
    assert not (tmp_path / "secrets").exists()


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
    needed += ["shares/models.py", "shares/templates/shares/landing.html"]
    needed += ["accounts/templates/accounts/tokens.html"]
    assert set(needed) <= context, sorted(set(needed) - context)


def test_the_backups_are_written_outside_the_checkout() -> None:
    for block in shell_blocks("Backup and restore"):
        assignments = re.findall(r"^BACKUP_DIR=(\S+)", block, re.MULTILINE)
        assert [path[:1] for path in assignments] == ["/"], f"no absolute BACKUP_DIR in:\n{block}"
        for target in re.findall(r"[<>]\s*(\S+)", block):
            assert target.startswith('"$BACKUP_DIR/'), f"{target} is not under $BACKUP_DIR"
        for source in re.findall(r"-v (\S+):/b\b", block):
            assert source == '"$BACKUP_DIR"', f"{source} is not $BACKUP_DIR"


def test_it_gives_the_portal_its_database_password_as_written(site: Path, tmp_path: Path) -> None:
    web = web_container(site, tmp_path)
    code = "from django.conf import settings; print(settings.DATABASES['default']['PASSWORD'])"
    result = run_python({**web.native_env(), "DJANGO_SETTINGS_MODULE": "pacsportal.settings"}, "-c", code)
    assert result.returncode == 0, result.stderr
    password = (site / "secrets" / "portal_db_password").read_text().strip()
    assert "/" in password
    assert result.stdout.strip() == password


def test_it_passes_every_setting_in_env_to_the_portal(site: Path, tmp_path: Path) -> None:
    read = variables_read_by_the_portal()
    documented = set(documented_variables())
    web_environment = compose()["services"]["web"]["environment"]
    assert set(web_environment) & documented - {"ALLOWED_HOSTS"} == SET_BY_COMPOSE
    settings = sorted(read & documented - SET_BY_COMPOSE - set(PORTAL_SECRETS))
    assert {"ORTHANC_POOL_SIZE", "ORTHANC_READ_TIMEOUT", "SESSION_COOKIE_AGE", "AXES_FAILURE_LIMIT"} <= set(
        settings
    )
    checkout = tmp_path / "site"
    shutil.copytree(site, checkout, symlinks=True)
    set_env(checkout, **{name: f"value-of-{name}" for name in settings})
    web = Project(checkout).container("web")
    missing = [name for name in settings if web.env.get(name) != f"value-of-{name}"]
    assert not missing, f"set in .env, never reach the portal: {missing}"
    for name in SET_BY_COMPOSE:
        assert web.env[name] == interpolate(str(web_environment[name]), {})
    for name, secret in PORTAL_SECRETS.items():
        assert web.env[f"{name}_FILE"] == f"{SECRETS_DIR}/{secret}"
        assert web.host_path(web.env[f"{name}_FILE"]).is_file()
        assert not web.env.get(name), f"{name} is in the environment"


def test_it_passes_the_deploy_check_in_the_web_container(site: Path, tmp_path: Path) -> None:
    web = web_container(site, tmp_path)
    result = run_python(web.native_env(), "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_keeps_every_secret_out_of_every_environment(site: Path) -> None:
    project = Project(site)
    secrets = {path.name: path.read_text().strip() for path in (site / "secrets").iterdir()}
    assert set(secrets) == set(project.config["secrets"])
    for name in project.services:
        container = project.container(name)
        for key, value in container.env.items():
            leaked = [secret for secret, content in secrets.items() if content and content in value]
            assert not leaked, f"{name}: {key} holds the secret {leaked}"
            if SECRET_NAME.search(key) and value:
                assert key.endswith(("_FILE", "_SECRET")), f"{name}: {key} is a secret in the environment"
                if key.endswith("_SECRET"):
                    assert value in secrets, f"{name}: {key}={value} names no secret"
                else:
                    assert container.host_path(value).is_file(), f"{name}: {key}={value} is not mounted"


def test_orthanc_registers_the_credential_the_portal_uses(site: Path) -> None:
    project = Project(site)
    web, orthanc, db = (project.container(name) for name in ("web", "orthanc", "db"))
    config = orthanc_configuration(orthanc)
    portal_password = web.host_path(web.env["ORTHANC_PASSWORD_FILE"]).read_text().strip()
    assert config["RegisteredUsers"] == {web.env["ORTHANC_USER"]: portal_password}
    index = config["PostgreSQL"]
    assert index["Password"] == db.host_path(db.env["ORTHANC_DB_PASSWORD_FILE"]).read_text().strip()
    assert (index["Host"], index["Database"], index["Username"], index["Lock"]) == (
        "db",
        "orthanc",
        "orthanc",
        True,
    )


def filled_env_example(tmp_path: Path) -> dict[str, str]:
    """.env.example with its blanks filled with test values, as an admin would."""
    env = documented_variables()
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
    return run_python(
        {
            "DJANGO_SETTINGS_MODULE": "pacsportal.settings",
            "DEBUG": "true",
            "PORTAL_VAR_DIR": str(tmp_path),
            **env,
        },
        "-c",
        code,
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


def test_the_compose_front_is_rendered_for_the_nginx_image_compose_runs() -> None:
    """The web container has no nginx to ask its version: front.py names the image's."""
    from pacsportal.front import COMPOSE_FRONT_VERSION

    image = re.fullmatch(r"nginx:(\d+)\.(\d+)-alpine", compose()["services"]["front"]["image"])
    assert image, "compose.yaml's front is not a pinned official nginx image"
    assert tuple(int(part) for part in image.groups()) == COMPOSE_FRONT_VERSION
