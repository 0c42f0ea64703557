"""The one permission check the portal's doors and pages share.

A viewer opening a study makes hundreds of requests; loading the user's group
permissions for each one was 30% of a frame request's time (measured with
py-spy, docs/performance.md). So each user's permission set is cached for
PERMISSION_TTL seconds: group changes reach open sessions within that time;
deactivating a user or logging out takes effect at once. The home page and
the viewer's config use the same check, so they never disagree with /pacs.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User

from core.ttlcache import TTLCache

PERMISSION_TTL = 10.0
MAX_CACHED_USERS = 10_000
_permissions: TTLCache[frozenset[str]] = TTLCache(MAX_CACHED_USERS, PERMISSION_TTL)


def has_perm(user: User | AnonymousUser, permission: str) -> bool:
    """user.has_perm, with the user's permission set cached for PERMISSION_TTL seconds."""
    if not user.is_active:
        return False
    if getattr(user, "is_superuser", False):
        return True
    # date_joined too: a rolled-back test database (or a restored backup) can
    # give a new user the id of an old one, who must not lend them permissions.
    key = (user.pk, getattr(user, "date_joined", None))
    cached = _permissions.get(key)
    if cached is None:
        cached = frozenset(user.get_all_permissions())
        _permissions.set(key, cached)
    return permission in cached
