"""Sessions end after SESSION_IDLE_TIMEOUT seconds without a request."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from pacsportal.security import LAST_SEEN

pytestmark = pytest.mark.django_db


def logged_in_client(client: Client) -> Client:
    user = User.objects.create_user("alice", password="a long enough password")
    user.groups.add(Group.objects.get(name="clinician"))
    client.force_login(user)
    return client


def test_it_keeps_an_active_session(client: Client) -> None:
    logged_in_client(client)
    assert client.get("/portal/").status_code == 200
    assert client.get("/portal/").status_code == 200
    assert LAST_SEEN in client.session


def test_it_logs_out_a_session_left_idle(client: Client) -> None:
    logged_in_client(client)
    assert client.get("/portal/").status_code == 200
    session = client.session
    session[LAST_SEEN] = int(time.time()) - 31 * 60  # SESSION_IDLE_TIMEOUT is 30 minutes
    session.save()
    response = client.get("/portal/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert "_auth_user_id" not in client.session
