from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def adduser(monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    out = io.StringIO()
    call_command("adduser", *args, stdout=out)
    return out.getvalue()


def test_it_creates_a_user_in_groups_with_a_password_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    output = adduser(
        monkeypatch,
        "alice",
        "--group",
        "clinician",
        "--group",
        "auditor",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    alice = User.objects.get(username="alice")
    assert alice.check_password("correct horse battery")
    assert set(alice.groups.values_list("name", flat=True)) == {"clinician", "auditor"}
    assert output == "created user alice, member of: auditor, clinician\n"


def test_it_updates_an_existing_user(monkeypatch: pytest.MonkeyPatch) -> None:
    adduser(monkeypatch, "bob", "--group", "clinician", "--password-stdin", stdin="first long password\n")
    output = adduser(
        monkeypatch, "bob", "--group", "uploader", "--password-stdin", stdin="second long password\n"
    )
    bob = User.objects.get(username="bob")
    assert bob.check_password("second long password")
    assert set(bob.groups.values_list("name", flat=True)) == {"clinician", "uploader"}
    assert output.startswith("updated user bob")


def test_it_refuses_an_unknown_group_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CommandError, match="unknown group\\(s\\): radiologist; known groups: auditor"):
        adduser(
            monkeypatch, "carol", "--group", "radiologist", "--password-stdin", stdin="a long password!\n"
        )
    assert not User.objects.filter(username="carol").exists()


def test_it_refuses_a_weak_password_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CommandError, match="password rejected"):
        adduser(monkeypatch, "dave", "--group", "clinician", "--password-stdin", stdin="123\n")
    assert not User.objects.filter(username="dave").exists()


def test_it_refuses_empty_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CommandError, match="held no password"):
        adduser(monkeypatch, "erin", "--password-stdin", stdin="")


def test_it_creates_a_user_who_cannot_log_in_without_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    output = adduser(monkeypatch, "frank", "--group", "clinician")
    assert not User.objects.get(username="frank").has_usable_password()
    assert "cannot log in yet" in output
