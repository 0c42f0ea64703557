"""Whose study a StudyInstanceUID is, without asking Orthanc: a map fed by its change feed.

Orthanc finds a UID by scanning its index: with 16,000 studies, /tools/lookup
took 47 ms of Orthanc's CPU on 1.10 (docs/performance.md, "Cold study reads"),
five times the study's metadata. The map answers from the portal's database.

One worker at a time (a lease in the ChangeFeed row, so across nodes too) reads
`GET /changes` from where the map stopped and adds each NewStudy's owner. The
map answers only while it is fresh (`synced_at` within MAX_LAG_SECONDS) and for a
UID with exactly one study; anything else is Orthanc's look-up, as before:
- a study stored since the last read is not in the map yet;
- two studies for one UID may be a collision, or a study deleted and filed again
  under another patient: the look-up says which, and stale rows are dropped;
- Orthanc's feed never tells of a deletion: at the end of each read the map's
  size is held against Orthanc's CountStudies, and when they differ the map is
  made to match Orthanc's list of studies before it is called fresh again. So a
  study deleted (or deleted and filed again under another patient) is named as
  before for at most MAX_LAG_SECONDS, within ORTHANC_LOOKUP_TTL as the look-ups'
  own cache names it.

A gap in the feed's numbers is a deleted resource's changes (SQLite), or a change
another writer has not committed yet (PostgreSQL with several writers): the
cursor waits at it for GAP_GRACE_SECONDS before going past, and the map is not
fresh meanwhile.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone

from orthanc import client
from orthanc.models import ChangeFeed, StudyOwner

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
MAX_LAG_SECONDS = 5.0
GAP_GRACE_SECONDS = 10.0
LEASE_SECONDS = 10.0
PAGE = 1000
FRESHNESS_CHECK_SECONDS = 0.5


def studies_of(study_uid: str) -> list[tuple[str, str, str]] | None:
    """The map's studies for this UID, as (Orthanc id, PatientID, the patient's Orthanc id);
    two at most (more say no more); None while the map is not fresh."""
    if not settings.ORTHANC_FOLLOW_CHANGES or not is_fresh():
        return None
    # Tuples, not models: this runs in every first read's decision.
    found = StudyOwner.objects.filter(study_uid=study_uid)
    return list(found.values_list("orthanc_id", "patient_id", "patient_orthanc_id")[:2])


def heal(study_uid: str, orthanc_ids: list[str]) -> None:
    """Drop the map's rows for this UID that Orthanc's look-up no longer finds."""
    StudyOwner.objects.filter(study_uid=study_uid).exclude(orthanc_id__in=orthanc_ids).delete()


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
        if self.synced_at is None or self.url != settings.ORTHANC_URL:
            return False
        return timezone.now() - self.synced_at <= datetime.timedelta(seconds=MAX_LAG_SECONDS)


_freshness = _Freshness()


def is_fresh() -> bool:
    return _freshness.fresh()


# --- The reader --------------------------------------------------------------


def reader_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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


def read_feed(reader: str) -> None:
    """Read the feed from the cursor to its end (or to a gap still in its grace), while
    this reader holds the lease."""
    if not take_lease(reader):
        return
    feed = ChangeFeed.objects.get(pk=1)
    if feed.orthanc_url != settings.ORTHANC_URL:
        start_over(feed)
    added = False
    while True:
        began = timezone.now()
        page = _get(f"/changes?since={feed.last_seq}&limit={PAGE}")
        changes = sorted(page.get("Changes") or [], key=lambda change: int(change["Seq"]))
        if int(page.get("Last", 0)) < feed.last_seq:  # Orthanc's index was emptied or replaced
            start_over(feed)
            continue
        new_studies = [change["ID"] for change in changes if change.get("ChangeType") == "NewStudy"]
        add_studies(new_studies)
        added = added or bool(new_studies)
        held = advance(feed, [int(change["Seq"]) for change in changes], began)
        if held or page.get("Done") or not changes:
            if not held and page.get("Done"):
                match_count(feed, added)
                feed.synced_at = began
            feed.save(update_fields=["last_seq", "synced_at", "gap_seen_at", "studies_counted"])
            return
        feed.save(update_fields=["last_seq", "gap_seen_at"])
        if not take_lease(reader):  # a long first read outlasts the lease: renewed at each page
            return


def advance(feed: ChangeFeed, seqs: list[int], now: datetime.datetime) -> bool:
    """Move the cursor over the numbers read, up to the first gap still in its grace.
    True when a gap holds it."""
    for seq in seqs:
        if seq > feed.last_seq + 1:  # numbers missing before this one
            feed.gap_seen_at = feed.gap_seen_at or now
            if now - feed.gap_seen_at < datetime.timedelta(seconds=GAP_GRACE_SECONDS):
                return True
        feed.last_seq, feed.gap_seen_at = seq, None
    return False


def match_count(feed: ChangeFeed, added: bool) -> None:
    """Drop what Orthanc deleted: when its count of studies moved by more than the
    feed's new studies explain, the map is set to its list."""
    counted = int(_get("/statistics").get("CountStudies", -1))
    if counted == feed.studies_counted and not added:
        return  # nothing stored, nothing deleted
    if StudyOwner.objects.count() != counted:
        # Both lists of ids in memory: about 100 bytes a study, 100 MB at a million.
        listed = set(_get("/studies"))
        mapped = set(StudyOwner.objects.values_list("orthanc_id", flat=True))
        gone = sorted(mapped - listed)
        for start in range(0, len(gone), 500):  # no IN list of a hundred thousand ids
            StudyOwner.objects.filter(orthanc_id__in=gone[start : start + 500]).delete()
        add_studies(listed - mapped)
    feed.studies_counted = counted


def add_studies(orthanc_ids: Any) -> None:
    """Each new study's owner, from Orthanc (an id already mapped is never wrong)."""
    wanted = set(orthanc_ids)
    known = set(StudyOwner.objects.filter(orthanc_id__in=wanted).values_list("orthanc_id", flat=True))
    rows = []
    for orthanc_id in sorted(wanted - known):
        found = _get(f"/studies/{orthanc_id}", absent_ok=True)
        if not isinstance(found, dict):
            continue  # deleted since: nothing to map
        rows.append(
            StudyOwner(
                orthanc_id=orthanc_id,
                study_uid=str((found.get("MainDicomTags") or {}).get("StudyInstanceUID", "")),
                patient_id=str((found.get("PatientMainDicomTags") or {}).get("PatientID", "")),
                patient_orthanc_id=str(found.get("ParentPatient", "")),
            )
        )
    StudyOwner.objects.bulk_create(rows, ignore_conflicts=True)


def start_over(feed: ChangeFeed) -> None:
    with transaction.atomic():
        StudyOwner.objects.all().delete()
        feed.orthanc_url, feed.last_seq, feed.synced_at, feed.gap_seen_at = (
            settings.ORTHANC_URL,
            0,
            None,
            None,
        )
        feed.save()


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
