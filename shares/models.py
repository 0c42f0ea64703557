"""A shared link: one study, read-only, until it expires or is revoked."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.utils import timezone

from accounts.models import TOKEN_ALPHABET, TOKEN_LENGTH, digest_of

# A share link's secret: SHARE_PREFIX and 43 base62 characters (256 bits), in
# the link's fragment (`/share/#pacsshare_...`), so it reaches no server log or Referer.
SHARE_PREFIX = "pacsshare_"
SHARE_NOTE_LENGTH = 200


def new_share_secret() -> str:
    return SHARE_PREFIX + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def looks_like_share_secret(value: str) -> bool:
    return value.startswith(SHARE_PREFIX) and len(value) == len(SHARE_PREFIX) + TOKEN_LENGTH


class ShareManager(models.Manager["Share"]):
    def issue(
        self, owner: AbstractBaseUser, study_uid: str, days: int, note: str = "", allow_download: bool = False
    ) -> tuple[Share, str]:
        """A new share and its secret; the secret is never stored, only its digest."""
        secret = new_share_secret()
        share = self.create(
            owner=owner,
            study_uid=study_uid,
            digest=digest_of(secret),
            note=note,
            allow_download=allow_download,
            expires_at=timezone.now() + timedelta(days=days),
        )
        return share, secret

    def for_secret(self, secret: str) -> Share | None:
        """The share with this secret, by its indexed digest, revoked and expired ones included."""
        if not looks_like_share_secret(secret):
            return None
        digest = digest_of(secret)
        found = list(self.filter(digest=digest).select_related("owner")[:2])
        # Found through the index; compared again in constant time all the same.
        if len(found) != 1 or not hmac.compare_digest(found[0].digest, digest):
            return None
        return found[0]

    def created_since(self, owner: AbstractBaseUser, since: datetime) -> int:
        return self.filter(owner=owner, created_at__gte=since).count()


class Share(models.Model):
    """A link that opens one study, read-only, until it expires or is revoked."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="shares", editable=False)
    study_uid = models.CharField("Study Instance UID", max_length=64, editable=False)
    digest = models.CharField("SHA-256 of the secret", max_length=64, unique=True, editable=False)
    note = models.CharField(
        max_length=SHARE_NOTE_LENGTH, blank=True, editable=False, help_text="who it is for"
    )
    allow_download = models.BooleanField(
        default=False, editable=False, help_text="whole studies, series and instances, not only the viewer"
    )
    created_at = models.DateTimeField("created", default=timezone.now, editable=False)
    expires_at = models.DateTimeField("expires", editable=False)
    revoked_at = models.DateTimeField("revoked", null=True, blank=True, editable=False)

    objects = ShareManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="share_owner_created")]

    def __str__(self) -> str:
        return f"shared link #{self.pk} of {self.study_uid}"

    @property
    def credential(self) -> str:
        """How audit rows name accesses through this share."""
        return f"share:{self.pk}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.is_expired else "active"
