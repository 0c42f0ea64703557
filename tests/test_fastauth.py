"""The SQL session and user loads return what Django's own classes return."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.backends import ModelBackend as DjangoModelBackend
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from accounts.fastauth import ModelBackend, SessionStore

pytestmark = pytest.mark.django_db


def test_it_loads_the_same_session_data_as_django() -> None:
    store = SessionStore()
    store["answer"] = {"nested": [1, "two", None]}
    store.create()
    assert SessionStore(store.session_key).load() == DjangoSessionStore(store.session_key).load()
    assert SessionStore(store.session_key)["answer"] == {"nested": [1, "two", None]}


def test_it_loads_nothing_for_an_expired_or_unknown_session() -> None:
    store = SessionStore()
    store["answer"] = 42
    store.create()
    Session.objects.filter(session_key=store.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    expired = SessionStore(store.session_key)
    assert expired.load() == {}
    assert expired.session_key is None
    assert SessionStore("x" * 32).load() == {}


def test_it_loads_the_same_user_as_django() -> None:
    alice = User.objects.create_user("alice", password="a long enough password", first_name="Alice")
    ours, theirs = ModelBackend().get_user(alice.pk), DjangoModelBackend().get_user(alice.pk)
    assert ours is not None and theirs is not None
    for field in User._meta.concrete_fields:
        assert getattr(ours, field.attname) == getattr(theirs, field.attname), field.name
    assert ours.get_session_auth_hash() == theirs.get_session_auth_hash()


def test_it_loads_no_inactive_or_missing_user() -> None:
    charlie = User.objects.create_user("charlie", password="a long enough password", is_active=False)
    assert ModelBackend().get_user(charlie.pk) is None
    assert ModelBackend().get_user(charlie.pk + 1000) is None
