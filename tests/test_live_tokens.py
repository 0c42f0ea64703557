"""Access tokens and remembered Basic passwords through real HTTP against gunicorn.

The live portal hashes passwords as production does (PBKDF2, about 0.5 s of
CPU per check), so the remembered-password tests can tell a check from a memory.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from orthanc import demo
from tests.dicom import stow_body, unique_ct_instance
from tests.services import LivePortal

pytestmark = pytest.mark.live
QIDO = "/pacs/dicom-web/studies?limit=1"
TOKEN_SHAPE = re.compile(r"pacs_[0-9A-Za-z]{43}")
TICK_SECONDS = 1 / os.sysconf("SC_CLK_TCK")


def create_token(portal: LivePortal, username: str, scope: str = "read", name: str = "") -> tuple[str, str]:
    """A new token made on the token page, as its owner would: (name, secret)."""
    name = name or f"test {secrets.token_hex(3)}"
    session = portal.login(username)
    url = f"{portal.url}/accounts/tokens/"
    session.get(url, timeout=10)
    response = session.post(
        url,
        data={
            "name": name,
            "scope": scope,
            "days": "30",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": url},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    found = TOKEN_SHAPE.search(response.text)
    assert found is not None
    return name, found.group(0)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Accept": "application/dicom+json"}


def qido(portal: LivePortal, **kwargs: Any) -> int:
    return requests.get(f"{portal.url}{QIDO}", timeout=30, **kwargs).status_code


def shell(portal: LivePortal, code: str) -> None:
    portal.manage("shell", "-c", code)


def worker_cpu_seconds(portal: LivePortal) -> float:
    ticks = 0
    for pid in portal.worker_pids():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks * TICK_SECONDS


def test_it_reads_with_a_token_as_bearer_and_as_the_basic_password(live_portal: LivePortal) -> None:
    name, secret = create_token(live_portal, "alice")
    after = live_portal.last_audit_id()
    assert qido(live_portal, headers=bearer(secret)) == 200
    assert qido(live_portal, auth=("alice", secret)) == 200
    assert qido(live_portal, auth=("bob", secret)) == 401
    wrong = secret[:-1] + (
        "0" if secret[-1] != "0" else "1"
    )  # a secret ending in "0" once made this the right one
    assert qido(live_portal, headers=bearer(wrong)) == 401
    events = live_portal.audit_events(after)
    rows = [row for row in events if row["credential"] == f"token:{name}"]
    assert rows, "token reads are audited under the token's name"
    assert {row["username"] for row in rows} == {"alice"}
    assert {row["success"] for row in rows} == {1}
    refused = [row for row in events if row["status"] == 401]
    assert len(refused) == 2  # the wrong username, the wrong token: refusals with no user
    assert {row["user_id"] for row in refused} == {None}


def test_it_refuses_writes_with_a_read_only_token_whatever_the_owner_may_do(live_portal: LivePortal) -> None:
    _, read_only = create_token(live_portal, "bob", "read")
    _, store = create_token(live_portal, "bob", "store")
    data, _, _ = unique_ct_instance(label="token-stow")
    body, content_type = stow_body([data])
    url = f"{live_portal.url}/pacs/dicom-web/studies"
    headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
    refused = requests.post(url, data=body, headers={**headers, **bearer(read_only)}, timeout=60)
    assert refused.status_code == 403
    stored = requests.post(url, data=body, headers={**headers, **bearer(store)}, timeout=60)
    assert stored.status_code == 200

    _, carol_read = create_token(live_portal, "carol", "read")
    _, carol_admin = create_token(live_portal, "carol", "admin")
    system = f"{live_portal.url}/pacs-admin/system"
    assert requests.get(system, headers=bearer(carol_read), timeout=30).status_code == 403
    assert requests.get(system, headers=bearer(carol_admin), timeout=30).status_code == 200
    tools = f"{live_portal.url}/pacs-admin/tools/find"
    find = {"Level": "Study", "Query": {}}
    assert requests.post(tools, json=find, headers=bearer(carol_read), timeout=30).status_code == 403
    assert requests.post(tools, json=find, headers=bearer(carol_admin), timeout=30).status_code == 200


def revoke_on_the_page(portal: LivePortal, username: str, name: str) -> None:
    session = portal.login(username)
    url = f"{portal.url}/accounts/tokens/"
    page = session.get(url, timeout=10).text
    row = page[page.index(f"<td>{name}</td>") :]
    action = re.search(r'action="(/accounts/tokens/\d+/revoke/)"', row)
    assert action is not None
    revoked = session.post(
        f"{portal.url}{action.group(1)}",
        data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": url},
        allow_redirects=False,
        timeout=10,
    )
    assert revoked.status_code == 302


def deactivate_owner(portal: LivePortal, username: str, name: str) -> None:
    shell(  # as Django admin does it: a save, which the portal hears of (accounts/revocation.py)
        portal,
        "from django.contrib.auth.models import User; "
        f"u = User.objects.get(username='{username}'); u.is_active = False; u.save()",
    )


@pytest.mark.parametrize("change", [revoke_on_the_page, deactivate_owner], ids=lambda change: change.__name__)
def test_it_refuses_a_token_at_once_after(
    live_portal: LivePortal, change: Callable[[LivePortal, str, str], None]
) -> None:
    username = f"tok-{change.__name__.replace('_', '-')}"
    live_portal.add_user(username, "clinician")
    name, secret = create_token(live_portal, username)
    assert {qido(live_portal, headers=bearer(secret)) for _ in range(3)} == {200}
    change(live_portal, username, name)
    assert qido(live_portal, headers=bearer(secret)) == 401
    assert qido(live_portal, auth=(username, secret)) == 401


def test_it_refuses_a_token_once_it_has_expired(live_portal: LivePortal) -> None:
    live_portal.add_user("tok-expiring", "clinician")
    name, secret = create_token(live_portal, "tok-expiring")
    expires_in = 2.5
    shell(
        live_portal,
        "from datetime import timedelta; from django.utils import timezone; "
        "from accounts.models import AccessToken; "
        f"AccessToken.objects.filter(user__username='tok-expiring', name='{name}')"
        f".update(expires_at=timezone.now() + timedelta(seconds={expires_in}))",
    )
    expires_at = time.monotonic() + expires_in
    # Read just before it expires: through nginx, a decision is reused no longer than the token lives.
    statuses = [qido(live_portal, headers=bearer(secret)) for _ in range(3)]
    assert time.monotonic() < expires_at and statuses == [200] * 3
    time.sleep(max(expires_at - time.monotonic(), 0) + 0.1)
    assert qido(live_portal, headers=bearer(secret)) == 401
    assert qido(live_portal, auth=("tok-expiring", secret)) == 401


def change_password(portal: LivePortal, username: str) -> None:
    shell(
        portal,
        "from django.contrib.auth.models import User; "
        f"u = User.objects.get(username='{username}'); u.set_password('another long password 42'); u.save()",
    )


def deactivate(portal: LivePortal, username: str) -> None:
    deactivate_owner(portal, username, "")


@pytest.mark.parametrize("change", [change_password, deactivate], ids=lambda change: change.__name__)
def test_it_ends_a_remembered_basic_password_at_once_after(
    live_portal: LivePortal, change: Callable[[LivePortal, str], None]
) -> None:
    username = f"basic-{change.__name__.replace('_', '-')}"
    live_portal.add_user(username, "clinician")
    auth = (username, live_portal.passwords[username])
    assert qido(live_portal, auth=auth) == 200
    before = worker_cpu_seconds(live_portal)
    assert {qido(live_portal, auth=auth) for _ in range(20)} == {200}
    # Twenty password checks would cost about 10 s of CPU; remembered, they cost milliseconds.
    assert worker_cpu_seconds(live_portal) - before < 1.0
    change(live_portal, username)
    assert qido(live_portal, auth=auth) == 401


def test_it_still_locks_out_a_remembered_password_after_wrong_ones_and_audits_them(
    live_portal: LivePortal,
) -> None:
    live_portal.add_user("ivan", "clinician")
    auth = ("ivan", live_portal.passwords["ivan"])
    assert qido(live_portal, auth=auth) == 200  # now remembered
    after = live_portal.last_audit_id()
    wrong = [qido(live_portal, auth=("ivan", f"wrong {attempt}")) for attempt in range(10)]
    # AXES_FAILURE_LIMIT=3 in the live portal: the third failure locks out.
    assert wrong == [401, 401] + [429] * 8
    assert qido(live_portal, auth=auth) == 429
    rows = [row for row in live_portal.audit_events(after) if row["username"] == "ivan"]
    actions = [row["action"] for row in rows]
    assert actions.count("login-failed") == 11  # ten wrong passwords, then the locked-out right one
    assert actions.count("lockout") >= 1
    # Through nginx too: recorded under the path asked for, not the decision's sub-request.
    assert {row["path"] for row in rows} == {QIDO.partition("?")[0]}
    assert all(not row["success"] for row in rows)


def test_it_never_writes_a_tokens_secret_to_a_page_log_or_audit_row(live_portal: LivePortal) -> None:
    name, secret = create_token(live_portal, "alice")
    assert qido(live_portal, headers=bearer(secret)) == 200
    assert qido(live_portal, auth=("alice", secret)) == 200
    assert qido(live_portal, auth=("eve", secret)) == 401
    assert (
        requests.get(f"{live_portal.url}/pacs/nowhere", headers=bearer(secret), timeout=30).status_code == 404
    )
    page = live_portal.login("alice").get(f"{live_portal.url}/accounts/tokens/", timeout=10).text
    assert name in page
    assert secret not in page
    assert secret not in live_portal.log_path.read_text()
    assert all(secret not in repr(row) for row in live_portal.audit_events())
    root = live_portal.login("root")
    admin = root.get(f"{live_portal.url}/admin/accounts/accesstoken/", timeout=10).text
    assert name in admin and secret not in admin


def test_it_serves_dicomweb_client_with_a_token_as_orthanc_does(live_portal: LivePortal) -> None:
    _, secret = create_token(live_portal, "alice")
    client = DICOMwebClient(
        f"{live_portal.url}/pacs/dicom-web", headers={"Authorization": f"Bearer {secret}"}
    )
    series = client.retrieve_series(demo.DEMO_CT_STUDY_UID, demo.DEMO_CT_SERIES_UID)
    found = client.search_for_instances(demo.DEMO_CT_STUDY_UID, demo.DEMO_CT_SERIES_UID)
    assert len(series) == len(found) > 1
    assert {ds.SOPInstanceUID for ds in series} == {item["00080018"]["Value"][0] for item in found}
