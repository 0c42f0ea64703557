"""First reads of many studies: each one a fresh decision, a subject and an audit row.

An archive of ARCHIVE_STUDIES small studies (one 8x8 instance each, of its own
patient) is loaded beside the demo CT, none read before, and the portal's study
map left to catch up. Each door reads studies of its own, never another door's
or another repeat's, so that no read finds a decision, a look-up or Orthanc's
page cache warmed by an earlier one:

- one at a time: the metadata of ONE_BY_ONE studies in a row on one keep-alive
  connection; the median, and the portal's median less direct's (the added latency);
- under load (`--mixed-seconds`, 0 to skip): 56 connections reading the demo CT's
  frames while 8 threads read UNDER_LOAD_STUDIES studies' metadata once each,
  each read timed: how many waited 2 s or more or were refused, and how many
  frames wrk gave up on (2 s); direct under the same load beside the portal;
- at 8 connections: wrk over a batch of AT_EIGHT_STUDIES studies for SECONDS, each
  read once (the run fails if its list runs out); each run's batch is loaded
  before it and deleted after it, outside its measured CPU.

One at a time and at 8 connections, the portal with auditing off reads too: what
writing each first read's audit row costs, in the same run (`make bench` prints it).

    .venv/bin/python -m bench.bench --only cold --skip-viewer --audit-rows "" [--postgres]
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

import pydicom
import requests
from pydicom.uid import generate_uid

from orthanc import demo
from pacsportal.env import FALSE_WORDS

if TYPE_CHECKING:
    from bench.bench import Bench, Door
    from bench.report import Result

ONE_AT_A_TIME = "cold studies, 1 at a time"
AT_EIGHT = "cold studies, 8 conn"
UNDER_LOAD = "cold studies under load"
NAMES = (ONE_AT_A_TIME, AT_EIGHT, UNDER_LOAD)
ARCHIVE_STUDIES = 3000
ONE_BY_ONE = 100
AT_EIGHT_STUDIES = 2500
SECONDS = 3
UNDER_LOAD_STUDIES = 400
FRAME_CONNECTIONS = 56
SLOW_SECONDS = 2.0
METADATA_ACCEPT = "application/dicom+json"


def small_studies(count: int, first: int = 0) -> Iterator[tuple[bytes, str, str]]:
    """`count` one-instance studies, each of a new patient: (Part 10 bytes, study UID, PatientID)."""
    template = pydicom.dcmread(io.BytesIO(next(demo.synthetic_ct(1))))
    template.Rows = template.Columns = 8
    template.PixelData = bytes(8 * 8 * 2)
    template.StudyDescription = "Cold read (bench)"
    for number in range(first, first + count):
        template.StudyInstanceUID = generate_uid()
        template.SeriesInstanceUID = generate_uid()
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.PatientID = f"COLD-{number:07d}"
        template.PatientName = f"Cold^{number:07d}"
        buffer = io.BytesIO()
        template.save_as(buffer, enforce_file_format=True)
        yield buffer.getvalue(), template.StudyInstanceUID, template.PatientID


def orthanc_study_id(patient_id: str, study_uid: str) -> str:
    """Orthanc's id of a study: the SHA-1 of "PatientID|StudyInstanceUID", in five groups."""
    digest = hashlib.sha1(f"{patient_id}|{study_uid}".encode()).hexdigest()  # noqa: S324  (Orthanc's own)
    return "-".join(digest[start : start + 8] for start in range(0, 40, 8))


class Archive:
    """Small studies loaded into the bench's Orthanc, and deleted again."""

    def __init__(self, bench: Bench) -> None:
        self.bench, self.loaded = bench, 0

    def load(self, count: int) -> list[tuple[str, str]]:
        """`count` new studies, none read yet: (study UID, Orthanc id) each."""
        from bench.bench import log, stow_direct

        studies: list[tuple[str, str]] = []

        def instances() -> Iterator[bytes]:
            for data, uid, patient_id in small_studies(count, self.loaded):
                studies.append((uid, orthanc_study_id(patient_id, uid)))
                yield data

        started = time.perf_counter()
        stow_direct(self.bench.orthanc, instances(), batch=100)
        self.loaded += count
        log(f"  {count} one-instance studies loaded in {time.perf_counter() - started:.0f} s")
        return studies

    def delete(self, studies: list[tuple[str, str]]) -> None:
        orthanc = self.bench.orthanc
        with requests.Session() as http:
            http.auth = (orthanc.user, orthanc.password)
            for _, orthanc_id in studies:
                http.delete(f"{orthanc.url}/studies/{orthanc_id}", timeout=60).raise_for_status()


class Unread:
    """Study UIDs loaded in Orthanc and not read yet: each taken once."""

    def __init__(self, studies: list[tuple[str, str]]) -> None:
        self.uids = [uid for uid, _ in studies]

    def take(self, count: int) -> list[str]:
        if count > len(self.uids):
            raise RuntimeError("the cold-read pass ran out of unread studies: raise its counts together")
        taken, self.uids = self.uids[:count], self.uids[count:]
        return taken


def metadata_path(door: Door, study_uid: str) -> str:
    return f"{door.prefix}/dicom-web/studies/{study_uid}/metadata"


def one_at_a_time(door: Door, uids: list[str]) -> Result:
    timings = []
    with requests.Session() as http:
        http.headers.update({**door.headers, "Accept": METADATA_ACCEPT})
        for uid in uids:
            started = time.perf_counter()
            response = http.get(door.host + metadata_path(door, uid), timeout=60)
            timings.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return {
        "requests": len(uids),
        "median_ms": round(statistics.median(timings), 2),
        "p90_ms": round(statistics.quantiles(timings, n=10)[-1], 2),
    }


def at_eight(bench: Bench, door: Door, uids: list[str]) -> Result:
    from bench.bench import wrk

    paths = [metadata_path(door, uid) for uid in uids]
    headers = {**door.headers, "Accept": METADATA_ACCEPT}
    return wrk(door.host, paths, 8, SECONDS, headers, bench.work, script="once_each.lua")


def under_load(bench: Bench, door: Door, uids: list[str], seconds: int) -> Result:
    """Frames at 56 connections for `seconds`; from a tenth of the way in, 8 threads read
    the studies' metadata once each as fast as they are answered."""
    frame_paths = bench.work / f"frames-{secrets.token_hex(4)}.txt"
    frame_paths.write_text("".join(door.prefix + path + "\n" for path in bench.frames))
    env = {
        **os.environ,
        "BENCH_PATHS": str(frame_paths),
        "BENCH_ACCEPT": "multipart/related; type=application/octet-stream",
        "BENCH_COOKIE": door.headers.get("Cookie", ""),
        "BENCH_AUTHORIZATION": door.headers.get("Authorization", ""),
    }
    from bench.bench import REPO

    command = ["wrk", "-t2", f"-c{FRAME_CONNECTIONS}", f"-d{seconds}s", "--timeout", "2s"]
    command += ["-s", str(REPO / "bench" / "frames.lua"), door.host]
    frames = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    time.sleep(seconds / 10)
    timings: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    local = threading.local()

    def read(uid: str) -> None:
        if not hasattr(local, "http"):
            local.http = requests.Session()
            local.http.headers.update({**door.headers, "Accept": METADATA_ACCEPT})
        started = time.perf_counter()
        try:
            status = local.http.get(door.host + metadata_path(door, uid), timeout=60).status_code
        except requests.RequestException:
            status = 0
        with lock:
            timings.append(time.perf_counter() - started)
            statuses.append(status)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(read, uids))
    output, _ = frames.communicate(timeout=seconds + 60)
    if any(status != 200 for status in statuses):
        from bench.bench import log

        log(f"  refused first reads, by status: {sorted(status for status in statuses if status != 200)}")
    frame_paths.unlink()
    timeouts = re.search(r"timeout (\d+)", output)
    return {
        "requests": len(uids),
        "first_read_median_ms": round(statistics.median(timings) * 1000, 1),
        "first_read_slowest_ms": round(max(timings) * 1000, 1),
        "first_reads_2s_or_more": sum(took >= SLOW_SECONDS for took in timings),
        "first_reads_refused": sum(status != 200 for status in statuses),
        "frames_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "frame_timeouts": int(timeouts.group(1)) if timeouts else 0,
        "frame_non_2xx": int(found.group(1)) if (found := re.search(r"Non-2xx.*?(\d+)", output)) else 0,
    }


def wait_for_the_map(bench: Bench) -> None:
    """Until the portal's study map has read Orthanc's feed to its end: a portal that has
    run for a while has (studies arrive over days, not in a burst before the first read).
    Not with ORTHANC_FOLLOW_CHANGES=false: every first read then asks Orthanc's index."""
    from bench.bench import log

    if bench.portal.env.get("ORTHANC_FOLLOW_CHANGES", "").strip().lower() in FALSE_WORDS:
        return

    started = time.perf_counter()
    deadline = started + 600
    while time.perf_counter() < deadline:
        count = bench.portal.rows("SELECT COUNT(*) AS n FROM orthanc_studyowner")[0]["n"]
        studies = requests.get(
            f"{bench.orthanc.url}/statistics", auth=(bench.orthanc.user, bench.orthanc.password), timeout=60
        ).json()["CountStudies"]
        if count == studies:
            log(f"  the study map holds {count} studies, {time.perf_counter() - started:.0f} s after loading")
            return
        time.sleep(1)
    raise RuntimeError("the portal's study map never read Orthanc's change feed to its end")


def measure(bench: Bench) -> None:
    if bench.args.only and not any(bench.args.only in name for name in NAMES):
        return
    from bench.bench import log

    by_name = {door.name: door for door in bench.doors()}
    # With auditing off: what the audit row costs a first read, in the same run.
    direct, portal, audit_off = by_name["direct"], by_name["portal"], by_name["portal, audit off"]
    archive = Archive(bench)
    log(f"loading an archive of {ARCHIVE_STUDIES} studies for the cold reads...")
    unread = Unread(archive.load(ARCHIVE_STUDIES))
    wait_for_the_map(bench)
    bench.measure(
        ONE_AT_A_TIME, [direct, portal, audit_off], lambda door: one_at_a_time(door, unread.take(ONE_BY_ONE))
    )
    figures = bench.results.get(ONE_AT_A_TIME, {})
    for name in ("portal", audit_off.name):
        if name in figures and "direct" in figures:
            added = figures[name]["median_ms"] - figures["direct"]["median_ms"]
            figures[name]["added_median_ms"] = round(added, 2)
    if bench.args.mixed_seconds and (not bench.args.only or bench.args.only in UNDER_LOAD):
        for door in (direct, portal):  # direct: what Orthanc itself does under the same load
            result = under_load(bench, door, unread.take(UNDER_LOAD_STUDIES), bench.args.mixed_seconds)
            bench.results.setdefault(UNDER_LOAD, {})[door.name] = result
            log(f"  {UNDER_LOAD:<22} {door.name:<18} {result}")
    if not bench.args.only or bench.args.only in AT_EIGHT:
        at_eight_in_batches(bench, archive, [direct, portal, audit_off])


def at_eight_in_batches(bench: Bench, archive: Archive, doors: list[Door]) -> None:
    """Each run reads a batch of its own, loaded before it and deleted after it (outside its
    measured CPU), so that the archive stays at ARCHIVE_STUDIES and a batch."""
    batches = [archive.load(AT_EIGHT_STUDIES)]
    wait_for_the_map(bench)

    def next_batch(done: list[tuple[str, str]]) -> None:
        archive.delete(done)
        batches.append(archive.load(AT_EIGHT_STUDIES))
        wait_for_the_map(bench)

    def run(door: Door) -> Result:
        batch = batches.pop(0)
        bench.cleanup = partial(next_batch, batch)
        return at_eight(bench, door, [uid for uid, _ in batch])

    bench.measure(AT_EIGHT, doors, run)
    archive.delete(batches.pop())
