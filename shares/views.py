"""Shared links' pages: an owner's (create, the link shown once, list, revoke) and a
visitor's (the link's landing page, the exchange of its secret for a visit, the end)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from accounts.views import revoke_own
from audit.models import Action, AuditEvent
from core.authenticated import AuthenticatedRequest
from core.clientip import client_ip
from orthanc import lookups
from shares import links
from shares.forms import ShareForm
from shares.middleware import share_visitors_allowed
from shares.models import Share

# Failed opens one address may make in OPEN_WINDOW before all its attempts are refused
# for OPEN_WINDOW. A person whose link is cut short or revoked tries it a few times;
# a guesser gets OPEN_FAILURES + 1 audit rows per window, not one per guess (256-bit
# secrets are not guessed: the limit keeps the audit trail readable and the database calm).
OPEN_FAILURES = 10
OPEN_WINDOW = timedelta(minutes=5)
THROTTLED = 429


def require_share_role(request: AuthenticatedRequest) -> None:
    if not links.can_share(request.user):
        raise PermissionDenied("your role does not allow sharing studies")


def no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store, private"
    return response


@never_cache
@require_safe
def share_list(request: AuthenticatedRequest) -> HttpResponse:
    require_share_role(request)
    context = {"shares": Share.objects.filter(owner=request.user), "per_hour": settings.SHARE_CREATE_PER_HOUR}
    return render(request, "shares/list.html", context)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def share_new(request: AuthenticatedRequest) -> HttpResponse:
    """The form for one study (the home page's "Share" links here); on success, the link, once."""
    require_share_role(request)
    if request.method != "POST":
        form = ShareForm(initial={"study": request.GET.get("study", "")})
        return render(request, "shares/new.html", {"form": form})
    form = ShareForm(request.POST)
    if not form.is_valid():
        return render(request, "shares/new.html", {"form": form}, status=400)
    if links.created_in_the_last_hour(request.user) >= settings.SHARE_CREATE_PER_HOUR:
        form.add_error(
            None,
            f"You have created {settings.SHARE_CREATE_PER_HOUR} links in the last hour; try again later.",
        )
        return render(request, "shares/new.html", {"form": form}, status=429)
    study_uid = form.cleaned_data["study"]
    try:
        found = lookups.by_uid("studies", study_uid)
    except lookups.LookupFailed:
        form.add_error(None, "The archive is not reachable right now; try again in a moment.")
        return render(request, "shares/new.html", {"form": form}, status=503)
    if len(found) != 1:
        form.add_error("study", "The archive holds no such study (or holds it under two patients).")
        return render(request, "shares/new.html", {"form": form}, status=400)
    share, secret = links.create(
        request,
        study_uid,
        found[0].patient_id,
        form.cleaned_data["days"],
        form.cleaned_data["note"],
        form.cleaned_data["allow_download"],
    )
    # Answered, not redirected: the secret exists in this one response only. In
    # the fragment, the browser never sends it to a server, a log or a Referer.
    link = request.build_absolute_uri(reverse("share")) + "#" + secret
    return render(request, "shares/created.html", {"share": share, "link": link}, status=201)


@require_POST
def share_revoke(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    require_share_role(request)
    return revoke_own(request, Share, pk, "shares")


def viewer_on(share: Share) -> str:
    """OHIF's viewer route on the shared study."""
    return reverse("viewer-viewer") + "?" + urlencode({"StudyInstanceUIDs": share.study_uid})


def visit_page(request: HttpRequest, template: str, context: dict[str, object], status: int) -> HttpResponse:
    return no_store(render(request, template, {"visitor": True, **context}, status=status))


@login_not_required
@share_visitors_allowed(decides_itself=True)
@never_cache
@require_safe
def share_landing(request: HttpRequest) -> HttpResponse:
    """Where a link points: shares/static/portal/share.js posts the fragment's secret once."""
    return visit_page(request, "shares/landing.html", {}, 200)


@dataclass(frozen=True)
class OpenThrottle:
    """Whether an address is refused the links it tries, for how many seconds more, and whether
    this refusal starts a throttled window (the one refusal of the window recorded)."""

    refused: bool
    retry_after: int = 0
    starts: bool = False


def open_throttle(failures: int, throttled_at: datetime | None, now: datetime) -> OpenThrottle:
    """The decision for an address with `failures` failed opens in the last OPEN_WINDOW, whose
    throttled window, if one started in the last OPEN_WINDOW, started at `throttled_at`."""
    if throttled_at is not None and now < throttled_at + OPEN_WINDOW:
        remaining = (throttled_at + OPEN_WINDOW - now).total_seconds()
        return OpenThrottle(refused=True, retry_after=max(1, math.ceil(remaining)))
    if failures >= OPEN_FAILURES:
        return OpenThrottle(refused=True, retry_after=int(OPEN_WINDOW.total_seconds()), starts=True)
    return OpenThrottle(refused=False)


def recent_opens(address: str | None, now: datetime) -> tuple[int, datetime | None]:
    """The address's failed opens in the last OPEN_WINDOW, and when its latest throttled window began.

    Read from the audit rows every worker writes to the one database: a count kept
    in a worker's memory (Django's default cache) would give each worker its own
    allowance, and django-axes would count guesses as failed logins.
    """
    found = AuditEvent.objects.filter(
        action=Action.SHARE_OPENED, success=False, client_ip=address, action_time__gt=now - OPEN_WINDOW
    ).aggregate(
        failures=Count("id", filter=~Q(status=THROTTLED)),
        throttled_at=Max("action_time", filter=Q(status=THROTTLED)),
    )
    return found["failures"], found["throttled_at"]


def throttled(request: HttpRequest, throttle: OpenThrottle, failures: int, now: datetime) -> HttpResponse:
    """The refusal page with its Retry-After; the window's first refusal is recorded, the others not."""
    if throttle.starts:
        window, until = int(OPEN_WINDOW.total_seconds()) // 60, now + OPEN_WINDOW
        links.record_open(
            request,
            None,
            THROTTLED,
            problem=(
                f"throttled after {failures} failed attempts in {window} minutes: every attempt "
                f"from this address refused, and not recorded, until {until:%Y-%m-%d %H:%M:%S} UTC"
            ),
        )
    minutes = math.ceil(throttle.retry_after / 60)
    reason = (
        "Too many attempts to open shared links were made from your address. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )
    response = visit_page(request, "shares/ended.html", {"reason": reason, "throttled": True}, THROTTLED)
    response["Retry-After"] = str(throttle.retry_after)
    return response


@login_not_required
@share_visitors_allowed(decides_itself=True)
@never_cache
@require_POST
def share_open(request: HttpRequest) -> HttpResponse:
    """The secret for a visit: a fresh session holding the share, then the viewer on its study.

    Checked before the secret is even read: a throttled address is refused the right
    secret too, else its guessing would go on.
    """
    now = timezone.now()
    failures, throttled_at = recent_opens(client_ip(request), now)
    throttle = open_throttle(failures, throttled_at, now)
    if throttle.refused:
        return throttled(request, throttle, failures, now)
    secret = request.POST.get("secret", "").strip()
    share = Share.objects.for_secret(secret)
    problem, _ = links.problem_with(share)
    status = 404 if share is None else 410
    patient_id = ""
    if not problem and share is not None:
        try:
            found = lookups.by_uid("studies", share.study_uid)
        except lookups.LookupFailed:
            return visit_page(
                request, "shares/ended.html", {"reason": "The archive is not reachable; try again."}, 503
            )
        if len(found) != 1:
            problem, status = links.STUDY_GONE, 404
        else:
            patient_id = found[0].patient_id
    if problem:
        links.record_open(request, share, status, problem=problem)
        return visit_page(request, "shares/ended.html", {"reason": problem}, status)
    assert share is not None
    links.start_visit(request, share)
    links.record_open(request, share, 302, patient_id=patient_id)
    return redirect(viewer_on(share))


@login_not_required
@share_visitors_allowed(decides_itself=True)
@never_cache
@require_safe
def share_ended(request: HttpRequest) -> HttpResponse:
    """Where the viewer sends a visitor whose /pacs requests are refused: the reason, in words."""
    visit = links.visit_of(request)
    if visit is not None and not visit.ended and visit.share is not None:
        return redirect(viewer_on(visit.share))
    reason = visit.ended if visit is not None else links.VISIT_OVER
    return visit_page(request, "shares/ended.html", {"reason": reason}, 410 if visit is not None else 200)
