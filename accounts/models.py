from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from datetime import timedelta
from typing import Any, ClassVar, TypedDict, TypeVar

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import connections, models, router, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.permissions import has_perm
from audit.models import Action, AuditEvent
from core import roles


class PortalPermission(models.Model):
    """Anchor for the portal's custom permissions; holds no rows.

    Roles are Django groups (created by migration 0002) holding these
    permissions, so a site can also grant them to single users in Django admin.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("read_studies", "Read studies through /pacs (QIDO-RS, WADO-RS, WADO-URI)"),
            ("store_studies", "Store studies through /pacs (STOW-RS)"),
            ("administer_pacs", "Use Orthanc Explorer and REST API through /pacs-admin"),
            ("read_audit", "Read and export the audit log"),
            ("share_studies", "Share one study through an expiring link"),
        ]

    def __str__(self) -> str:
        return "portal permission"


# Secret scanners (GitHub's, gitleaks, trufflehog) find leaked secrets by their
# shape: a prefix and 43 base62 characters (256 bits), `pacs_[0-9A-Za-z]{43}` for a token.
SECRET_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 43
TOKEN_PREFIX = "pacs_"  # noqa: S105 (a prefix, not a secret)
# The audit row's credential is "token:<name>" and holds 64 characters.
TOKEN_NAME_LENGTH = 50
# last_used_at and last_used_ip are written at most this often per token.
TOKEN_TOUCH_SECONDS = 60


def digest_of(secret: str) -> str:
    """SHA-256 of the secret: 256 random bits need no slow hash to resist guessing."""
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX)


Issued = TypeVar("Issued", bound="IssuedSecret")


class RevocationRow(TypedDict, total=False):
    """What a revocation's audit row says of what was revoked."""

    study_uid: str
    detail: str


class IssuedSecretManager(models.Manager[Issued]):
    def issue_secret(self, days: int, **fields: Any) -> tuple[Issued, str]:
        """A new one valid for `days`, and its secret: never stored, only its digest."""
        secret = self.model.PREFIX + "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
        issued = self.create(
            digest=digest_of(secret), expires_at=timezone.now() + timedelta(days=days), **fields
        )
        return issued, secret

    def for_secret(self, secret: str) -> Issued | None:
        """The one with this secret, by its indexed digest, revoked and expired ones included.

        A plain SELECT, as the session and user loads (accounts/fastauth.py): an
        API client's every request runs it.
        """
        if not self.model.is_shaped_like(secret):
            return None
        digest = digest_of(secret)
        quote = connections[router.db_for_read(self.model)].ops.quote_name
        table, column = quote(self.model._meta.db_table), quote("digest")
        sql = f"SELECT * FROM {table} WHERE {column} = %s"  # noqa: S608
        found = list(self.raw(sql, [digest]))
        # Found through the index; compared again in constant time all the same.
        if len(found) != 1 or not hmac.compare_digest(found[0].digest, digest):
            return None
        return found[0]


class IssuedSecret(models.Model):
    """What access tokens and shared links have in common: a secret shown once, of which only
    the digest is kept, an expiry, and a revocation that is audited."""

    PREFIX: ClassVar[str]
    REVOKED: ClassVar[Action]
    OWNER: ClassVar[str]  # the field naming whose it is

    digest = models.CharField("SHA-256 of the secret", max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField("created", default=timezone.now, editable=False)
    expires_at = models.DateTimeField("expires", editable=False)
    revoked_at = models.DateTimeField("revoked", null=True, blank=True, editable=False)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    @classmethod
    def is_shaped_like(cls, value: str) -> bool:
        return value.startswith(cls.PREFIX) and len(value) == len(cls.PREFIX) + SECRET_LENGTH

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.is_expired else "active"

    def revoke(self, request: HttpRequest) -> bool:
        """Revoke it (by its owner, or an admin) and record who did, in one transaction;
        False if it already was."""
        with transaction.atomic():
            revoked = (
                type(self)
                ._default_manager.filter(pk=self.pk, revoked_at__isnull=True)
                .update(revoked_at=timezone.now())
            )
            if revoked:
                AuditEvent.objects.record(
                    self.REVOKED, request=request, credential="session", status=200, **self.revocation_row()
                )
        return bool(revoked)

    def revocation_row(self) -> RevocationRow:
        """What the audit row of its revocation says of it."""
        raise NotImplementedError


class TokenScope(models.TextChoices):
    READ = "read", "read studies"
    STORE = "store", "read and store studies"
    ADMIN = "admin", "read, store and administer the PACS"


# What each scope may do at most; a token can do what its scope and its owner's
# roles, at the time of use, both allow.
SCOPE_PERMISSIONS: dict[str, frozenset[str]] = {
    TokenScope.READ: frozenset({roles.READ_STUDIES}),
    TokenScope.STORE: frozenset({roles.READ_STUDIES, roles.STORE_STUDIES}),
    TokenScope.ADMIN: frozenset({roles.READ_STUDIES, roles.STORE_STUDIES, roles.ADMINISTER_PACS}),
}


def scopes_for(user: User | AnonymousUser) -> list[TokenScope]:
    """The scopes a user may give a new token: those within their roles."""
    return [
        scope
        for scope in TokenScope
        if all(has_perm(user, permission) for permission in SCOPE_PERMISSIONS[scope])
    ]


class AccessTokenManager(IssuedSecretManager["AccessToken"]):
    def issue(self, user: User, name: str, scope: str, days: int) -> tuple[AccessToken, str]:
        return self.issue_secret(days, user=user, name=name, scope=scope)


class AccessToken(IssuedSecret):
    """A personal access token for API clients: Bearer, or the password of HTTP Basic."""

    PREFIX = TOKEN_PREFIX
    REVOKED = Action.TOKEN_REVOKED
    OWNER = "user"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="access_tokens", editable=False
    )
    name = models.CharField(max_length=TOKEN_NAME_LENGTH, editable=False)
    scope = models.CharField(max_length=10, choices=TokenScope.choices, editable=False)
    last_used_at = models.DateTimeField("last used", null=True, blank=True, editable=False)
    last_used_ip = models.GenericIPAddressField("last address", null=True, blank=True, editable=False)

    objects = AccessTokenManager()

    class Meta(IssuedSecret.Meta):
        constraints = [
            # A name names one live token at a time, so "token:<name>" in an
            # audit row points at one token (the one live at the row's time).
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=models.Q(revoked_at__isnull=True),
                name="access_token_live_name",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.user_id})"

    @property
    def credential(self) -> str:
        """How audit rows name this token."""
        return f"token:{self.name}"

    @property
    def permissions(self) -> frozenset[str]:
        return SCOPE_PERMISSIONS.get(self.scope, frozenset())

    def revoke(self, request: HttpRequest) -> bool:
        revoked = super().revoke(request)
        if revoked:
            # Imported here: accounts.revocation imports this module. (A share's decisions are never
            # cached by nginx: only a token's need forgetting.)
            from accounts import revocation

            revocation.forget_decisions()
        return revoked

    def revocation_row(self) -> RevocationRow:
        return {"detail": f"{self.credential} of {self.user.get_username()}, scope {self.scope}"}

    def touch(self, address: str | None) -> None:
        """Record a use, at most once per TOKEN_TOUCH_SECONDS (across workers too:
        the UPDATE matches nothing when another worker has just written)."""
        now = timezone.now()
        threshold = now - timedelta(seconds=TOKEN_TOUCH_SECONDS)
        if self.last_used_at is not None and self.last_used_at > threshold:
            return
        AccessToken.objects.filter(
            models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lte=threshold), pk=self.pk
        ).update(last_used_at=now, last_used_ip=address)
        self.last_used_at, self.last_used_ip = now, address
