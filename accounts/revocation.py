"""Access that ends through the portal ends in nginx's decision cache at once.

nginx reuses a decision for a few seconds (NGINX_DECISION_SECONDS,
NGINX_API_DECISION_SECONDS). Whenever something that a decision was made
from changes through the portal (a logout, a lockout, a token revoked or
deleted, a user's password, active flag, groups or permissions, a role's
permissions), every cached decision is removed once the change is committed,
so the next request is decided afresh. What that leaves (a change made around
the portal sends no signal; each worker's permission cache runs out on its own)
is bounded in the revocation table, core/revocation_table.py, which README quotes.

The portal learns where nginx keeps its decisions from NGINX_DECISION_CACHE_DIR:
`manage.py serve` sets it for gunicorn, compose for the web container, and a
management command run beside `manage.py serve` finds serve's own
(settings.py). Without it nothing is removed, and settings.py does not let API
clients' decisions be reused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
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
from core.ttlcache import TTLCache

logger = logging.getLogger(__name__)

# A decision made from the old state may still be on its way to nginx when the
# change commits, and be stored after the first sweep. Decisions that took
# longer than core.revocation_table.FRESH_DECISION_SECONDS are never reused, so a second
# sweep this long after the last change removes any such straggler. (logout()
# flushes the session just after its signal: the second sweep covers that too.)
SECOND_SWEEP_SECONDS = 1.0
# A lockout is announced again on every attempt while it lasts (django-axes):
# it is swept for once per this long, so failed attempts cannot empty the cache
# on every request. After the first sweep new decisions refuse the locked pair.
LOCKOUT_SWEEP_SECONDS = 60.0
MAX_SWEPT_LOCKOUTS = 10_000
M2M_CHANGES = frozenset({"post_add", "post_remove", "post_clear"})
# What a login saves: nothing a decision depends on.
LOGIN_FIELDS = frozenset({"last_login"})
# A cached decision's file: the MD5 of its key, in hex. nginx's temporary files
# (a counter, being written) are left to it.
DECISION_FILE = re.compile(r"[0-9a-f]{32}")


class SecondSweep:
    """One pending second sweep per process, however many changes come meanwhile."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.due = 0.0
        self.timer: threading.Timer | None = None

    def schedule(self, directory: Path) -> None:
        with self.lock:
            self.due = time.monotonic() + SECOND_SWEEP_SECONDS
            if self.timer is None:
                self.start(directory, SECOND_SWEEP_SECONDS)

    def start(self, directory: Path, delay: float) -> None:
        # Not a daemon: a management command that changed access waits for it before exiting.
        self.timer = threading.Timer(delay, self.run, [directory])
        self.timer.start()

    def run(self, directory: Path) -> None:
        with self.lock:
            wait = self.due - time.monotonic()
            if wait > 0:  # a later change moved it
                self.start(directory, wait)
                return
            self.timer = None
        sweep(directory, again=False)


second_sweep = SecondSweep()
# (username, address) pairs whose lockout was swept for, each for LOCKOUT_SWEEP_SECONDS.
lockouts_swept: TTLCache[bool] = TTLCache(MAX_SWEPT_LOCKOUTS, LOCKOUT_SWEEP_SECONDS)


def forget_decisions() -> None:
    """Empty nginx's decision cache once the current transaction commits (at once outside one)."""
    directory = settings.NGINX_DECISION_CACHE_DIR
    if directory:
        transaction.on_commit(lambda: sweep(Path(directory)))


def forget_cached(directory: Path) -> int:
    """Remove every decision nginx has cached in `directory` (flat); how many were removed.

    nginx takes a cached entry whose file is gone for a miss and asks Django
    again (tests/test_front.py shows it), which costs each active client one
    decision more. A missing directory raises: the portal was pointed at the
    wrong place, and nothing would ever be revoked there.
    """
    removed = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if DECISION_FILE.fullmatch(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def sweep(directory: Path, again: bool = True) -> None:
    try:
        removed = forget_cached(directory)
    except OSError as error:
        # The change itself stands; reuse then ends with the cache lifetime, at most 5 s.
        logger.error(
            "could not empty nginx's decision cache %s (NGINX_DECISION_CACHE_DIR): %s", directory, error
        )
        return
    logger.info("access changed: %d cached decision(s) forgotten", removed)
    if again:
        second_sweep.schedule(directory)


def on_user_saved(sender: Any, created: bool, update_fields: frozenset[str] | None, **kwargs: Any) -> None:
    if created or (update_fields is not None and set(update_fields) <= LOGIN_FIELDS):
        return
    forget_decisions()


def on_changed(sender: Any, **kwargs: Any) -> None:
    forget_decisions()


def on_logged_out(sender: Any, user: Any = None, **kwargs: Any) -> None:
    if user is not None:  # an anonymous visitor (a share's) had nothing to end
        forget_decisions()


def on_locked_out(
    sender: Any, username: str | None = None, ip_address: str | None = None, **kwargs: Any
) -> None:
    pair = (username or "", ip_address or "")
    # Two threads meeting the same new lockout may both sweep: one sweep too many is harmless.
    if lockouts_swept.get(pair):
        return
    lockouts_swept.set(pair, True)
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
    user_logged_out.connect(on_logged_out, dispatch_uid="revocation-logout")
    user_locked_out.connect(on_locked_out, dispatch_uid="revocation-lockout")
