"""The front's configuration: nginx's one template, rendered for where nginx runs.

`deploy/nginx/pacsportal.conf.template` is the one template and this module the
one place that renders it: for compose's front container (the official nginx
image, which has no Python), where the web container's entrypoint runs
`manage.py render_front` into a memory-backed volume that the front mounts
read-only; and for the local stack's nginx (`devstack/nginx.py`: `manage.py
serve`, the tests, the bench), which also starts and supervises it. Each time
with a small main configuration around it (pid, temp paths, logs) and the
Orthanc service credential in a file of its own, readable by its owner only.
Rendering is runtime (compose uses it); running nginx is the local stack's.
"""

from __future__ import annotations

import base64
import os
import re
import urllib.parse
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.revocation_table import nginx_cache_seconds

REPOSITORY = Path(__file__).resolve().parent.parent
TEMPLATE = REPOSITORY / "deploy" / "nginx" / "pacsportal.conf.template"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
ACCESS_LOG_FORMAT = (
    "log_format pacsportal escape=json '{"
    '"time":"$time_iso8601","client":"$remote_addr","user":"$pacs_user","method":"$request_method",'
    '"path":"$pacs_request_path","status":$status,"bytes":$body_bytes_sent,"seconds":$request_time'
    "}';"
)
# compose.yaml's front container: the port it listens on (published as WEB_PORT),
# its loopback-only health listener, and its decision cache, a tmpfs mount there.
CONTAINER_PORT = 8000
CONTAINER_HEALTH_PORT = 8081
CONTAINER_DECISION_CACHE = "/var/cache/nginx/pacs-decisions"
# compose.yaml's front image (nginx:1.30-alpine); tests/test_deployment.py keeps the two equal.
COMPOSE_FRONT_VERSION = (1, 30)
MEMORY_FILESYSTEM_TYPES = frozenset({"tmpfs", "ramfs"})


class FrontStartError(RuntimeError):
    pass


def render(template: str, values: dict[str, str]) -> str:
    """Substitute ${NAME} placeholders (braces only, as the nginx image's envsubst is used)."""
    missing = sorted(set(PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise KeyError(f"no value for {', '.join(missing)} in {TEMPLATE.name}")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


# nginx 1.25.1 made HTTP/2 a server directive (`http2 on;`) and deprecated the
# `http2` parameter of `listen`, which earlier versions (Debian 12 ships 1.22) need.
HTTP2_DIRECTIVE_SINCE = (1, 25, 1)


def tls_listen(port: int, version: tuple[int, ...]) -> tuple[str, str]:
    """`listen`'s parameters and the server directive that turn on TLS with HTTP/2."""
    if version >= HTTP2_DIRECTIVE_SINCE:
        return f"{port} ssl", "http2 on; "
    return f"{port} ssl http2", ""


# Mozilla's "intermediate" server-side TLS guideline, version 5.7 (the one sslyze 6.3
# checks; tests/test_front_tls_profile.py scans the running front with it). Its DHE
# suites are left out, as they need a dhparam file: of the oldest clients it names,
# IE 11 on Windows 7 then reaches only an ECDSA certificate, not an RSA one. TLS 1.3's
# suites are OpenSSL's defaults, which are the guideline's three.
TLS_PROFILE = (
    "ssl_protocols TLSv1.2 TLSv1.3;",
    "ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;",
    # Every suite left is strong: the client's order picks what is fast on its hardware.
    "ssl_prefer_server_ciphers off;",
    "ssl_ecdh_curve X25519:prime256v1:secp384r1;",
    "ssl_session_timeout 1d;",
    "ssl_session_cache shared:pacsportal_tls:10m;",
    # A ticket key lives as long as nginx does and would undo forward secrecy until a restart.
    "ssl_session_tickets off;",
)
# Mozilla's intermediate HSTS: two years, TLS_HSTS_SECONDS's default (pacsportal/settings.py).
HSTS_SECONDS = 63072000


def hsts_value(seconds: int, include_subdomains: bool, preload: bool) -> str:
    value = f"max-age={seconds}"
    if include_subdomains:
        value += "; includeSubDomains"
    if preload:
        value += "; preload"
    return value


def redirect_server(port: int, tls_port: int) -> str:
    """The plain-HTTP listener of HTTP_REDIRECT_PORT: every request sent to the TLS port, nothing served."""
    authority = "$host" if tls_port == 443 else f"$host:{tls_port}"
    return (
        "# HTTP_REDIRECT_PORT: plain HTTP that only sends each request to HTTPS (same host and path).\n"
        f"server {{\n    listen {port};\n    server_tokens off;\n    client_header_timeout 15s;\n"
        f"    return 301 https://{authority}$request_uri;\n}}"
    )


@dataclass
class Front(ABC):
    """nginx in front of one portal (gunicorn) and one Orthanc: its configuration files.

    Where nginx runs decides the main configuration around the rendered template,
    the checks before writing, and where decisions are cached: compose's front
    container (`ContainerFront`) or the local stack's nginx (`devstack.nginx`).
    """

    work_dir: Path
    port: int
    portal_upstream: str  # "unix:/path/to/gunicorn.sock" or "host:port"
    orthanc_upstream: str  # "127.0.0.1:8042"
    orthanc_user: str
    orthanc_password: str
    tls_cert: str = ""
    tls_key: str = ""
    decision_seconds: int = 5
    max_body: str = "4g"
    max_uploads: int = 8  # NGINX_MAX_UPLOADS
    max_uploads_per_client: int = 4  # NGINX_MAX_UPLOADS_PER_CLIENT
    read_timeout: int = 120
    workers: int = 2
    site_proxies: tuple[str, ...] = ()  # addresses or networks (SITE_PROXIES)
    gzip: bool = False  # NGINX_GZIP
    hsts_seconds: int = HSTS_SECONDS  # TLS_HSTS_SECONDS
    hsts_include_subdomains: bool = False  # SECURE_HSTS_INCLUDE_SUBDOMAINS
    hsts_preload: bool = False  # SECURE_HSTS_PRELOAD
    ocsp_stapling: bool = False  # TLS_OCSP_STAPLING
    trusted_ca_file: str = ""  # TLS_TRUSTED_CA_FILE
    http_redirect_port: int = 0  # HTTP_REDIRECT_PORT; 0: none
    version: tuple[int, ...] | None = None  # the nginx that will run it, read when first needed

    @property
    def config_path(self) -> Path:
        return self.work_dir / "nginx.conf"

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    @abstractmethod
    def decision_cache(self) -> Path:
        """Where nginx caches decisions: memory only, as the keys hold credentials."""

    @abstractmethod
    def read_version(self) -> tuple[int, ...]:
        """The version of the nginx that will run this configuration."""

    @abstractmethod
    def prepare(self) -> None:
        """Refuse a place the files must not be written to, and make the directories nginx needs."""

    @abstractmethod
    def process_directives(self) -> list[str]:
        """nginx.conf's lines outside `http`: user, pid, error log."""

    @abstractmethod
    def http_directives(self) -> list[str]:
        """nginx.conf's lines inside `http` that depend on where it runs: temp paths, access log."""

    def extra_servers(self) -> str:
        """Servers of nginx.conf beside the template's."""
        return ""

    def refuse_idle_tls_options(self) -> None:
        """Each TLS option asked for without what it needs would be silently dropped: refuse it."""
        if not self.tls_cert:
            for name, asked in [
                ("HTTP_REDIRECT_PORT", self.http_redirect_port),
                ("TLS_OCSP_STAPLING", self.ocsp_stapling),
            ]:
                if asked:
                    raise FrontStartError(
                        f"{name} is set, but the front has no TLS: set TLS_CERT_FILE and TLS_KEY_FILE"
                    )
        if self.http_redirect_port and self.http_redirect_port == self.port:
            raise FrontStartError(f"HTTP_REDIRECT_PORT={self.http_redirect_port} is the TLS port itself")
        if self.trusted_ca_file and not self.ocsp_stapling:
            raise FrontStartError(
                "TLS_TRUSTED_CA_FILE verifies OCSP answers: set TLS_OCSP_STAPLING=true, or leave it empty"
            )

    def values(self) -> dict[str, str]:
        self.refuse_idle_tls_options()
        listen, tls, hsts = str(self.port), "", ""
        if self.tls_cert:
            if self.version is None:
                self.version = self.read_version()
            listen, http2 = tls_listen(self.port, self.version)
            directives = list(TLS_PROFILE)
            if self.ocsp_stapling:
                directives += ["ssl_stapling on;", "ssl_stapling_verify on;"]
            if self.trusted_ca_file:
                directives.append(f"ssl_trusted_certificate {self.trusted_ca_file};")
            certificate = f"{http2}ssl_certificate {self.tls_cert}; ssl_certificate_key {self.tls_key};"
            tls = "\n    ".join([certificate, *directives])
            hsts = hsts_value(self.hsts_seconds, self.hsts_include_subdomains, self.hsts_preload)
        redirect = "# No plain-HTTP listener (HTTP_REDIRECT_PORT)."
        if self.http_redirect_port:
            redirect = redirect_server(self.http_redirect_port, self.port)
        return {
            "PORTAL_UPSTREAM": self.portal_upstream,
            "ORTHANC_UPSTREAM": self.orthanc_upstream,
            "NGINX_LISTEN": listen,
            "NGINX_TLS": tls,
            "NGINX_HSTS": hsts,
            "NGINX_HTTP_REDIRECT": redirect,
            "NGINX_REAL_IP": real_ip(self.site_proxies),
            "NGINX_GZIP": "on" if self.gzip else "",
            "NGINX_MAX_BODY": self.max_body,
            "NGINX_MAX_UPLOADS": str(self.max_uploads),
            "NGINX_MAX_UPLOADS_PER_CLIENT": str(self.max_uploads_per_client),
            # nginx keeps cache entries by whole seconds, one more than asked at worst.
            "NGINX_DECISION_SECONDS": str(nginx_cache_seconds(self.decision_seconds)),
            "NGINX_DECISION_CACHE": str(self.decision_cache),
            "NGINX_SECRETS_DIR": str(self.work_dir / "secrets"),
            "ORTHANC_READ_TIMEOUT": str(self.read_timeout),
        }

    def main_config(self) -> str:
        """nginx.conf: the rendered template inside the process and http settings of where nginx runs."""
        http = "".join(f"    {line}\n" for line in self.http_directives())
        return (
            "\n".join(self.process_directives())
            + f"\nworker_processes {self.workers};\nevents {{ worker_connections 2048; }}\nhttp {{\n"
            "    default_type application/octet-stream;\n"
            "    sendfile on;\n    tcp_nopush on;\n    tcp_nodelay on;\n"
            f"    {ACCESS_LOG_FORMAT}\n{http}"
            f"    include {self.work_dir}/pacsportal.conf;\n{self.extra_servers()}}}\n"
        )

    def write_config(self) -> Path:
        """Write the credential, the rendered template and nginx.conf; return nginx.conf's path.

        Each file is readable by its owner only and replaced whole: an nginx
        starting meanwhile, or another web replica writing the same files,
        never reads half of one.
        """
        self.prepare()
        (self.work_dir / "secrets").mkdir(mode=0o700, exist_ok=True)
        write_replacing(self.work_dir / "secrets" / "orthanc-credential.conf", credential_directive(self))
        write_replacing(self.work_dir / "pacsportal.conf", render(TEMPLATE.read_text(), self.values()))
        write_replacing(self.config_path, self.main_config())
        return self.config_path


@dataclass
class ContainerFront(Front):
    """The front container of compose.yaml: the same template, for the official nginx image.

    Written into `work_dir`, a memory-backed volume of the web container that
    the front mounts read-only at the same path, and read there by nginx's
    master process (root) at start. The upstreams are compose's service names;
    the Orthanc credential comes from the web container's secret, as the
    portal's own does.
    """

    health_host: str = "localhost"

    @property
    def decision_cache(self) -> Path:
        return Path(CONTAINER_DECISION_CACHE)

    def read_version(self) -> tuple[int, ...]:
        # The web container has no nginx to ask: the front is compose.yaml's image.
        return COMPOSE_FRONT_VERSION

    def prepare(self) -> None:
        if self.http_redirect_port:
            raise FrontStartError(
                "HTTP_REDIRECT_PORT is for manage.py serve: compose.yaml publishes the front's one port "
                "(WEB_PORT), so leave it empty there"
            )
        if not on_memory_filesystem(self.work_dir):
            raise FrontStartError(
                f"{self.work_dir} is not on a memory filesystem (tmpfs): the Orthanc credential "
                "must not touch disk (compose.yaml mounts a tmpfs volume there)"
            )

    def process_directives(self) -> list[str]:
        return [
            "# compose.yaml's front container (the official nginx image), written by the web",
            "# container's entrypoint (manage.py render_front, pacsportal/front.py).",
            "user nginx;",
            "pid /run/nginx.pid;",
            "error_log /dev/stderr warn;",
        ]

    def http_directives(self) -> list[str]:
        return ["access_log /dev/stdout pacsportal;"]

    def extra_servers(self) -> str:
        return (
            "    # The container's health check: the portal's /healthz through the front, on loopback only.\n"
            f"    server {{\n        listen 127.0.0.1:{CONTAINER_HEALTH_PORT};\n        access_log off;\n"
            "        location = /healthz {\n            proxy_pass http://pacsportal_web;\n"
            "            proxy_http_version 1.1;\n"
            f'            proxy_set_header Host "{self.health_host}";\n'
            '            proxy_set_header Connection "";\n        }\n'
            "        location / {\n            return 404;\n        }\n    }\n"
        )


def real_ip(site_proxies: tuple[str, ...]) -> str:
    """The directives by which nginx believes the site's proxies' X-Forwarded-For, if any.

    Recursive: the client is the right-most address that is not one of them, so
    a client's own X-Forwarded-For, which the site proxy appends to, names nobody.
    """
    if not site_proxies:
        return "# No site proxy in front (SITE_PROXIES): the peer is the client."
    trusted = " ".join(f"set_real_ip_from {network};" for network in site_proxies)
    return f"{trusted} real_ip_header X-Forwarded-For; real_ip_recursive on;"


def on_memory_filesystem(path: Path) -> bool:
    """Whether `path` lies on a tmpfs (or ramfs): the longest mount point holding it decides."""
    target = os.path.realpath(path)
    found, kind = "", ""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(found):
                found, kind = point, fields[2]
    return kind in MEMORY_FILESYSTEM_TYPES


def credential_directive(front: Front) -> str:
    token = base64.b64encode(f"{front.orthanc_user}:{front.orthanc_password}".encode()).decode()
    return f'proxy_set_header Authorization "Basic {token}";\n'


def write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as secret:
        secret.write(text)
    os.chmod(path, 0o600)


def write_replacing(path: Path, text: str) -> None:
    """Write a file readable by its owner only beside `path`, then rename it over `path`."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    write_private(partial, text)
    os.replace(partial, path)


def options_from_settings() -> dict[str, Any]:
    """What every front takes from the settings: Orthanc, the limits, the site's proxies, TLS."""
    from django.conf import settings

    return {
        "orthanc_upstream": urllib.parse.urlsplit(settings.ORTHANC_URL).netloc,
        "orthanc_user": settings.ORTHANC_USER,
        "orthanc_password": settings.ORTHANC_PASSWORD,
        "decision_seconds": settings.NGINX_DECISION_SECONDS,
        "max_body": settings.NGINX_MAX_BODY,
        "max_uploads": settings.NGINX_MAX_UPLOADS,
        "max_uploads_per_client": settings.NGINX_MAX_UPLOADS_PER_CLIENT,
        "read_timeout": settings.ORTHANC_READ_TIMEOUT,
        "site_proxies": tuple(str(network) for network in settings.SITE_PROXIES),
        "gzip": settings.NGINX_GZIP,
        # HSTS, its scope as Django's flags ask, and OCSP stapling.
        "hsts_seconds": settings.TLS_HSTS_SECONDS,
        "hsts_include_subdomains": settings.SECURE_HSTS_INCLUDE_SUBDOMAINS,
        "hsts_preload": settings.SECURE_HSTS_PRELOAD,
        "ocsp_stapling": settings.TLS_OCSP_STAPLING,
        "trusted_ca_file": settings.TLS_TRUSTED_CA_FILE,
        "http_redirect_port": settings.HTTP_REDIRECT_PORT,
    }


def container_from_settings(directory: Path) -> ContainerFront:
    """compose.yaml's front, as the web container's settings describe it (manage.py render_front)."""
    from django.conf import settings

    from pacsportal.env import env_str

    return ContainerFront(
        work_dir=directory,
        port=CONTAINER_PORT,
        portal_upstream=env_str("FRONT_PORTAL_UPSTREAM") or "web:8000",
        tls_cert=env_str("TLS_CERT_FILE"),
        tls_key=env_str("TLS_KEY_FILE"),
        health_host=allowed_host(settings.ALLOWED_HOSTS),
        **options_from_settings(),
    )


def allowed_host(allowed_hosts: list[str]) -> str:
    """A Host header Django accepts, as deploy/healthcheck.py picks it for the web container."""
    for entry in allowed_hosts:
        if entry and entry != "*":
            return entry.lstrip(".")
    return "localhost"
