"""The study map read from Orthanc's change feed names every study as Orthanc's own
look-up does, spares that look-up while fresh, and gives way to it whenever it cannot
be sure: stale, absent, a collision, a study filed again under another patient."""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Iterator

import pytest
import requests
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from devstack.orthanc_server import OrthancServer
from orthanc import lookups, owners
from orthanc.models import ChangeFeed, StudyOwner
from proxy.subjects import Refused, chain
from tests.dicom import unique_ct_instance
from tests.services import LivePortal
from tests.test_front import BROWSER
from tests.test_lookups import Asked, asked  # noqa: F401  (the fixture, used by name)

pytestmark = pytest.mark.django_db

READER = "test-reader"


@pytest.fixture(autouse=True)
def fresh_start() -> Iterator[None]:
    """Each test reads the feed itself, from a map that always rechecks its freshness."""
    lookups.clear()
    checks, grace = owners.FRESHNESS_CHECK_SECONDS, owners.GAP_GRACE_SECONDS
    # A deletion leaves a gap in the feed's numbers (SQLite): waited out in a second, not ten.
    owners.FRESHNESS_CHECK_SECONDS, owners.GAP_GRACE_SECONDS = -1.0, 1.0
    yield
    owners.FRESHNESS_CHECK_SECONDS, owners.GAP_GRACE_SECONDS = checks, grace
    lookups.clear()


def store(
    orthanc: OrthancServer, study_uid: str | None = None, patient_id: str | None = None
) -> dict[str, str]:
    data, _, _ = unique_ct_instance(study_uid=study_uid, label="owners", patient_id=patient_id)
    auth = (orthanc.user, orthanc.password)
    stored = requests.post(f"{orthanc.url}/instances", data=data, auth=auth, timeout=30)
    stored.raise_for_status()
    answer: dict[str, str] = stored.json()
    return answer


def delete_study(orthanc: OrthancServer, orthanc_id: str) -> None:
    auth = (orthanc.user, orthanc.password)
    requests.delete(f"{orthanc.url}/studies/{orthanc_id}", auth=auth, timeout=30).raise_for_status()


def read_until_synced() -> None:
    """The feed read to its end; a gap from a deletion is waited out as the reader would."""
    deadline = time.monotonic() + owners.GAP_GRACE_SECONDS + 20
    before = timezone.now()
    while True:
        owners.read_feed(READER)
        feed = ChangeFeed.objects.get(pk=1)
        if feed.synced_at is not None and feed.synced_at >= before:
            return
        assert time.monotonic() < deadline, f"the map never caught up: {feed.__dict__}"
        time.sleep(owners.POLL_SECONDS)


def by_orthanc(uid: str) -> list[lookups.Resource] | int:
    """Orthanc's own look-up, the map set aside: the resources, or the refusal's status."""
    lookups.clear()
    with override_settings(ORTHANC_FOLLOW_CHANGES=False):
        try:
            return [chain({"studies": uid})]  # type: ignore[list-item]
        except Refused as refused:
            return refused.status


def by_map(uid: str) -> list[lookups.Resource] | int:
    lookups.clear()
    try:
        return [chain({"studies": uid})]  # type: ignore[list-item]
    except Refused as refused:
        return refused.status


@pytest.mark.parametrize("seed", [1, 2])
def test_the_map_names_every_study_as_orthancs_own_look_up_does(orthanc: OrthancServer, seed: int) -> None:
    """Generated histories: new studies, a UID under two patients, studies deleted, and
    deleted then filed again under another patient; every UID resolved both ways."""
    rng = random.Random(seed)
    uids: list[str] = []
    stored: dict[str, dict[str, str]] = {}
    for number in range(12):
        data_uid = f"1.2.826.0.1.3680043.10.543.{seed}.{number}.{rng.randrange(10**6)}"
        stored[data_uid] = store(orthanc, study_uid=data_uid)
        uids.append(data_uid)
    read_until_synced()
    twice, deleted, moved = uids[0], uids[1], uids[2]
    store(orthanc, study_uid=twice)  # a second patient for the same UID
    delete_study(orthanc, stored[deleted]["ParentStudy"])
    delete_study(orthanc, stored[moved]["ParentStudy"])
    store(orthanc, study_uid=moved, patient_id=f"MOVED-{seed}")
    read_until_synced()
    for uid in uids:
        expected = by_orthanc(uid)
        assert by_map(uid) == expected, uid
    assert by_map(twice) == 409
    assert by_map(deleted) == 404
    found = by_map(moved)
    assert isinstance(found, list) and found[0].patient_id == f"MOVED-{seed}"


def test_a_fresh_map_spares_orthancs_look_up(orthanc: OrthancServer, asked: Asked) -> None:  # noqa: F811
    uid = store(orthanc)
    study_uid = requests.get(
        f"{orthanc.url}/studies/{uid['ParentStudy']}", auth=(orthanc.user, orthanc.password), timeout=30
    ).json()["MainDicomTags"]["StudyInstanceUID"]
    read_until_synced()
    asked.clear()
    found = chain({"studies": study_uid})
    assert found is not None and found.orthanc_id == uid["ParentStudy"]
    assert asked == []


def test_a_stale_map_gives_way_to_the_look_up(orthanc: OrthancServer, asked: Asked) -> None:  # noqa: F811
    study_uid = f"1.2.826.0.1.3680043.10.543.9.{random.randrange(10**9)}"
    store(orthanc, study_uid=study_uid)
    read_until_synced()
    lag = datetime.timedelta(seconds=owners.MAX_LAG_SECONDS + 1)
    ChangeFeed.objects.filter(pk=1).update(synced_at=timezone.now() - lag)
    asked.clear()
    assert chain({"studies": study_uid}) is not None
    assert "POST /tools/lookup" in asked


def test_a_study_stored_after_the_last_read_is_found_by_the_look_up(
    orthanc: OrthancServer,
    asked: Asked,  # noqa: F811
) -> None:
    read_until_synced()
    study_uid = f"1.2.826.0.1.3680043.10.543.8.{random.randrange(10**9)}"
    store(orthanc, study_uid=study_uid, patient_id="LATE-1")
    found = chain({"studies": study_uid})
    assert found is not None and found.patient_id == "LATE-1"
    assert "POST /tools/lookup" in asked


def test_a_study_filed_again_between_two_reads_is_confirmed_by_orthanc(orthanc: OrthancServer) -> None:
    """Deleted under one patient and stored under another: until the next read of the
    feed matches the map to Orthanc's count, the map holds both, and Orthanc says which."""
    study_uid = f"1.2.826.0.1.3680043.10.543.7.{random.randrange(10**9)}"
    first = store(orthanc, study_uid=study_uid, patient_id="FIRST-1")
    read_until_synced()
    delete_study(orthanc, first["ParentStudy"])
    second = store(orthanc, study_uid=study_uid, patient_id="SECOND-1")
    owners.add_studies([second["ParentStudy"]])  # the next read's first half: the new study, not the count
    assert StudyOwner.objects.filter(study_uid=study_uid).count() == 2
    found = by_map(study_uid)
    assert isinstance(found, list) and found[0].patient_id == "SECOND-1"
    kept = StudyOwner.objects.filter(study_uid=study_uid).values_list("patient_id", flat=True)
    assert list(kept) == ["SECOND-1"]


def test_a_deleted_study_leaves_the_map_at_the_next_read(orthanc: OrthancServer) -> None:
    study_uid = f"1.2.826.0.1.3680043.10.543.5.{random.randrange(10**9)}"
    stored = store(orthanc, study_uid=study_uid)
    read_until_synced()
    assert StudyOwner.objects.filter(study_uid=study_uid).exists()
    delete_study(orthanc, stored["ParentStudy"])
    read_until_synced()
    assert not StudyOwner.objects.filter(study_uid=study_uid).exists()
    assert by_map(study_uid) == 404


def test_a_recent_gap_holds_the_cursor_for_its_grace_then_is_passed() -> None:
    feed = ChangeFeed(last_seq=10)
    now = timezone.now()
    assert owners.advance(feed, [11, 12, 14, 15], now) is True
    assert (feed.last_seq, feed.gap_seen_at) == (12, now)
    later = now + datetime.timedelta(seconds=owners.GAP_GRACE_SECONDS / 2)
    assert owners.advance(feed, [14, 15], later) is True and feed.last_seq == 12
    assert owners.advance(feed, [13, 14, 15], later) is False  # the gap filled: committed late
    assert (feed.last_seq, feed.gap_seen_at) == (15, None)
    feed.last_seq = 20
    owners.advance(feed, [22], now)
    passed = now + datetime.timedelta(seconds=owners.GAP_GRACE_SECONDS)
    assert owners.advance(feed, [22, 23], passed) is False
    assert (feed.last_seq, feed.gap_seen_at) == (23, None)


def test_gaps_among_settled_numbers_are_passed_at_once() -> None:
    """A first read of a long feed meets a gap for every deleted resource: only numbers
    handed out within the grace can still be committed, so only those are waited for."""
    feed = ChangeFeed(last_seq=0)
    start = timezone.now()
    owners.note_head(feed, 500, start)
    assert feed.settled_seq == 0  # nothing known to be old yet
    owners.note_head(feed, 900, start + datetime.timedelta(seconds=owners.GAP_GRACE_SECONDS))
    assert (feed.settled_seq, feed.head_seq) == (500, 900)
    assert owners.advance(feed, [3, 7, 120, 499, 500], start) is False
    assert feed.last_seq == 500
    assert owners.advance(feed, [502], start) is True  # 501 may still be committed
    assert owners.advance(feed, [499, 400], start) is False and feed.last_seq == 500  # never back


def test_the_map_keeps_its_columns_lengths() -> None:
    for name, most in owners.COLUMN_LENGTHS.items():
        assert StudyOwner._meta.get_field(name).max_length == most  # type: ignore[union-attr]
    long_id = StudyOwner(orthanc_id="a", study_uid="1.2", patient_id="P" * 65, patient_orthanc_id="b")
    assert not owners.fits(long_id)
    assert owners.fits(
        StudyOwner(orthanc_id="a", study_uid="1.2", patient_id="P" * 64, patient_orthanc_id="b")
    )


def test_healing_drops_only_rows_the_look_up_could_have_seen() -> None:
    """A study mapped after Orthanc was asked (here `added`) is not the look-up's to judge."""
    for orthanc_id, patient in (("kept", "P1"), ("deleted", "P2"), ("added", "P3")):
        StudyOwner.objects.create(
            orthanc_id=orthanc_id, study_uid="1.2.3.4", patient_id=patient, patient_orthanc_id="x"
        )
    owners.heal(["kept", "deleted"], ["kept"])
    assert sorted(StudyOwner.objects.values_list("orthanc_id", flat=True)) == ["added", "kept"]


def test_a_map_that_cannot_be_read_gives_way_to_the_look_up(
    orthanc: OrthancServer,
    asked: Asked,  # noqa: F811
) -> None:
    study_uid = f"1.2.826.0.1.3680043.10.543.4.{random.randrange(10**9)}"
    store(orthanc, study_uid=study_uid, patient_id="UNREAD-1")
    read_until_synced()
    with connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute("ALTER TABLE orthanc_studyowner RENAME TO orthanc_studyowner_away")
    found = chain({"studies": study_uid})
    assert found is not None and found.patient_id == "UNREAD-1"
    assert "POST /tools/lookup" in asked


def test_an_index_emptied_or_replaced_is_read_again_and_its_studies_counted(orthanc: OrthancServer) -> None:
    read_until_synced()
    ChangeFeed.objects.filter(pk=1).update(last_seq=10**12)  # beyond anything this Orthanc has
    StudyOwner.objects.create(orthanc_id="gone", study_uid="1.2.3", patient_id="GONE", patient_orthanc_id="x")
    read_until_synced()
    assert not StudyOwner.objects.filter(orthanc_id="gone").exists()  # more rows than studies: listed again
    assert ChangeFeed.objects.get(pk=1).last_seq < 10**12


def test_one_reader_at_a_time_until_its_lease_lapses() -> None:
    assert owners.take_lease("first")
    assert not owners.take_lease("second")
    assert owners.take_lease("first")
    ChangeFeed.objects.filter(pk=1).update(lease_until=timezone.now() - datetime.timedelta(seconds=1))
    assert owners.take_lease("second")
    assert not owners.take_lease("first")
    # The first reader, back from a pause, cannot write its older cursor over the second's.
    stale = ChangeFeed.objects.get(pk=1)
    stale.last_seq = 1
    assert not owners.kept(stale, "first", "last_seq")
    assert owners.kept(stale, "second", "last_seq")


def test_the_portals_workers_follow_the_feed_and_audit_a_first_read_by_it(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    """Through HTTP: gunicorn's worker keeps the map, and a first read is audited under
    the patient Orthanc holds the study for."""
    study_uid = f"1.2.826.0.1.3680043.10.543.6.{random.randrange(10**9)}"
    store(orthanc, study_uid=study_uid, patient_id="FOLLOWED-1")
    deadline = time.monotonic() + 30
    while not live_portal.rows("SELECT patient_id FROM orthanc_studyowner WHERE study_uid = %s", study_uid):
        assert time.monotonic() < deadline, "the worker never mapped the new study"
        time.sleep(0.2)
    session = live_portal.login("alice")
    url = f"{live_portal.url}/pacs/dicom-web/studies/{study_uid}/metadata"
    answer = session.get(url, headers={**BROWSER, "Accept": "application/dicom+json"}, timeout=30)
    assert answer.status_code == 200
    rows = live_portal.rows("SELECT patient_id, action FROM audit_auditevent WHERE study_uid = %s", study_uid)
    assert rows == [{"patient_id": "FOLLOWED-1", "action": "retrieve"}]
