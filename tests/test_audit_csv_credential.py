"""The audit exports say which credential each access used: the owner's session, one of
the owner's tokens, or a visitor of one of the owner's shared links."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
import requests

from audit.models import Action, AuditEvent
from audit.views import CSV_COLUMNS, csv_rows
from orthanc import demo
from tests.services import LivePortal
from tests.test_audit_csv_injection import formula_cells, unquote
from tests.test_live_shares import create_share, visit
from tests.test_live_tokens import bearer, create_token

STUDY = demo.DEMO_CT_STUDY_UID
OWNER = "csv-credential"


def records(response: requests.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    text = response.content.decode("utf-8-sig")
    assert formula_cells(text) == [], text
    return [
        {name: unquote(value) for name, value in record.items()}
        for record in csv.DictReader(io.StringIO(text, newline=""))
    ]


@pytest.fixture(scope="module")
def credentials(live_portal: LivePortal) -> Iterator[dict[str, str]]:
    """The same study read by its owner's session, one of her tokens and a visitor of her
    link: each credential as the audit names it."""
    if OWNER not in live_portal.passwords:
        live_portal.add_user(OWNER, "clinician")
    name, token = create_token(live_portal, OWNER, name="csv laptop")
    share_id, secret = create_share(live_portal, OWNER)
    series = f"{live_portal.url}/pacs/dicom-web/studies/{STUDY}/series"
    json = {"Accept": "application/dicom+json"}
    assert live_portal.login(OWNER).get(series, headers=json, timeout=30).status_code == 200
    assert requests.get(series, headers=bearer(token), timeout=30).status_code == 200
    assert visit(live_portal, secret).get(series, headers=json, timeout=30).status_code == 200
    yield {"session": "session", "token": f"token:{name}", "share": f"share:{share_id}"}


@pytest.mark.live
def test_it_names_each_reads_credential_in_the_events_export(
    live_portal: LivePortal, credentials: dict[str, str]
) -> None:
    auditor = live_portal.login("dave")
    query = {"user": OWNER, "study_uid": STUDY, "action": Action.QUERY}
    exported = records(auditor.get(f"{live_portal.url}/audit/export.csv", params=query, timeout=30))
    assert sorted(record["credential"] for record in exported) == sorted(credentials.values())
    assert {record["username"] for record in exported} == {OWNER}


@pytest.mark.live
def test_it_names_each_reads_credential_in_the_accesses_export(
    live_portal: LivePortal, credentials: dict[str, str]
) -> None:
    auditor = live_portal.login("dave")
    query = {"user": OWNER, "study_uid": STUDY, "view": "accesses"}
    exported = records(auditor.get(f"{live_portal.url}/audit/export.csv", params=query, timeout=30))
    reads = [record for record in exported if record["action"] == Action.QUERY]
    assert sorted(record["credential"] for record in reads) == sorted(credentials.values())


@pytest.mark.live
def test_it_shows_each_reads_credential_on_the_events_page(
    live_portal: LivePortal, credentials: dict[str, str]
) -> None:
    auditor = live_portal.login("dave")
    query = {"user": OWNER, "study_uid": STUDY, "action": Action.QUERY}
    page = auditor.get(f"{live_portal.url}/audit/", params=query, timeout=30)
    assert page.status_code == 200
    assert "<th>Credential</th>" in page.text
    assert credentials["token"] in page.text
    assert f"visitor of shared link #{credentials['share'].removeprefix('share:')}" in page.text


def test_it_adds_the_events_credential_column_last_leaving_the_others_where_they_were() -> None:
    before = ["time_utc", "username", "client_ip", "action", "status", "success", "method", "path"]
    before += ["query", "study_uid", "series_uid", "sop_uid", "patient_id", "stored_uids", "user_agent"]
    assert [name for name, _ in CSV_COLUMNS] == [*before, "detail", "credential"]


def test_it_defuses_a_credential_like_any_other_cell() -> None:
    hostile = AuditEvent(action=Action.QUERY, success=True, username="x", credential="token:a;=1+1")
    text = "".join(csv_rows(iter([hostile]))).removeprefix("\ufeff")
    assert formula_cells(text) == []
    (record,) = csv.DictReader(io.StringIO(text, newline=""))
    assert unquote(record["credential"]) == "token:a;=1+1"
