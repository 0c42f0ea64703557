"""Access that ends through the portal ends in nginx's decision cache at once.

nginx reuses a decision for a few seconds (NGINX_DECISION_SECONDS,
NGINX_API_DECISION_SECONDS). Whenever something that a decision was made
from changes through the portal (a logout, a lockout, a token revoked or
deleted, a user's password, active flag, groups or permissions, a role's
permissions), every cached decision is removed once the change is committed,
so the next request is decided afresh. A change made around the portal (SQL
run by hand, `QuerySet.update` in a shell) sends no signal and waits out the
cache lifetime instead; README says so.

The portal learns where nginx keeps its decisions from NGINX_DECISION_CACHE_DIR,
which `manage.py serve` sets for gunicorn. Without it nothing is removed, and
settings.py does not let API clients' decisions be reused.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from pathlib import Path
from typing import Any

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from accounts.models import AccessToken

logger = logging.getLogger(__name__)

# A decision made from the old state may still be on its way to nginx when the
# change commits, and be stored after the first sweep. Decisions that took
# longer than proxy.views.FRESH_DECISION_SECONDS are never reused, so a second
# sweep this long after the first removes any such straggler.
SECOND_SWEEP_SECONDS = 1.0
M2M_CHANGES = frozenset({"post_add", "post_remove", "post_clear"})
# What a login saves: nothing a decision depends on.
LOGIN_FIELDS = frozenset({"last_login"})
# A cached decision's file: the MD5 of its key, in hex. nginx's temporary files
# (a counter, being written) are left to it.
DECISION_FILE = re.compile(r"[0-9a-f]{32}")


def forget_decisions() -> None:
    """Empty nginx's decision cache once the current transaction commits (at once outside one)."""
    directory = settings.NGINX_DECISION_CACHE_DIR
    if directory:
        transaction.on_commit(lambda: sweep(Path(directory)))


def forget_cached(directory: Path) -> int:
    """Remove every decision nginx has cached in `directory`; how many were removed.

    nginx takes a cached entry whose file is gone for a miss and asks Django
    again (tests/test_front.py shows it), which costs each active client one
    decision more.
    """
    removed = 0
    for path in directory.rglob("*"):
        if DECISION_FILE.fullmatch(path.name):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def sweep(directory: Path, again: bool = True) -> None:
    try:
        removed = forget_cached(directory)
    except OSError as error:
        # The change itself stands; reuse then ends with the cache lifetime, at most 5 s.
        logger.error("could not empty nginx's decision cache %s: %s", directory, error)
        return
    logger.info("access changed: %d cached decision(s) forgotten", removed)
    if again:
        # Not a daemon: a management command that changed access waits for it before exiting.
        threading.Timer(SECOND_SWEEP_SECONDS, sweep, [directory, False]).start()


def on_user_saved(sender: Any, created: bool, update_fields: frozenset[str] | None, **kwargs: Any) -> None:
    if created or (update_fields is not None and set(update_fields) <= LOGIN_FIELDS):
        return
    forget_decisions()


def on_changed(sender: Any, **kwargs: Any) -> None:
    forget_decisions()


def on_membership_changed(sender: Any, action: str, **kwargs: Any) -> None:
    if action in M2M_CHANGES:
        forget_decisions()


def connect() -> None:
    """Called once, from AccountsConfig.ready."""
    user = get_user_model()
    post_save.connect(on_user_saved, sender=user, dispatch_uid="revocation-user-saved")
    post_delete.connect(on_changed, sender=user, dispatch_uid="revocation-user-deleted")
    post_save.connect(on_changed, sender=Group, dispatch_uid="revocation-group-saved")
    post_delete.connect(on_changed, sender=Group, dispatch_uid="revocation-group-deleted")
    post_delete.connect(on_changed, sender=AccessToken, dispatch_uid="revocation-token-deleted")
    for through in (user.groups.through, user.user_permissions.through, Group.permissions.through):
        m2m_changed.connect(on_membership_changed, sender=through, dispatch_uid=f"revocation-{through}")
    user_logged_out.connect(on_changed, dispatch_uid="revocation-logout")
    user_locked_out.connect(on_changed, dispatch_uid="revocation-lockout")
