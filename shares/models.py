"""A shared link: one study, read-only, until it expires or is revoked."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.db import models

from accounts.models import IssuedSecret, IssuedSecretManager, RevocationRow
from audit.models import Action

# The link's fragment (`/share/#pacsshare_...`) holds the secret, so it reaches no
# server log or Referer.
SHARE_PREFIX = "pacsshare_"
SHARE_NOTE_LENGTH = 200


class ShareManager(IssuedSecretManager["Share"]):
    def issue(
        self, owner: User, study_uid: str, days: int, note: str = "", allow_download: bool = False
    ) -> tuple[Share, str]:
        return self.issue_secret(
            days, owner=owner, study_uid=study_uid, note=note, allow_download=allow_download
        )

    def created_since(self, owner: User, since: datetime) -> int:
        return self.filter(owner=owner, created_at__gte=since).count()


class Share(IssuedSecret):
    """A link that opens one study, read-only, until it expires or is revoked."""

    PREFIX = SHARE_PREFIX
    REVOKED = Action.SHARE_REVOKED
    OWNER = "owner"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="shares", editable=False)
    study_uid = models.CharField("Study Instance UID", max_length=64, editable=False)
    note = models.CharField(
        max_length=SHARE_NOTE_LENGTH, blank=True, editable=False, help_text="who it is for"
    )
    allow_download = models.BooleanField(
        default=False, editable=False, help_text="whole studies, series and instances, not only the viewer"
    )

    objects = ShareManager()

    class Meta(IssuedSecret.Meta):
        indexes = [models.Index(fields=["owner", "-created_at"], name="share_owner_created")]

    def __str__(self) -> str:
        return f"shared link #{self.pk} of {self.study_uid}"

    @property
    def credential(self) -> str:
        """How audit rows name accesses through this share."""
        return f"share:{self.pk}"

    def revocation_row(self) -> RevocationRow:
        return {
            "study_uid": self.study_uid,
            "detail": f"shared link #{self.pk} of {self.owner.get_username()}",
        }
