"""`make bench`: the portal against direct Orthanc, each figure measured in the same run.

Starts its own Orthanc (SQLite index, as `make run`) with a generated CT, the
portal under gunicorn configured as `make run` configures it (gthread 2x8,
session auth and auditing on) and a second portal with auditing off, then
measures with wrk (frames, QIDO) and a streaming Python client (series
retrieve, STOW). Beside direct Orthanc and the portal: the seed recipe's plain
nginx, and two doors that gauge the run (direct measured again, and an nginx
with no decision). Prints a table of medians with portal/direct ratios and
writes them to JSON.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import audit_scale, cold_reads, viewer_load  # noqa: E402
from bench.report import PAGE, RATIO_KEYS, Result, page_block, report, write_page  # noqa: E402
from devstack import debian  # noqa: E402
from devstack.nginx import nginx_binary  # noqa: E402
from devstack.orthanc_server import HTTP_THREADS, OrthancServer  # noqa: E402
from orthanc import demo  # noqa: E402
from pacsportal.front import TEMPLATE as FRONT_TEMPLATE  # noqa: E402
from tests.dicom import stow_body, write_large_stow_body  # noqa: E402
from tests.front import start_front  # noqa: E402
from tests.services import LivePortal, PostgresCluster, free_port  # noqa: E402
from viewer import bundle  # noqa: E402

FRAME_ACCEPT = "multipart/related; type=application/octet-stream"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


PASSED_SETTINGS = ("WEB_WORKERS", "WEB_THREADS", "NGINX_API_DECISION_SECONDS", "ORTHANC_FOLLOW_CHANGES")


def stow_direct(orthanc: OrthancServer, instances: Iterator[bytes], batch: int = 32) -> None:
    chunk: list[bytes] = []
    for data in instances:
        chunk.append(data)
        if len(chunk) == batch:
            post_instances(orthanc, chunk)
            chunk = []
    if chunk:
        post_instances(orthanc, chunk)


def post_instances(orthanc: OrthancServer, chunk: list[bytes]) -> None:
    body, content_type = stow_body(chunk)
    response = requests.post(
        f"{orthanc.url}/dicom-web/studies",
        data=body,
        auth=(orthanc.user, orthanc.password),
        headers={"Content-Type": content_type},
        timeout=300,
    )
    response.raise_for_status()


class Usage:
    """What one measurement cost: peak RSS growth of the portal's workers, CPU of
    the portal's workers and of Orthanc (user + system, from /proc)."""

    TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")

    def __init__(
        self, portal: LivePortal | None, orthanc_pid: int, front_pids: list[int] | None = None
    ) -> None:
        # The portal's cost is its gunicorn workers' and, in front of them, nginx's.
        self.pids = (portal.worker_pids() if portal else []) + (front_pids or [])
        self.orthanc_pid = orthanc_pid
        self.start: dict[int, int] = {}
        self.start_ticks: dict[int, int] = {}
        for pid in list(self.pids):
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
                self.start[pid] = self.kb(pid, "VmRSS")
                self.start_ticks[pid] = self.ticks(pid)
            except (FileNotFoundError, ProcessLookupError):
                self.pids.remove(pid)
        self.orthanc_ticks = self.ticks(orthanc_pid)

    @staticmethod
    def kb(pid: int, field: str) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    @staticmethod
    def ticks(pid: int) -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    def add_to(self, result: Result) -> None:
        # A process that ended during the measure (one nginx replaced a worker, say)
        # counts for nothing: its last figures went with it.
        growth = 0.0
        portal_ticks = 0
        for pid in self.pids:
            try:
                growth = max(growth, (self.kb(pid, "VmHWM") - self.start[pid]) / 1024)
                portal_ticks += self.ticks(pid) - self.start_ticks[pid]
            except (FileNotFoundError, ProcessLookupError):
                continue
        result["worker_peak_rss_growth_mb"] = round(growth, 1)
        portal_ms = portal_ticks * self.TICK_MS
        orthanc_ms = (self.ticks(self.orthanc_pid) - self.orthanc_ticks) * self.TICK_MS
        unit, count = ("request", result["requests"]) if "requests" in result else ("mb", result["megabytes"])
        if self.pids:
            result[f"portal_cpu_ms_per_{unit}"] = round(portal_ms / count, 3)
        result[f"orthanc_cpu_ms_per_{unit}"] = round(orthanc_ms / count, 3)


def wrk(
    url: str,
    paths: list[str],
    connections: int,
    seconds: int,
    headers: dict[str, str],
    work: Path,
    script: str = "frames.lua",
) -> Result:
    path_file = work / f"paths-{secrets.token_hex(4)}.txt"
    path_file.write_text("\n".join(paths) + "\n")
    env = {
        **os.environ,
        "BENCH_PATHS": str(path_file),
        "BENCH_ACCEPT": headers.get("Accept", "*/*"),
        "BENCH_COOKIE": headers.get("Cookie", ""),
        "BENCH_AUTHORIZATION": headers.get("Authorization", ""),
    }
    threads = min(connections, 2)
    env["BENCH_THREADS"] = str(threads)
    output = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "30s",
            "-s",
            str(REPO / "bench" / script),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors against {url}:\n{output}")
    if "list ran out" in output:  # once_each.lua read a path twice: the run is void
        raise RuntimeError(f"wrk read every path of its list against {url}: give it more\n{output}")
    # wrk always prints these lines: a None here is a broken run, and fails loudly.
    return {
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50_ms": wrk_ms(output, "50%"),
        "p99_ms": wrk_ms(output, "99%"),
    }


def wrk_ms(output: str, percentile: str) -> float:
    # wrk --latency always prints the percentile: a None here is a broken run, and fails loudly.
    value, unit = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def download(http: requests.Session, url: str, headers: dict[str, str]) -> int:
    """One streamed GET, read to its end; the bytes received."""
    received = 0
    with http.get(url, headers=headers, stream=True, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_content(1 << 20):
            received += len(chunk)
    return received


def downloads(url: str, headers: dict[str, str], auth: Any, cookies: Any, seconds: float) -> Result:
    """The same retrieve back to back on one keep-alive connection for at least `seconds`.

    One retrieve of the demo series is too short to time alone: the same plain nginx,
    timed one retrieve at a time, swung from run to run (docs/performance-history.md,
    "Series retrieve, repeated"). `first_mb_per_s` is the first retrieve alone, the one
    that met no reused decision."""
    with requests.Session() as http:
        http.auth, http.cookies = auth, requests.cookies.cookiejar_from_dict(cookies or {})
        started = time.perf_counter()
        received = download(http, url, headers)
        first = received / 1e6 / (time.perf_counter() - started)
        count = 1
        while time.perf_counter() - started < seconds:
            received += download(http, url, headers)
            count += 1
        took = time.perf_counter() - started
    return {
        "mb_per_s": received / 1e6 / took,
        "megabytes": received / 1e6,
        "first_mb_per_s": first,
        "retrieves": count,
    }


def upload(
    url: str, body: Path, content_type: str, auth: Any, cookies: Any, headers: dict[str, str]
) -> Result:
    started = time.perf_counter()
    with body.open("rb") as stream:
        response = requests.post(
            url,
            data=stream,
            auth=auth,
            cookies=cookies,
            timeout=600,
            headers={**headers, "Content-Type": content_type, "Accept": "application/dicom+json"},
        )
    response.raise_for_status()
    seconds = time.perf_counter() - started
    return {"mb_per_s": body.stat().st_size / 1e6 / seconds, "megabytes": body.stat().st_size / 1e6}


def median_of(runs: list[Result]) -> Result:
    # CPU per request to 0.001 ms, about one 10 ms clock tick over a run of ~6,000 requests:
    # the audit's cost is a few hundredths of a ms.
    return {
        key: round(statistics.median(run[key] for run in runs), 3 if "_cpu_" in key else 2) for key in runs[0]
    }


# Paired ratios: each repeat's figure over the reference door's in the same repeat, then
# the median over repeats. The doors of one repeat run within a minute of each other, so
# a machine that drifts over the run (Orthanc's own CPU per frame did in run A:
# docs/performance-history.md, "Decisions under a burst") moves both sides of each
# ratio; the ratio of the two medians is shown beside it.
PAIRS = {
    ("recipe", "direct"): "direct",
    ("portal", "direct"): "direct",
    ("portal", "recipe"): "recipe",
    ("nginx, no decision", "direct"): "direct",
    ("portal", "nginx, no decision"): "no_decision",
    ("direct, again", "direct"): "direct",
    ("portal", "portal, audit off"): "audit_off",
    ("portal, audit off", "direct"): "direct",
}


def paired_ratios(runs: list[Result], reference: list[Result], label: str) -> Result:
    return {
        f"paired_{key}_vs_{label}": round(
            statistics.median(run[key] / ref[key] for run, ref in zip(runs, reference, strict=True)), 3
        )
        for key in RATIO_KEYS
        if key in runs[0] and all(ref.get(key) for ref in reference)
    }


@dataclass(frozen=True)
class Door:
    """One way in to the archive: Orthanc itself, or a portal's /pacs mount."""

    name: str
    host: str
    prefix: str
    headers: dict[str, str]
    portal: LivePortal | None

    @property
    def base(self) -> str:
        return self.host + self.prefix


def front_pids(door: Door) -> list[int]:
    front = getattr(door.portal, "front", None) if door.portal else None
    if front is None or front.process is None:
        return []
    master = front.process.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children if nginx_worker(int(pid))]


def nginx_worker(pid: int) -> bool:
    """nginx's workers serve the requests; its cache manager and cache loader do not, and
    the loader exits about a minute after start, in the middle of a measure."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx: worker process")
    except (FileNotFoundError, ProcessLookupError):
        return False


class PlainNginx:
    """A plain nginx in front of the bench's Orthanc, as a door: no accounts, no audit.
    Only the Orthanc credential is added: this Orthanc requires one."""

    def __init__(self, work: Path, port: int, orthanc: OrthancServer) -> None:
        self.work, self.port, self.orthanc = work, port, orthanc
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def credential(self) -> str:
        return base64.b64encode(f"{self.orthanc.user}:{self.orthanc.password}".encode()).decode()

    def config(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "nginx.conf").write_text(self.config())
        self.process = subprocess.Popen(
            [nginx_binary(), "-c", str(self.work / "nginx.conf"), "-p", str(self.work)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(self.url, timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"the {type(self).__name__} nginx did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)


class Recipe(PlainNginx):
    """OHIF's "Nginx + Image Archive" recipe as a door: its /pacs location as the recipe
    writes it (`../shared/seed-ohif-nginx-recipe.txt`, its nginx.conf). Like the recipe,
    it serves the OHIF build at / (the portal's pinned build, its pre-compressed files,
    cross-origin isolated as the portal serves it) with an `app-config.js` that
    `bench/viewer_load.py` writes into its directory."""

    def config(self) -> str:
        user = "user root root;" if os.geteuid() == 0 else ""
        return (
            f"{user} worker_processes 2; pid {self.work}/nginx.pid; error_log {self.work}/error.log; "
            "daemon off; events { worker_connections 1024; } http { "
            f"client_body_temp_path {self.work}/body; proxy_temp_path {self.work}/proxy; "
            "access_log off; keepalive_timeout 65; keepalive_requests 100000; tcp_nopush on; tcp_nodelay on; "
            "include /etc/nginx/mime.types; sendfile on; gzip_static on; "
            f"server {{ listen {self.port}; location / {{ root {bundle.dist_dir()}; "
            "try_files $uri $uri/ /index.html; add_header Cross-Origin-Opener-Policy same-origin; "
            "add_header Cross-Origin-Embedder-Policy require-corp; } "
            f"location = /app-config.js {{ alias {self.work}/app-config.js; }} "
            "location /pacs/ { proxy_http_version 1.1; "
            "proxy_set_header Host $host; proxy_set_header X-Real-IP $remote_addr; "
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
            "proxy_set_header X-Forwarded-Proto $scheme; "
            f'proxy_set_header Authorization "Basic {self.credential()}"; '
            "expires 0; add_header Cache-Control private; "
            f"proxy_pass {self.orthanc.url}/; }} }} }}\n"
        )


class NoDecision(PlainNginx):
    """The least any nginx in front of Orthanc costs on this machine: the portal's read
    path with nothing of the portal in it. The upstream keep-alive and proxy buffers of
    the portal's template; to Orthanc, the Host, Accept, Forwarded and credential the
    portal sends (the bench sends no Range or If-*); no decision, no access log, no
    error pages. The portal over this door is what its decision, audit and log
    cost; this door over direct is what the hop itself costs."""

    def config(self) -> str:
        template = FRONT_TEMPLATE.read_text()
        tuning = re.findall(r"^\s*(proxy_(?:buffers|buffer_size|busy_buffers_size) [^;$]+;)", template, re.M)
        orthanc = re.search(r"^upstream pacsportal_orthanc \{(.*?)^\}", template, re.M | re.S)
        keepalive = re.findall(r"^\s*(keepalive(?:_timeout)? [^;$]+;)", orthanc[1] if orthanc else "", re.M)
        if len(tuning) != 3 or len(keepalive) != 2:
            raise RuntimeError(
                f"{FRONT_TEMPLATE}: expected three proxy buffer directives and Orthanc's upstream"
                f" keep-alive, found {tuning} {keepalive}"
            )
        upstream = self.orthanc.url.removeprefix("http://")
        user = "user root root;" if os.geteuid() == 0 else ""
        return (
            f"{user} worker_processes 2; pid {self.work}/nginx.pid; error_log {self.work}/error.log; "
            "daemon off; events { worker_connections 2048; } http { "
            f"client_body_temp_path {self.work}/body; proxy_temp_path {self.work}/proxy; "
            "access_log off; sendfile on; tcp_nopush on; tcp_nodelay on; "
            f"upstream orthanc {{ server {upstream}; {' '.join(keepalive)} }} "
            f"server {{ listen {self.port}; location = / {{ return 204; }} "
            f"proxy_http_version 1.1; proxy_max_temp_file_size 0; {' '.join(tuning)} "
            "location /pacs/ { proxy_pass http://orthanc/; proxy_pass_request_headers off; "
            "proxy_set_header Host $http_host; proxy_set_header Accept $http_accept; "
            'proxy_set_header Accept-Encoding ""; proxy_set_header Connection ""; '
            'proxy_set_header Forwarded "host=$http_host/pacs;proto=$scheme"; '
            f'proxy_set_header Authorization "Basic {self.credential()}"; }} }} }}\n'
        )


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="pacsportal-bench-"))
        self.results: dict[str, dict[str, Result]] = {}
        self.cleanup: Callable[[], None] = lambda: None
        self.cleanup_orthanc: Callable[[], None] = lambda: None

    def start_services(self) -> None:
        """Orthanc, and PostgreSQL with --postgres."""
        self.orthanc = self.new_orthanc()
        log("starting Orthanc...")
        self.orthanc.start()
        assert self.orthanc.process is not None and self.orthanc.versions is not None
        log(f"Orthanc: {self.orthanc.versions}")
        self.orthanc_pid = self.orthanc.process.pid
        self.postgres: PostgresCluster | None = None
        if self.args.postgres:
            log("starting PostgreSQL (fsync on) for the portal's database...")
            self.postgres = PostgresCluster(durable=True)
            self.postgres.start()

    def start(self) -> None:
        self.start_services()
        log(f"loading a {self.args.slices}-slice CT...")
        stow_direct(self.orthanc, demo.synthetic_ct(self.args.slices))
        database_url = self.postgres.create_database("portal") if self.postgres else None
        self.portal = self.start_portal("portal", {}, database_url=database_url)
        self.portal_audit_off = self.start_portal(
            "portal-audit-off", {"DJANGO_SETTINGS_MODULE": "bench.settings_audit_off"}, database=self.portal
        )
        # The Django door alone (gunicorn facing clients), as before nginx came in front.
        self.portal_django = self.start_portal("portal-django", {}, database=self.portal, front=False)
        self.recipe = Recipe(self.work / "recipe", free_port(), self.orthanc)
        self.recipe.start()
        self.no_decision = NoDecision(self.work / "no-decision", free_port(), self.orthanc)
        self.no_decision.start()
        self.session = self.portal.login("alice")
        self.session_off = self.portal_audit_off.login("alice")
        self.session_django = self.portal_django.login("alice")
        instances = requests.get(
            f"{self.orthanc.url}/dicom-web/studies/{demo.DEMO_CT_STUDY_UID}/series/{demo.DEMO_CT_SERIES_UID}/instances",
            auth=(self.orthanc.user, self.orthanc.password),
            timeout=60,
        ).json()
        series = f"/dicom-web/studies/{demo.DEMO_CT_STUDY_UID}/series/{demo.DEMO_CT_SERIES_UID}"
        self.frames = [f"{series}/instances/{item['00080018']['Value'][0]}/frames/1" for item in instances]
        self.series = series
        log(
            f"{len(self.frames)} frames of 512 KB; portal on {self.portal.url}, Orthanc on {self.orthanc.url}"
        )

    def new_orthanc(self) -> OrthancServer:
        """The Orthanc of the generation asked for (--orthanc), not started."""
        source = debian.resolve(self.args.orthanc, debian.this_host(), debian.cache_root())
        debian.require(source)
        work = self.work / "orthanc"
        if source.rootfs is not None:  # under chroot its files must be inside the root filesystem
            work = Path(tempfile.mkdtemp(prefix="pacsportal-bench-", dir=source.rootfs / "tmp"))
            self.cleanup_orthanc = partial(shutil.rmtree, work, ignore_errors=True)
        return OrthancServer(
            work,
            free_port(),
            "bench",
            secrets.token_urlsafe(16),
            rootfs=source.rootfs,
            http_threads=self.args.orthanc_threads,
        )

    def start_portal(
        self,
        name: str,
        extra: dict[str, str],
        database: LivePortal | None = None,
        database_url: str | None = None,
        front: bool = True,
    ) -> LivePortal:
        work = self.work / name
        work.mkdir()
        env = {
            "PATH": os.environ["PATH"],
            "PORTAL_VAR_DIR": str(work),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": (
                database.env["DATABASE_URL"]
                if database
                else database_url or f"sqlite:///{work}/portal.sqlite3"
            ),
            "ORTHANC_URL": self.orthanc.url,
            "ORTHANC_USER": self.orthanc.user,
            "ORTHANC_PASSWORD": self.orthanc.password,
            "LOG_LEVEL": "WARNING",
            # Default: what `make run` uses; set them to compare worker layouts, or what
            # nginx's reuse of API clients' decisions buys.
            **{name: os.environ[name] for name in PASSED_SETTINGS if name in os.environ},
            **extra,
        }
        portal = LivePortal(env=env, work_dir=work)
        portal.manage("collectstatic", "--noinput", "-v0")
        if front:
            start_front(portal, self.orthanc, workers=2)  # as manage.py serve runs it
        try:
            if database is None:
                portal.manage("migrate", "--noinput", "-v0")
                portal.add_user("alice", "clinician")
                portal.add_user("bob", "uploader")
            else:
                portal.passwords = database.passwords
            portal.start()
        except BaseException:
            portal.stop()  # its nginx too: Bench.stop only knows the portals that started
            raise
        return portal

    def doors(self) -> tuple[Door, Door, Door, Door, Door]:
        direct_auth = requests.auth._basic_auth_str(self.orthanc.user, self.orthanc.password)
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        cookie_off = "; ".join(f"{c.name}={c.value}" for c in self.session_off.cookies)
        cookie_django = "; ".join(f"{c.name}={c.value}" for c in self.session_django.cookies)
        return (
            Door("direct", self.orthanc.url, "", {"Authorization": direct_auth}, None),
            Door("recipe", self.recipe.url, "/pacs", {}, None),
            Door(
                "portal, Django door",
                self.portal_django.url,
                "/pacs",
                {"Cookie": cookie_django},
                self.portal_django,
            ),
            Door("portal", self.portal.url, "/pacs", {"Cookie": cookie}, self.portal),
            Door(
                "portal, audit off",
                self.portal_audit_off.url,
                "/pacs",
                {"Cookie": cookie_off},
                self.portal_audit_off,
            ),
        )

    def measure(self, name: str, doors: list[Door], measure: Callable[[Door], Result]) -> None:
        """Median of the repeats, the doors taking turns within each repeat so
        that a machine getting slower or faster mid-run moves both sides of a ratio;
        every other repeat in reverse, so that no door always follows the same one."""
        if self.args.only and self.args.only not in name:
            return
        runs: dict[str, list[Result]] = {door.name: [] for door in doors}
        for repeat in range(self.args.repeats):
            for door in doors if repeat % 2 == 0 else doors[::-1]:
                usage = Usage(door.portal, self.orthanc_pid, front_pids(door))
                result = measure(door)
                usage.add_to(result)
                runs[door.name].append(result)
                self.cleanup()
                self.cleanup = lambda: None
        for door in doors:
            self.results.setdefault(name, {})[door.name] = median_of(runs[door.name])
        for (door_name, reference), label in PAIRS.items():
            if door_name in runs and reference in runs:
                paired = paired_ratios(runs[door_name], runs[reference], label)
                self.results[name][door_name].update(paired)
        for door in doors:
            log(f"  {name:<22} {door.name:<18} {self.results[name][door.name]}")

    def run(self) -> None:
        seconds = self.args.seconds
        direct, recipe, django_door, portal, audit_off = self.doors()

        def frames(connections: int, door: Door) -> Result:
            paths = [door.prefix + path for path in self.frames]
            headers = {**door.headers, "Accept": FRAME_ACCEPT}
            return wrk(door.host, paths, connections, seconds, headers, self.work)

        def qido(door: Door) -> Result:
            headers = {**door.headers, "Accept": "application/dicom+json"}
            return wrk(
                door.host, [f"{door.prefix}/dicom-web/studies?limit=50"], 8, seconds, headers, self.work
            )

        # Two doors that gauge the run itself: direct Orthanc measured once more, last in
        # each repeat and first in the reversed ones (what two identical doors differ by
        # in this run), and the cheapest nginx hop (what any proxy in front costs here).
        again = dataclasses.replace(direct, name="direct, again")
        hop = Door("nginx, no decision", self.no_decision.url, "/pacs", {}, None)
        self.measure("frames, 1 conn", [direct, recipe, portal], partial(frames, 1))
        self.measure(
            "frames, 8 conn", [direct, recipe, hop, portal, audit_off, django_door, again], partial(frames, 8)
        )
        self.measure("QIDO studies, 8 conn", [direct, recipe, hop, portal, again], qido)
        self.measure("series retrieve", [direct, recipe, portal], self.retrieve)
        # The recipe sets no client_max_body_size: nginx's 1 MB default refuses every real STOW (413).
        self.measure("STOW-RS", [direct, portal], self.stow)

    def credentials(self, door: Door) -> tuple[Any, Any]:
        if door.portal is None:
            return (self.orthanc.user, self.orthanc.password), None
        return None, {c.split("=", 1)[0]: c.split("=", 1)[1] for c in door.headers["Cookie"].split("; ")}

    def retrieve(self, door: Door) -> Result:
        auth, cookies = self.credentials(door)
        return downloads(
            f"{door.base}{self.series}",
            {"Accept": "multipart/related; type=application/dicom"},
            auth,
            cookies,
            self.args.seconds / 2,
        )

    def stow(self, door: Door) -> Result:
        base, portal = door.base, door.portal
        body = self.work / "stow.multipart"
        content_type, study_uid, _ = write_large_stow_body(body, self.args.stow_mb)
        if portal is not None:
            portal_session = portal.login("bob")
            auth, cookies = None, portal_session.cookies
            extra = {"Origin": portal.url, "Sec-Fetch-Site": "same-origin"}
        else:
            auth, cookies, extra = (self.orthanc.user, self.orthanc.password), None, {}
        # Deleted after the measurement's CPU is counted, not within it.
        self.cleanup = partial(self.delete_study, study_uid)
        try:
            return upload(f"{base}/dicom-web/studies", body, content_type, auth, cookies, extra)
        finally:
            body.unlink(missing_ok=True)

    def delete_study(self, study_uid: str) -> None:
        auth = (self.orthanc.user, self.orthanc.password)
        found = requests.post(
            f"{self.orthanc.url}/tools/lookup", data=study_uid, auth=auth, timeout=60
        ).json()
        for item in found:
            requests.delete(f"{self.orthanc.url}/studies/{item['ID']}", auth=auth, timeout=300)

    def viewer(self) -> None:
        from playwright.sync_api import sync_playwright

        from tests.browser import CHROMIUM, FLAGS, NetworkLog, log_in, wait_for_image

        url = f"{self.portal.url}/viewer?StudyInstanceUIDs={demo.DEMO_CT_STUDY_UID}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            network = NetworkLog()
            network.attach(context.new_cdp_session(page))
            log_in(page, self.portal, "alice")
            network.reset()
            started = time.perf_counter()
            page.goto(url)
            wait_for_image(page, timeout=120)
            first_image = time.perf_counter() - started
            page.wait_for_load_state("networkidle")
            first = network.viewer_bytes()
            network.reset()
            page.goto(url)
            wait_for_image(page, timeout=120)
            page.wait_for_load_state("networkidle")
            repeat = network.viewer_bytes()
            browser.close()
        self.results["viewer"] = {
            "portal": {
                "first_image_s": round(first_image, 2),
                "first_visit_mb": round(first / 1e6, 2),
                "repeat_visit_kb": round(repeat / 1e3, 1),
                "repeat_percent_of_first": round(100 * repeat / first, 2),
            }
        }
        log(f"  viewer: {self.results['viewer']['portal']}")

    def stop(self) -> None:
        for portal in (
            getattr(self, "portal", None),
            getattr(self, "portal_audit_off", None),
            getattr(self, "portal_django", None),
        ):
            if portal is not None:
                portal.stop()
        for plain in (getattr(self, "recipe", None), getattr(self, "no_decision", None)):
            if plain is not None:
                plain.stop()
        if getattr(self, "orthanc", None) is not None:
            self.orthanc.stop()
            self.cleanup_orthanc()
        postgres = getattr(self, "postgres", None)
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(self.work, ignore_errors=True)


# --- API clients (issue 15): HTTP Basic and an access token beside the session ---


def create_token(portal: LivePortal, username: str) -> str:
    """A read-only token made on the portal's token page, as its owner makes one."""
    session = portal.login(username)
    url = f"{portal.url}/accounts/tokens/"
    session.get(url, timeout=30)
    response = session.post(
        url,
        data={
            "name": f"bench {secrets.token_hex(3)}",
            "scope": "read",
            "days": "1",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": url},
        timeout=30,
    )
    response.raise_for_status()
    # The page shows a new token once: a None here is a broken run, and fails loudly.
    return re.search(r"pacs_[0-9A-Za-z]{43}", response.text).group(0)  # type: ignore[union-attr]


def api_clients(bench: Bench) -> None:
    """QIDO and frames at 8 connections, and 100 QIDO requests in a row, with the session,
    HTTP Basic (password) and a Bearer token; dicomweb-client retrieving the series with
    the token against direct Orthanc. CPU per request from /proc, as everywhere."""
    measures = ("QIDO, 8 conn", "frames, 8 conn", "100 QIDO in a row", "dicomweb-client series")
    if bench.args.only and not any(bench.args.only in f"API clients: {name}" for name in measures):
        return
    by_name = {door.name: door for door in bench.doors()}
    direct = by_name["direct"]
    # The portal's session door, and the same door with the API clients' credentials.
    session = dataclasses.replace(by_name["portal"], name="session")
    token = create_token(bench.portal, "alice")
    basic = requests.auth._basic_auth_str("alice", bench.portal.passwords["alice"])
    with_basic = dataclasses.replace(session, name="basic", headers={"Authorization": basic})
    with_token = dataclasses.replace(session, name="token", headers={"Authorization": f"Bearer {token}"})
    doors = [session, with_basic, with_token]
    qido_path = "/dicom-web/studies?limit=50"

    def warm() -> None:
        # A worker's first Basic request runs the password hasher, far dearer than any
        # request measured (docs/performance-history.md): made here, outside the measures,
        # on new connections so that each worker sees one.
        for door in doors:
            for _ in range(4 * len(bench.portal.worker_pids())):
                headers = {**door.headers, "Accept": "application/dicom+json", "Connection": "close"}
                requests.get(f"{door.base}{qido_path}", headers=headers, timeout=60).raise_for_status()

    def qido(door: Door) -> Result:
        headers = {**door.headers, "Accept": "application/dicom+json"}
        return wrk(door.host, [door.prefix + qido_path], 8, bench.args.seconds, headers, bench.work)

    def frames(door: Door) -> Result:
        paths = [door.prefix + path for path in bench.frames]
        headers = {**door.headers, "Accept": FRAME_ACCEPT}
        return wrk(door.host, paths, 8, bench.args.seconds, headers, bench.work)

    def in_a_row(door: Door, count: int = 100) -> Result:
        assert door.portal is not None
        pids = door.portal.worker_pids() + front_pids(door)  # through nginx, its CPU is the portal's too
        with requests.Session() as http:
            http.headers.update({**door.headers, "Accept": "application/dicom+json"})
            http.get(f"{door.base}{qido_path}", timeout=60).raise_for_status()
            first = sum(Usage.ticks(pid) for pid in pids)
            began = time.perf_counter()
            for _ in range(count):
                http.get(f"{door.base}{qido_path}", timeout=60).raise_for_status()
            seconds = time.perf_counter() - began
            after = sum(Usage.ticks(pid) for pid in pids)
        return {
            "requests": count,
            "requests_per_s": count / seconds,
            "cpu_ms_per_request_after_first": (after - first) * Usage.TICK_MS / count,
        }

    def dicomweb_series(door: Door) -> Result:
        from dicomweb_client.api import DICOMwebClient

        client = DICOMwebClient(f"{door.base}/dicom-web", headers=door.headers)
        started = time.perf_counter()
        instances = client.retrieve_series(demo.DEMO_CT_STUDY_UID, demo.DEMO_CT_SERIES_UID)
        seconds = time.perf_counter() - started
        megabytes = sum(len(ds.PixelData) for ds in instances) / 1e6
        return {
            "instances": len(instances),
            "seconds": seconds,
            "mb_per_s": megabytes / seconds,
            "megabytes": megabytes,
        }

    for name, measured, measure in (
        ("API clients: QIDO, 8 conn", [direct, *doors], qido),
        ("API clients: frames, 8 conn", [direct, *doors], frames),
        ("API clients: 100 QIDO in a row", doors, in_a_row),
        ("API clients: dicomweb-client series", [direct, with_token], dicomweb_series),
    ):
        if not bench.args.only or bench.args.only in name:
            warm()
        bench.measure(name, measured, measure)
    for name, figures in list(bench.results.items()):
        if name.startswith("API clients") and "session" in figures:
            base = figures["session"]["requests_per_s"]
            for door in ("basic", "token"):
                figures[door]["requests_per_s_vs_session"] = round(figures[door]["requests_per_s"] / base, 2)


# --- end of the API clients section ---


def bench_arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=320)
    parser.add_argument("--stow-mb", type=int, default=150)
    parser.add_argument("--seconds", type=int, default=8, help="length of each wrk run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=REPO / "var" / "bench" / "results.json")
    parser.add_argument("--skip-viewer", action="store_true")
    parser.add_argument(
        "--postgres", action="store_true", help="the portal's database in PostgreSQL (fsync on), not SQLite"
    )
    parser.add_argument(
        "--orthanc",
        default="native",
        help="the Orthanc generation: native (this machine's Debian packages), other (the other"
        " release's, from var/rootfs/, which make test builds), bookworm (1.10) or trixie (1.12)",
    )
    parser.add_argument(
        "--orthanc-threads",
        type=int,
        default=HTTP_THREADS,
        help="Orthanc's HttpThreadsCount (50 is Orthanc's default, and what make run set before 256)",
    )
    parser.add_argument("--only", default="", help="run only the measures whose name contains this")
    parser.add_argument(
        "--mixed-seconds",
        type=int,
        default=120,
        help="how long the cold studies' reads under a load of frames last; 0: not measured",
    )
    parser.add_argument(
        "--audit-rows",
        default="1000000,10000000",
        help="the audit table's sizes to measure the auditor's pages at, comma-separated; empty: none",
    )
    return parser


def main() -> None:
    args = bench_arguments().parse_args()
    bench = Bench(args)
    try:
        bench.start()
        bench.run()
        api_clients(bench)
        cold_reads.measure(bench)
        if not args.skip_viewer:
            viewer_load.measure(bench)
        if not args.skip_viewer and args.only in "viewer":
            bench.viewer()
        if not args.only or args.only in audit_scale.NAME:
            audit_scale.measure(bench, audit_scale.sizes(args.audit_rows))
    finally:
        bench.stop()
    print(f"Orthanc: {bench.orthanc.versions}")
    print(report(bench.results))
    run = {
        "machine": os.uname().nodename,
        "cores": os.cpu_count(),
        "finished": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "orthanc": str(bench.orthanc.versions),
        "args": {k: str(v) for k, v in vars(args).items()},
        "results": bench.results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(run, indent=2))
    print(f"\nresults written to {args.json}")
    # A run of some measures only (--only, --skip-viewer) leaves today's figures as they are.
    if not args.only and not args.skip_viewer:
        write_page(PAGE, page_block(run))
        print(f"today's figures written to {PAGE.relative_to(REPO)}")


def commit() -> str:
    """The checkout's commit, marked when files differ from it."""
    found = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return found.stdout.strip() or "an unknown commit"


if __name__ == "__main__":
    main()
