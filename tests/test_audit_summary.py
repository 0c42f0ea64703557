"""AccessSummary, the auditor's accesses kept as rows arrive, says what grouping the rows
says: after any mix of inserts (the proxy's own, bulk_create), after a prune, and after
the migration that fills it from rows already kept (tests/test_upgrade.py). On SQLite
here, and on PostgreSQL in make test's PostgreSQL pass (the trigger is each database's own)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit import pages
from audit.forms import AuditFilterForm
from audit.models import AccessSummary, Action, AuditEvent
from audit.views import ACCESS_GROUP, accesses_in, accesses_of
from tests.test_audit_pages import make_user

pytestmark = pytest.mark.django_db
START = datetime(2026, 1, 1, tzinfo=UTC)


def random_events(seed: int, count: int) -> list[AuditEvent]:
    """Rows of every kind the trail holds: counted accesses and what must not count."""
    chosen = random.Random(seed)
    return [
        AuditEvent(
            action=chosen.choice(list(Action.values)),
            success=chosen.random() < 0.8,
            status=200,
            username=chosen.choice(["alice", "bob", ""]),
            credential=chosen.choice(["session", "basic", "token"]),
            client_ip=chosen.choice([None, "10.0.0.1", "10.0.0.2", "2001:db8::1"]),
            patient_id=chosen.choice(["", "P1", "P2", "P3"]),
            study_uid=chosen.choice(["", "1.2.3", "1.2.4"]),
            action_time=START + timedelta(minutes=chosen.randrange(60 * 24 * 60)),
        )
        for _ in range(count)
    ]


def summary_lines() -> set[tuple[object, ...]]:
    return {
        (*(line[key] for key in ACCESS_GROUP), line["first"], line["last"], line["rows"])
        for line in AccessSummary.objects.values(*ACCESS_GROUP, "first", "last", "rows")
    }


def as_line(grouped: dict[str, Any]) -> tuple[object, ...]:
    """A line grouped from the rows as AccessSummary holds it ("" for no address)."""
    return (*(grouped[key] or "" for key in ACCESS_GROUP), grouped["first"], grouped["last"], grouped["rows"])


def grouped_rows() -> set[tuple[object, ...]]:
    """What the auditor's page counted from the rows before AccessSummary: the reference."""
    return {as_line(line) for line in accesses_of(AuditEvent.objects.all())}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_summary_counts_what_the_rows_group_to(seed: int) -> None:
    events = random_events(seed, 400)
    AuditEvent.objects.bulk_create(events[:300])
    for event in events[300:]:  # the proxy's write path: a raw INSERT, bucketed or not
        AuditEvent.objects.record(
            event.action,
            user=None,
            username=event.username,
            credential=event.credential,
            success=event.success,
            patient_id=event.patient_id,
            study_uid=event.study_uid,
            client=event.client_ip,
            bucketed=seed == 2,
        )
    assert grouped_rows()
    assert summary_lines() == grouped_rows()


@pytest.mark.parametrize("seed", [4, 5])
def test_a_prune_leaves_the_summary_counting_the_rows_left(seed: int) -> None:
    AuditEvent.objects.bulk_create(random_events(seed, 600))
    call_command("prune_audit", "--before", "2026-02-01", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert AuditEvent.objects.filter(action_time__lt=datetime(2026, 2, 1, tzinfo=UTC)).count() == 0
    assert grouped_rows()
    assert summary_lines() == grouped_rows()


def test_the_accesses_page_reads_the_summary_unless_dates_are_chosen(client: Client) -> None:
    AuditEvent.objects.bulk_create(random_events(7, 300))
    client.force_login(make_user("dave", "auditor"))
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/audit/accesses/", {"patient_id": "P1"})
    assert page.status_code == 200
    grouping = [q["sql"] for q in queries if "GROUP BY" in q["sql"]]
    assert grouping == []
    shown = page.context["page"].rows
    assert shown and all(line["patient_id"] == "P1" for line in shown)
    with CaptureQueriesContext(connection) as queries:
        dated = client.get(
            "/audit/accesses/", {"patient_id": "P1", "start": "2026-01-10", "end": "2026-01-20"}
        )
    assert any("GROUP BY" in q["sql"] for q in queries)
    assert all(START + timedelta(days=9) <= line["first"] for line in dated.context["page"].rows)
    assert b"count the records between the dates" in dated.content


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"user": "alice"},
        {"study_uid": "1.2.3"},
        {"patient_id": "P2"},
        {"action": "query"},
        {"user": "bob", "patient_id": "P1", "action": "retrieve"},
        {"action": "login"},
    ],
)
def test_every_filter_finds_in_the_summary_what_grouping_the_rows_finds(query: dict[str, str]) -> None:
    AuditEvent.objects.bulk_create(random_events(8, 500))
    form = AuditFilterForm(query)
    assert form.is_valid()
    from_summary = [tuple(line.values()) for line in accesses_in(form)]
    from_rows = [as_line(line) for line in accesses_of(form.filter(AuditEvent.objects.all()))]
    assert sorted(from_summary, key=repr) == sorted(from_rows, key=repr)
    assert from_rows or query.get("action") == "login"


def many_lines(count: int) -> None:
    AuditEvent.objects.bulk_create(
        AuditEvent(action=Action.RETRIEVE, success=True, username="alice", patient_id=f"P{n:04d}")
        for n in range(count)
    )


@pytest.fixture
def small_pages(client: Client, monkeypatch: pytest.MonkeyPatch) -> Client:
    """An auditor's client, with pages of 100 counted to 200: two pages at most."""
    monkeypatch.setattr(pages, "COUNT_LIMIT", 200)
    monkeypatch.setattr(pages, "MAX_PAGES", 2)
    client.force_login(make_user("dave", "auditor"))
    return client


def test_pages_stop_at_the_counted_depth_and_say_how_to_see_further(small_pages: Client) -> None:
    many_lines(320)
    first = small_pages.get("/audit/accesses/")
    assert len(first.context["page"].rows) == pages.PAGE_SIZE and first.context["page"].has_next
    deepest = small_pages.get("/audit/accesses/", {"page": "9"})
    assert deepest.context["page"].number == 2
    assert not deepest.context["page"].has_next
    assert b"narrow the filter" in deepest.content
    events = small_pages.get("/audit/", {"action": "retrieve"})
    assert b"More than 200 events" in events.content
    for garbage in ("x", "-3", "9" * 5000, "1e3", ""):
        answer = small_pages.get("/audit/", {"page": garbage})
        assert answer.status_code == 200 and answer.context["page"].number == 1
    repeated = small_pages.get("/audit/accesses/?page=9&page=1")  # the last one counts, as Django reads it
    assert repeated.context["page"].number == 1


def test_exactly_the_counted_rows_are_counted_and_paged_to_the_end(small_pages: Client) -> None:
    many_lines(200)
    last = small_pages.get("/audit/accesses/", {"page": "2"})
    assert len(last.context["page"].rows) == pages.PAGE_SIZE
    assert not last.context["page"].has_next and b"narrow the filter" not in last.content
    assert b"200 events" in small_pages.get("/audit/", {"action": "retrieve"}).content
    past_the_end = small_pages.get("/audit/accesses/", {"page": "3"})
    assert past_the_end.context["page"].number == 2 and past_the_end.context["page"].rows
