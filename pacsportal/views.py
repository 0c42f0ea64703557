"""Portal pages: home, health, and the error page."""

from __future__ import annotations

import sys

import urllib3
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.db.utils import Error as DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from accounts.permissions import has_perm
from audit.models import Action, AuditEvent
from core import roles
from orthanc import client

RECENT_STUDIES = 10


@require_safe
@never_cache
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    context: dict[str, object] = {
        "can_read": has_perm(user, roles.READ_STUDIES),
        "can_administer_pacs": has_perm(user, roles.ADMINISTER_PACS),
        "can_read_audit": has_perm(user, roles.READ_AUDIT),
        "can_share": has_perm(user, roles.SHARE_STUDIES),
    }
    if context["can_read"]:
        context["recent"], context["archive_down"] = recent_studies(request)
    return render(request, "home.html", context)


def recent_studies(request: HttpRequest) -> tuple[list[dict[str, str]], bool]:
    """The newest studies by study date and time (orthanc/client.py asks each Orthanc
    generation its own way); listing patients is PHI access, so it is audited."""
    try:
        studies = client.recent_studies(RECENT_STUDIES)
    except (client.OrthancError, urllib3.exceptions.HTTPError, ValueError):  # ValueError: not JSON
        return [], True
    # One row per study listed (bucketed, as every read): "who saw patient X"
    # must find the home page's list too.
    for study in studies:
        AuditEvent.objects.record(
            Action.QUERY,
            request=request,
            credential="session",
            patient_id=study["patient_id"],
            study_uid=study["uid"],
            detail="portal home: recent studies",
            bucketed=True,
        )
    return studies, False


def database_is_up() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


@login_not_required
@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and compose: names what is down, nothing more."""
    checks = {
        "database": "ok" if database_is_up() else "down",
        "orthanc": "ok" if client.is_up() else "down",
    }
    healthy = all(state == "ok" for state in checks.values())
    return JsonResponse({"status": "ok" if healthy else "down", **checks}, status=200 if healthy else 503)


def server_error(request: HttpRequest) -> HttpResponse:
    """500, or 503 when the database is what failed: the portal is up, its storage is not."""
    if isinstance(sys.exc_info()[1], DatabaseError):
        return HttpResponse(
            '<!doctype html><html lang="en"><title>503</title><h1>Service unavailable</h1>'
            "<p>The portal cannot reach its database. Try again in a moment.</p>\n",
            status=503,
        )
    return HttpResponse(
        '<!doctype html><html lang="en"><title>500</title><h1>Server error</h1>\n', status=500
    )
