"""What access tokens and shared links share (accounts.models.IssuedSecret), on both of them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import RequestFactory

from accounts.models import AccessToken, TokenScope
from audit.models import AuditEvent
from shares.models import Share

pytestmark = pytest.mark.django_db
STUDY = "1.2.826.0.1.3680043.8.498.1"


def issue(model: type[AccessToken | Share], owner: User) -> tuple[AccessToken | Share, str]:
    if model is AccessToken:
        return AccessToken.objects.issue(owner, "laptop", TokenScope.READ, 30)
    return Share.objects.issue(owner, STUDY, 7)


@pytest.mark.parametrize("model", [AccessToken, Share])
def test_it_finds_one_by_its_secret_only_in_its_own_shape(model: type[AccessToken | Share]) -> None:
    issued, secret = issue(model, User.objects.create_user("alice"))
    assert model.objects.for_secret(secret) == issued
    assert model.objects.for_secret(secret + "x") is None
    assert model.objects.for_secret(secret[:-1]) is None
    other = AccessToken if model is Share else Share
    assert other.objects.for_secret(secret) is None
    assert issued.status == "active"


@pytest.mark.parametrize("model", [AccessToken, Share])
def test_it_revokes_once_with_one_audit_row_naming_who_revoked(model: type[AccessToken | Share]) -> None:
    issued, _ = issue(model, User.objects.create_user("alice"))
    request = RequestFactory().post("/", REMOTE_ADDR="10.0.0.7")
    request.user = User.objects.create_user("root", is_superuser=True)
    assert issued.revoke(request)
    assert not issued.revoke(request)
    issued.refresh_from_db()
    assert issued.status == "revoked"
    (row,) = AuditEvent.objects.filter(action=model.REVOKED)
    assert (row.user, row.credential, row.status) == (request.user, "session", 200)
    assert "of alice" in row.detail
