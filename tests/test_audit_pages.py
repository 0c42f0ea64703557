"""The auditor's pages, the read-only admin, and the streamed CSV export."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client, RequestFactory

from audit.models import Action, AuditEvent, AuditImmutable

pytestmark = pytest.mark.django_db
STUDY = "1.2.840.99.1"


def make_user(username: str, *groups: str, **extra: bool) -> User:
    user = User.objects.create_user(username, email=None, password="a long enough password", **extra)
    user.groups.add(*Group.objects.filter(name__in=groups))
    return user


def event(**fields: object) -> AuditEvent:
    defaults: dict[str, object] = {
        "action": Action.RETRIEVE,
        "success": True,
        "status": 200,
        "username": "alice",
    }
    return AuditEvent(**{**defaults, **fields})


def test_it_shows_the_log_to_auditors_only(client: Client) -> None:
    AuditEvent.objects.bulk_create([event(study_uid=STUDY, patient_id="P1"), event(username="bob")])
    client.force_login(make_user("carol", "pacs-admin"))
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/export.csv").status_code == 403
    client.force_login(make_user("dave", "auditor"))
    page = client.get("/audit/")
    assert page.status_code == 200
    assert STUDY.encode() in page.content


def test_it_filters_by_study_patient_user_action_and_dates(client: Client) -> None:
    old = datetime(2024, 1, 1, tzinfo=UTC)
    AuditEvent.objects.bulk_create(
        [
            event(study_uid=STUDY, patient_id="P1", action_time=old),
            event(study_uid="1.2.3", patient_id="P2", username="bob"),
            event(action=Action.LOGIN_FAILED, success=False, status=401, username="mallory"),
        ]
    )
    client.force_login(make_user("dave", "auditor"))

    def listed(**query: str) -> int:
        return int(client.get("/audit/", query).context["page"].matching)

    assert listed(study_uid=STUDY) == 1
    assert listed(patient_id="P2") == 1
    assert listed(user="mallory", action="login-failed") == 1
    assert listed(end="2024-01-01") == 1
    assert listed(start=(datetime.now(UTC) - timedelta(days=1)).date().isoformat(), user="bob") == 1
    bad = client.get("/audit/", {"start": "2025-01-02", "end": "2025-01-01"})
    assert bad.status_code == 400
    assert b"start date is after the end date" in bad.content


def test_it_records_viewing_and_exporting_the_log(client: Client) -> None:
    client.force_login(make_user("dave", "auditor"))
    client.get("/audit/")
    client.get("/audit/export.csv", {"study_uid": STUDY}).getvalue()
    actions = list(
        AuditEvent.objects.filter(action__startswith="audit-")
        .order_by("id")
        .values_list("action", "username", "detail")
    )
    assert actions == [
        ("audit-view", "dave", ""),
        ("audit-export", "dave", f"study_uid={STUDY}"),
    ]


def test_it_exports_100000_events_as_a_streamed_spreadsheet_friendly_csv(
    client: Client, tmp_path: Path
) -> None:
    tricky_agent = 'Mozilla/5.0 "quoted", with commas\nand a newline'
    rows = [event(username=f"user{i}", study_uid=f"1.2.{i}") for i in range(99_998)]
    rows += [event(username="Zoë Ångström", user_agent=tricky_agent), event(username="=HYPERLINK(1)")]
    AuditEvent.objects.bulk_create(rows, batch_size=5000)
    client.force_login(make_user("dave", "auditor"))

    response = client.get("/audit/export.csv", {"action": "retrieve"})
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    exported = tmp_path / "audit.csv"
    tracemalloc.start()
    with exported.open("wb") as sink:  # to disk: the test must not hold the export in memory either
        for chunk in response:  # a streaming response iterates its streaming_content
            sink.write(chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    body = exported.read_bytes()
    size = len(body)
    print(f"\nCSV export: 100,000 events, {size / 1e6:.1f} MB, peak Python allocations {peak / 1e6:.1f} MB")
    assert peak < size / 2  # streamed: never the whole export, let alone all rows, at once

    assert body.startswith(b"\xef\xbb\xbf")  # UTF-8 byte order mark, for spreadsheets
    records = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert len(records) == 100_000
    assert list(records[0])[:4] == ["time_utc", "username", "client_ip", "action"]
    assert b"\r\n" in body
    by_name = {record["username"]: record for record in records}
    assert by_name["Zoë Ångström"]["user_agent"] == tricky_agent
    assert "'=HYPERLINK(1)" in by_name  # formula injection defused


def test_it_keeps_events_immutable_in_the_model_and_the_admin(client: Client) -> None:
    recorded = AuditEvent.objects.record(Action.LOGIN, user=None, username="alice")
    assert recorded is not None
    recorded.username = "mallory"
    with pytest.raises(AuditImmutable):
        recorded.save()
    with pytest.raises(AuditImmutable):
        recorded.delete()
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    assert client.get("/admin/audit/auditevent/").status_code == 200
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    change = client.post(f"/admin/audit/auditevent/{recorded.pk}/change/", {"username": "mallory"})
    assert change.status_code in (200, 403)
    assert client.post(f"/admin/audit/auditevent/{recorded.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get(pk=recorded.pk).username == "alice"


def test_it_reads_back_every_field_it_recorded() -> None:
    bob = make_user("bob")
    request = RequestFactory().get(
        "/pacs/dicom-web/studies/1.2/series/1.3", HTTP_USER_AGENT="Zoë's viewer", REMOTE_ADDR="10.1.2.3"
    )
    request.user = bob
    recorded = AuditEvent.objects.record(
        Action.STORE,
        request=request,
        status=200,
        study_uid="1.2",
        series_uid="1.3",
        sop_uid="1.4",
        patient_id="P-1",
        stored_uids=["1.4", "1.5"],
        detail="two instances",
    )
    assert recorded is not None
    stored = AuditEvent.objects.get(pk=recorded.pk)
    for field in AuditEvent._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(recorded, field.attname), field.name
    assert (stored.user, stored.username, stored.client_ip) == (bob, "bob", "10.1.2.3")
    assert stored.stored_uids == ["1.4", "1.5"]
    assert stored.action_time == recorded.action_time
