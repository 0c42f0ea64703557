"""The revocation table: when access that has ended stops working, and why.

Two tables in one place. CACHES lists every cache a worker keeps across
requests (each a core.ttlcache.TTLCache) and nginx's decision cache, with its
lifetime (MEMOS, the few functions memoised for good, hold nothing that
ends). CHANGES lists each change that ends or narrows access, what the portal
clears when it happens, and the bound on how long old access can last: the sum
of the lifetimes it names, or the next request when it names none.

README quotes `markdown()` (tests/test_revocation_table.py checks it, and that
every cache named here exists with the lifetime given); the HTTP tests each row
names take their time limits from `bound()`, through the live portal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# The lifetimes bounds are made of, with their defaults in seconds.
NGINX_DECISION_SECONDS = "NGINX_DECISION_SECONDS"
PERMISSION_TTL = "PERMISSION_TTL"
# (API clients' NGINX_API_DECISION_SECONDS is never more than NGINX_DECISION_SECONDS: settings.py.)
DEFAULTS = {NGINX_DECISION_SECONDS: 5.0, PERMISSION_TTL: 10.0}

# A decision slower than this is never reused by nginx: one made from state that changed
# meanwhile could otherwise reach nginx's cache after accounts.revocation's sweeps.
FRESH_DECISION_SECONDS = 0.5


def nginx_cache_seconds(seconds: float) -> int:
    """What to ask nginx for so that it reuses a decision at most `seconds`: nginx keeps
    an entry up to a second longer than asked. The one place the reuse time is reckoned:
    the rendered config's proxy_cache_valid (pacsportal/front.py) and each decision's
    X-Accel-Expires (proxy/nginx.py) both use it."""
    return max(int(seconds) - 1, 0)


@dataclass(frozen=True)
class Cache:
    """One cache: where it lives (a module attribute path, or nginx), what it holds, how long."""

    where: str
    holds: str
    lifetime: str  # the setting or constant, and its default
    default_seconds: float | None = None  # what `where` gives a new entry; None: each entry its own


@dataclass(frozen=True)
class Change:
    """A change that ends access, what the portal clears, and how long old access can last."""

    change: str
    clears: str
    bound: tuple[str, ...]  # lifetimes summed; () is the next request
    tests: tuple[str, ...]  # the HTTP tests that assert the bound (file::test[id])


CACHES = (
    Cache(
        "nginx's decision cache (tmpfs)",
        "decisions on reads, per credential, address, minute and study",
        "NGINX_DECISION_SECONDS (5 s); API clients NGINX_API_DECISION_SECONDS (5 s); visitors 0",
    ),
    Cache("accounts.permissions._permissions", "each user's permission set", "PERMISSION_TTL (10 s)", 10.0),
    Cache(
        "accounts.authentication.remembered_passwords.entries",
        "Basic pairs checked, bound to the password hash",
        "BASIC_AUTH_CACHE_SECONDS (300 s)",
        300.0,
    ),
    Cache(
        "accounts.revocation.lockouts_swept",
        "lockouts already swept for",
        "LOCKOUT_SWEEP_SECONDS (60 s)",
        60.0,
    ),
    Cache("orthanc.lookups._by_id", "Orthanc id -> resource", "ORTHANC_LOOKUP_TTL (30 s)", 30.0),
    Cache("orthanc.lookups._by_uid", "DICOM UID -> resources", "ORTHANC_LOOKUP_TTL (30 s)", 30.0),
    Cache("orthanc.lookups._in_series", "a listed series' instances", "ORTHANC_LOOKUP_TTL (30 s)", 30.0),
    Cache(
        "orthanc.client._recent_cache",
        "Orthanc's /system; the newest studies (Orthanc 1.10)",
        "SYSTEM_TTL (300 s); the newest studies RECENT_FALLBACK_TTL (60 s)",
        300.0,
    ),
    Cache(
        "audit.models._written_buckets",
        "audit buckets already written",
        "until the bucket ends (AUDIT_BUCKET_SECONDS)",
    ),
)


@dataclass(frozen=True)
class Memo:
    """A function memoised for the life of the process: nothing in it can end access."""

    where: str
    why: str


MEMOS = (
    Memo("orthanc.client._pool", "one connection pool per Orthanc URL, size and timeouts: no answers"),
    Memo("viewer.config.portal_script", "a file shipped with the code"),
    Memo("viewer.views.index_html", "OHIF's index.html, per pinned OHIF version"),
    Memo("viewer.views.viewer_policy", "the CSP built from that index.html, per version"),
)

# Tests asserting each bound; through nginx when make test runs them with PORTAL_TEST_DOOR=nginx.
FRONT = "tests/test_front.py::test_revocation_stops_reads_at_once_or_within_the_cache_lifetime"
TOKENS = "tests/test_live_tokens.py"
SESSIONS = "tests/test_live_sessions.py"
SHARES = "tests/test_live_shares.py"

CHANGES = (
    Change(
        "logout",
        "nginx's decisions (at commit, and again 1 s later)",
        (),
        (f"{FRONT}[logout]", f"{SESSIONS}::test_it_refuses_a_session_at_once_after_logout"),
    ),
    Change(
        "password changed",
        "nginx's decisions; a remembered Basic password no longer matches its hash",
        (),
        (
            f"{FRONT}[password-change]",
            f"{SESSIONS}::test_it_refuses_a_session_at_once_after[change_password]",
            f"{TOKENS}::test_it_ends_a_remembered_basic_password_at_once_after[change_password]",
        ),
    ),
    Change(
        "session expired (its age, or idle)",
        "nothing: nginx may reuse a decision made just before",
        (NGINX_DECISION_SECONDS,),
        (f"{SESSIONS}::test_it_refuses_a_session_at_once_after[expire_session]",),
    ),
    Change(
        "user deactivated (their sessions, tokens, Basic password, shared links)",
        "nginx's decisions; the user is loaded on every request",
        (),
        (
            f"{FRONT}[deactivate]",
            f"{TOKENS}::test_it_refuses_a_token_at_once_after[deactivate_owner]",
            f"{TOKENS}::test_it_ends_a_remembered_basic_password_at_once_after[deactivate]",
            f"{SHARES}::test_it_ends_a_visit_at_the_next_request_with_a_clear_page[deactivate_owner]",
        ),
    ),
    Change(
        "group or permission changed (a user's, or a role's)",
        "nginx's decisions; each worker's permission cache runs out",
        (PERMISSION_TTL, NGINX_DECISION_SECONDS),
        (f"{FRONT}[group-removal]",),
    ),
    Change(
        "access token revoked (page, admin) or deleted",
        "nginx's decisions; the token is loaded on every request",
        (),
        (
            "tests/test_front.py::test_api_decisions_are_reused_and_revocation_through_the_portal_ends_them_at_once",
            f"{TOKENS}::test_it_refuses_a_token_at_once_after[revoke_on_the_page]",
        ),
    ),
    Change(
        "access token expired",
        "nothing: nginx reuses a token's decision no longer than the token lives",
        (),
        (f"{TOKENS}::test_it_refuses_a_token_once_it_has_expired",),
    ),
    Change(
        "shared link revoked or expired",
        "nothing: a visitor's decisions are never reused, the link is loaded on every request",
        (),
        (
            f"{SHARES}::test_it_ends_a_visit_at_the_next_request_with_a_clear_page[revoke_on_the_page]",
            f"{SHARES}::test_it_ends_a_visit_at_the_next_request_with_a_clear_page[expire]",
        ),
    ),
    Change(
        "lockout (django-axes) of a Basic username or address",
        "nginx's decisions, once per username and address a minute; "
        "a remembered Basic password asks django-axes on every request",
        (),
        (f"{TOKENS}::test_it_still_locks_out_a_remembered_password_after_wrong_ones_and_audits_them",),
    ),
    Change(
        "a user, password or token changed around the portal (SQL by hand, `QuerySet.update`)",
        "nothing: no signal reaches the portal",
        (NGINX_DECISION_SECONDS,),
        (
            f"{FRONT}[deactivate-with-sql]",
            f"{SESSIONS}::test_it_refuses_a_session_at_once_after[deactivate]",
            "tests/test_front.py::test_api_decisions_changed_around_the_portal_end_with_the_cache_lifetime",
        ),
    ),
    Change(
        "study deleted in Orthanc",
        "nothing: Orthanc refuses its data itself; look-ups name it for "
        "ORTHANC_LOOKUP_TTL, the study map (orthanc/owners.py) for at most 5 s, the home page "
        "lists it for RECENT_FALLBACK_TTL (Orthanc 1.10)",
        (),
        ("tests/test_front.py::test_a_study_deleted_in_orthanc_is_served_no_more_at_the_next_request",),
    ),
)


def bound(change: str, lifetimes: Mapping[str, float] = DEFAULTS) -> float:
    """The longest old access can last after `change`, in seconds (0: the next request)."""
    (row,) = [row for row in CHANGES if row.change == change]
    return sum(lifetimes[name] for name in row.bound)


def markdown() -> str:
    """Both tables as README quotes them."""
    caches = ["| cache | holds | lifetime |", "|---|---|---|"]
    for cache in CACHES:
        where = cache.where if " " in cache.where else f"`{cache.where}`"
        caches.append(f"| {where} | {cache.holds} | {cache.lifetime} |")
    changes = ["| change | cleared | old access lasts at most |", "|---|---|---|"]
    for row in CHANGES:
        lasts = " + ".join(f"{name} ({DEFAULTS[name]:g} s)" for name in row.bound) or "until the next request"
        changes.append(f"| {row.change} | {row.clears} | {lasts} |")
    return "\n".join([*caches, "", *changes]) + "\n"
