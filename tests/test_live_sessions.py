"""A /pacs session ends the moment its user or session does, with the portal's SQL session and user loads.

The viewer's requests load session and user with hand-written SELECTs
(pacsportal/fastauth.py); these check, over real HTTP against both gunicorn
workers, that nothing about them is cached.
"""

from __future__ import annotations

import pytest
import requests

from tests.services import LivePortal

pytestmark = pytest.mark.live
QIDO = "/pacs/dicom-web/studies?limit=1"


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
    assert qido_status(live_portal, replay) == {401}


def test_it_refuses_a_session_at_once_after_deactivation(live_portal: LivePortal) -> None:
    live_portal.add_user("ivan", "clinician")
    session = live_portal.login("ivan")
    assert qido_status(live_portal, session) == {200}
    shell(
        live_portal,
        "from django.contrib.auth.models import User; "
        "User.objects.filter(username='ivan').update(is_active=False)",
    )
    assert qido_status(live_portal, session) == {401}


def test_it_refuses_other_sessions_once_the_password_changes(live_portal: LivePortal) -> None:
    live_portal.add_user("jana", "clinician")
    session = live_portal.login("jana")
    assert qido_status(live_portal, session) == {200}
    shell(
        live_portal,
        "from django.contrib.auth.models import User; u = User.objects.get(username='jana'); "
        "u.set_password('another long password 42'); u.save()",
    )
    assert qido_status(live_portal, session) == {401}


def test_it_refuses_an_expired_session(live_portal: LivePortal) -> None:
    live_portal.add_user("karl", "clinician")
    session = live_portal.login("karl")
    assert qido_status(live_portal, session) == {200}
    shell(
        live_portal,
        "from datetime import timedelta; from django.utils import timezone; "
        "from django.contrib.sessions.models import Session; "
        f"Session.objects.filter(session_key='{session.cookies['sessionid']}')"
        ".update(expire_date=timezone.now() - timedelta(seconds=1))",
    )
    assert qido_status(live_portal, session) == {401}
