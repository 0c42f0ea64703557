"""Whose study a StudyInstanceUID is, without asking Orthanc: a map fed by its change feed.

Orthanc finds a UID by scanning its index: with 16,000 studies, /tools/lookup
took 47 ms of Orthanc's CPU on 1.10 (docs/performance.md, "Cold study reads"),
five times the study's metadata. The map answers from the portal's database.

One worker at a time (a lease in the ChangeFeed row, so across nodes too; a
reader that lost it writes nothing) reads `GET /changes` from where the map
stopped and adds each NewStudy's owner. The map answers only while it is fresh
(read to the feed's end within MAX_LAG_SECONDS) and for a UID with exactly one
study; anything else is Orthanc's look-up, as before:
- a study stored since the last read is not in the map yet;
- two studies for one UID may be a collision, or a study deleted and filed again
  under another patient: the look-up says which, and the rows it did not find
  are dropped;
- Orthanc's feed never tells of a deletion: at the end of each read the map's
  size is held against Orthanc's CountStudies, and when the map holds more the
  map is set to Orthanc's list of studies before it is called fresh again (and
  every RECONCILE_SECONDS whatever the counts). So a deleted study is named as
  before for at most MAX_LAG_SECONDS: the look-ups keep a map's answer no longer
  than the map stays fresh (core/revocation_table.py).

A gap in the feed's numbers is a deleted resource's changes, or a change another
writer has not committed yet (PostgreSQL with several writers). Numbers handed
out GAP_GRACE_SECONDS ago or more are settled: a gap among them is passed at
once; a gap above them holds the cursor for up to GAP_GRACE_SECONDS, and the
map is not fresh meanwhile.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from orthanc import client
from orthanc.models import ChangeFeed, StudyOwner

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
MAX_LAG_SECONDS = 5.0
GAP_GRACE_SECONDS = 10.0
LEASE_SECONDS = 10.0
RECONCILE_SECONDS = 3600.0
# StudyOwner's columns (orthanc/models.py).
COLUMN_LENGTHS = {"orthanc_id": 44, "study_uid": 64, "patient_id": 64, "patient_orthanc_id": 44}
PAGE = 1000
FRESHNESS_CHECK_SECONDS = 0.5


def studies_of(study_uid: str) -> list[tuple[str, str, str]] | None:
    """The map's studies for this UID, as (Orthanc id, PatientID, the patient's Orthanc id);
    two at most (more say no more); None while the map is not fresh."""
    if not settings.ORTHANC_FOLLOW_CHANGES or not is_fresh():
        return None
    # This runs in every first read's decision: the SELECT as written costs 0.05 ms of
    # CPU, the same query built by the ORM 0.28 ms (docs/departures.md).
    connection = connections[router.db_for_read(StudyOwner)]
    quote = connection.ops.quote_name
    # Identifiers come from the model, quoted; the UID is a parameter.
    table, study, *wanted = (
        quote(name)
        for name in (StudyOwner._meta.db_table, "study_uid", "orthanc_id", "patient_id", "patient_orthanc_id")
    )
    sql = f"SELECT {', '.join(wanted)} FROM {table} WHERE {study} = %s LIMIT 2"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [study_uid])
        return [(str(a), str(b), str(c)) for a, b, c in cursor.fetchall()]


def heal(mapped: list[str], found: list[str]) -> None:
    """Drop the rows the map held for a UID (`mapped`, read before Orthanc's look-up) that the
    look-up did not find: deleted in Orthanc. Never a row added since, which the look-up
    could not have seen."""
    gone = set(mapped) - set(found)
    if gone:
        StudyOwner.objects.filter(orthanc_id__in=gone).delete()


class _Freshness:
    """The feed row's `synced_at`, read at most every FRESHNESS_CHECK_SECONDS per process."""

    def __init__(self) -> None:
        self.checked = 0.0
        self.synced_at: datetime.datetime | None = None
        self.url = ""

    def fresh(self) -> bool:
        if time.monotonic() - self.checked > FRESHNESS_CHECK_SECONDS:
            row = ChangeFeed.objects.filter(pk=1).values_list("synced_at", "orthanc_url").first()
            self.synced_at, self.url = row if row else (None, "")
            self.checked = time.monotonic()
        return self.remaining() > 0

    def remaining(self) -> float:
        """Seconds the map stays fresh, as last read (0 or less: not fresh)."""
        if self.synced_at is None or self.url != settings.ORTHANC_URL:
            return 0.0
        return MAX_LAG_SECONDS - (timezone.now() - self.synced_at).total_seconds()


_freshness = _Freshness()


def is_fresh() -> bool:
    return _freshness.fresh()


def fresh_seconds() -> float:
    """How long an answer of the map may be kept: no longer than the map stays fresh, so that
    a deleted study is named for at most MAX_LAG_SECONDS, cache included."""
    return max(_freshness.remaining(), 0.0)


# --- The reader --------------------------------------------------------------


def reader_name() -> str:
    """Unique across nodes and restarts: containers can share a hostname and a pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def take_lease(reader: str) -> bool:
    """This reader's turn: the lease is free, lapsed or already its own. Read first, written
    only to take or renew it: every worker asks each second, and on SQLite a write waits
    for the audit's."""
    now = timezone.now()
    held = ChangeFeed.objects.filter(pk=1).values_list("reader", "lease_until").first()
    if held is None:
        ChangeFeed.objects.get_or_create(pk=1)
    elif held[1] is not None and held[1] > now:
        if held[0] != reader:
            return False
        if held[1] - now > datetime.timedelta(seconds=LEASE_SECONDS / 2):
            return True
    taken = (
        ChangeFeed.objects.filter(pk=1)
        .filter(Q(reader=reader) | Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(reader=reader, lease_until=now + datetime.timedelta(seconds=LEASE_SECONDS))
    )
    return taken == 1


def kept(feed: ChangeFeed, reader: str, *fields: str) -> bool:
    """Write the feed's fields only while this reader holds the lease: a reader that lost it
    (a long page, a pause) must not write back an older cursor over its successor's."""
    values = {field: getattr(feed, field) for field in fields}
    return ChangeFeed.objects.filter(pk=1, reader=reader).update(**values) == 1


def read_feed(reader: str) -> None:
    """Read the feed from the cursor to its end (or to a gap still in its grace), while
    this reader holds the lease."""
    if not take_lease(reader):
        return
    feed = ChangeFeed.objects.get(pk=1)
    if feed.orthanc_url != settings.ORTHANC_URL and not start_over(feed, reader):
        return
    changed = False
    while True:
        began = timezone.now()
        page = _get(f"/changes?since={feed.last_seq}&limit={PAGE}")
        if not isinstance(page, dict) or not isinstance(page.get("Changes"), list):
            raise client.OrthancError("GET /changes: not a page of changes")
        changes = sorted(
            (change for change in page["Changes"] if isinstance(change, dict) and _is_int(change.get("Seq"))),
            key=lambda change: int(change["Seq"]),
        )
        seqs = [int(change["Seq"]) for change in changes]
        last = max([int(page["Last"]) if _is_int(page.get("Last")) else 0, *seqs])
        if last < feed.last_seq:
            # PostgreSQL's answer to an empty page can lag behind the numbers already read, and
            # an index emptied or replaced starts again from 1: read again from there (a change
            # read twice adds nothing), and let the count find what is gone.
            feed.last_seq, changed = last, True
        note_head(feed, last, began)
        new_studies = [
            str(change.get("ID", "")) for change in changes if change.get("ChangeType") == "NewStudy"
        ]
        add_studies(new_studies)
        changed = changed or bool(new_studies)
        before = feed.last_seq
        held = advance(feed, seqs, began)
        if held or page.get("Done") or feed.last_seq == before:
            if not held and page.get("Done"):
                match_count(feed, changed, began)
                feed.synced_at = began
            kept(feed, reader, *CURSOR, "synced_at", "studies_counted", "reconciled_at")
            return
        if not kept(feed, reader, *CURSOR) or not take_lease(reader):
            return


CURSOR = ("last_seq", "gap_seen_at", "settled_seq", "head_seq", "head_seen_at")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def note_head(feed: ChangeFeed, last: int, now: datetime.datetime) -> None:
    """Every number at or below `settled_seq` was handed out GAP_GRACE_SECONDS ago or more:
    a writer that took one has committed it, or never will."""
    grace = datetime.timedelta(seconds=GAP_GRACE_SECONDS)
    if feed.head_seen_at is None or now - feed.head_seen_at >= grace:
        feed.settled_seq = feed.head_seq
        feed.head_seq, feed.head_seen_at = max(last, feed.head_seq), now


def advance(feed: ChangeFeed, seqs: list[int], now: datetime.datetime) -> bool:
    """Move the cursor over the numbers read, up to the first gap that may still fill (some
    of its numbers above `settled_seq`, seen for less than GAP_GRACE_SECONDS).
    True when a gap holds it."""
    for seq in seqs:
        if seq <= feed.last_seq:
            continue  # read before
        if seq > feed.last_seq + 1 and seq - 1 > feed.settled_seq:  # numbers missing, recent ones
            feed.gap_seen_at = feed.gap_seen_at or now
            if now - feed.gap_seen_at < datetime.timedelta(seconds=GAP_GRACE_SECONDS):
                return True
        feed.last_seq, feed.gap_seen_at = seq, None
    return False


def match_count(feed: ChangeFeed, changed: bool, now: datetime.datetime) -> None:
    """Drop what Orthanc deleted: the map set to Orthanc's list of studies when it holds
    more studies than Orthanc counts, and every RECONCILE_SECONDS whatever the counts."""
    counted = _get("/statistics").get("CountStudies")
    if not _is_int(counted):
        raise client.OrthancError("GET /statistics: no CountStudies")
    due = feed.reconciled_at is None or now - feed.reconciled_at >= datetime.timedelta(
        seconds=RECONCILE_SECONDS
    )
    if not due and counted == feed.studies_counted and not changed:
        return  # nothing stored, nothing deleted
    if due or StudyOwner.objects.count() > counted:
        reconcile()
        feed.reconciled_at = now
    feed.studies_counted = counted


def reconcile() -> None:
    """The map's rows set to Orthanc's list of studies. Both lists of ids are held in memory:
    about 300 bytes a study, 300 MB at a million."""
    listed = _get("/studies")
    if not isinstance(listed, list):
        raise client.OrthancError("GET /studies: not a list")
    in_orthanc = {str(orthanc_id) for orthanc_id in listed}
    mapped = set(StudyOwner.objects.values_list("orthanc_id", flat=True))
    gone = sorted(mapped - in_orthanc)
    for start in range(0, len(gone), 500):  # no IN list of a hundred thousand ids
        StudyOwner.objects.filter(orthanc_id__in=gone[start : start + 500]).delete()
    add_studies(in_orthanc - mapped)


def add_studies(orthanc_ids: Any) -> None:
    """Each new study's owner, from Orthanc (an id already mapped is never wrong)."""
    wanted = {orthanc_id for orthanc_id in orthanc_ids if orthanc_id}
    known = set(StudyOwner.objects.filter(orthanc_id__in=wanted).values_list("orthanc_id", flat=True))
    rows = []
    for orthanc_id in sorted(wanted - known):
        found = _get(f"/studies/{orthanc_id}", absent_ok=True)
        if not isinstance(found, dict):
            continue  # deleted since: nothing to map
        row = StudyOwner(
            orthanc_id=orthanc_id,
            study_uid=str((found.get("MainDicomTags") or {}).get("StudyInstanceUID", "")),
            patient_id=str((found.get("PatientMainDicomTags") or {}).get("PatientID", "")),
            patient_orthanc_id=str(found.get("ParentPatient", "")),
        )
        if fits(row):
            rows.append(row)
    StudyOwner.objects.bulk_create(rows, ignore_conflicts=True)


def fits(row: StudyOwner) -> bool:
    """A study whose values overflow the map's columns (a modality's malformed file, stored
    over DICOM) is left out: its reads ask Orthanc, and the reader does not stop on it."""
    too_long = [name for name, most in COLUMN_LENGTHS.items() if len(getattr(row, name)) > most]
    if too_long:
        log.warning("study %s left out of the study map: %s too long", row.orthanc_id, ", ".join(too_long))
    return not too_long


def start_over(feed: ChangeFeed, reader: str) -> bool:
    """A new Orthanc (ORTHANC_URL changed): an empty map, read from the feed's start."""
    with transaction.atomic():
        StudyOwner.objects.all().delete()
        fresh = ChangeFeed(orthanc_url=settings.ORTHANC_URL)
        for field in ("orthanc_url", *CURSOR, "synced_at", "studies_counted", "reconciled_at"):
            setattr(feed, field, getattr(fresh, field))
        return kept(feed, reader, "orthanc_url", *CURSOR, "synced_at", "studies_counted", "reconciled_at")


def _get(path: str, absent_ok: bool = False) -> Any:
    return client.json_request("GET", path, absent_ok=absent_ok)


def follow_forever(reader: str) -> None:
    while True:
        try:
            read_feed(reader)
        except Exception:  # Orthanc or the database away: the map goes stale, the look-ups answer
            log.warning("reading Orthanc's change feed failed; trying again", exc_info=True)
        finally:
            close_old_connections()
        time.sleep(POLL_SECONDS)


_started = threading.Lock()
_following: list[threading.Thread] = []


def start_following() -> None:
    """The feed's reader thread in this process (gunicorn's post_worker_init); once."""
    with _started:
        if _following or not settings.ORTHANC_FOLLOW_CHANGES:
            return
        thread = threading.Thread(
            target=follow_forever, args=(reader_name(),), name="change-feed", daemon=True
        )
        thread.start()
        _following.append(thread)
