"""A /pacs session ends the moment its user or session does, with the portal's SQL session and user loads.

The viewer's requests load session and user with hand-written SELECTs
(accounts/fastauth.py); these check, over real HTTP against both gunicorn
workers, that nothing about them is cached.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests

from core import revocation_table
from tests.services import LivePortal

pytestmark = pytest.mark.live
QIDO = "/pacs/dicom-web/studies?limit=1"


def refused_within(portal: LivePortal, session: requests.Session, change: str) -> set[int]:
    """The statuses once revocation has bitten: at once through the Django door; through
    nginx, within the bound the revocation table (core/revocation_table.py) gives `change`."""
    bound = revocation_table.bound(change) if getattr(portal, "front", None) else 0
    deadline = time.monotonic() + (bound + 0.5 if bound else 0)
    statuses = qido_status(portal, session)
    while statuses != {401} and time.monotonic() < deadline:
        time.sleep(0.25)
        statuses = qido_status(portal, session)
    return statuses


def qido_status(portal: LivePortal, session: requests.Session, times: int = 4) -> set[int]:
    # Several requests, so both gunicorn workers answer at least once in practice.
    return {
        session.get(
            f"{portal.url}{QIDO}", headers={"Accept": "application/dicom+json"}, timeout=30
        ).status_code
        for _ in range(times)
    }


def shell(portal: LivePortal, code: str) -> None:
    portal.manage("shell", "-c", code)


def test_it_refuses_a_session_at_once_after_logout(live_portal: LivePortal) -> None:
    live_portal.add_user("hana", "clinician")
    session = live_portal.login("hana")
    assert qido_status(live_portal, session) == {200}
    stolen = dict(session.cookies)
    session.post(
        f"{live_portal.url}/accounts/logout/",
        data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{live_portal.url}/portal/"},
        timeout=10,
    )
    replay = requests.Session()
    replay.cookies.update(stolen)
    assert refused_within(live_portal, replay, "logout") == {401}


def deactivate(portal: LivePortal, username: str, session: requests.Session) -> None:
    shell(
        portal,
        "from django.contrib.auth.models import User; "
        f"User.objects.filter(username='{username}').update(is_active=False)",
    )


def change_password(portal: LivePortal, username: str, session: requests.Session) -> None:
    shell(
        portal,
        "from django.contrib.auth.models import User; "
        f"u = User.objects.get(username='{username}'); u.set_password('another long password 42'); u.save()",
    )


def expire_session(portal: LivePortal, username: str, session: requests.Session) -> None:
    shell(
        portal,
        "from datetime import timedelta; from django.utils import timezone; "
        "from django.contrib.sessions.models import Session; "
        f"Session.objects.filter(session_key='{session.cookies['sessionid']}')"
        ".update(expire_date=timezone.now() - timedelta(seconds=1))",
    )


# Each change as the revocation table names it.
CHANGES: dict[Callable[[LivePortal, str, requests.Session], None], str] = {
    deactivate: "a user, password or token changed around the portal (SQL by hand, `QuerySet.update`)",
    change_password: "password changed",
    expire_session: "session expired (its age, or idle)",
}


@pytest.mark.parametrize("change", list(CHANGES), ids=lambda change: change.__name__)
def test_it_refuses_a_session_at_once_after(
    live_portal: LivePortal, change: Callable[[LivePortal, str, requests.Session], None]
) -> None:
    username = change.__name__.replace("_", "-")
    live_portal.add_user(username, "clinician")
    session = live_portal.login(username)
    assert qido_status(live_portal, session) == {200}
    change(live_portal, username, session)
    assert refused_within(live_portal, session, CHANGES[change]) == {401}
