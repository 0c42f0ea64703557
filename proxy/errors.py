"""Short error answers from the proxy: JSON for API clients, HTML for people."""

from __future__ import annotations

import logging

import urllib3
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape

logger = logging.getLogger("proxy")


def wants_html(request: HttpRequest) -> bool:
    accept = request.META.get("HTTP_ACCEPT", "")
    return "text/html" in accept and "json" not in accept


def response(request: HttpRequest, status: int, message: str) -> HttpResponse:
    if wants_html(request):
        page = f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{escape(message)}</p>\n"
        answer: HttpResponse = HttpResponse(page, status=status, content_type="text/html; charset=utf-8")
    else:
        answer = JsonResponse({"error": message, "status": status}, status=status)
    answer["Cache-Control"] = "no-store, private"
    return answer


def unauthorized(request: HttpRequest, message: str) -> HttpResponse:
    answer = response(request, 401, message)
    # Browsers would pop a password dialog on WWW-Authenticate; OHIF must not.
    if "HTTP_SEC_FETCH_MODE" not in request.META and "HTTP_SEC_FETCH_SITE" not in request.META:
        answer["WWW-Authenticate"] = 'Basic realm="pacsportal", charset="UTF-8"'
    return answer


def forbidden(request: HttpRequest) -> HttpResponse:
    return response(request, 403, "your account may not do this")


def upstream_failure(request: HttpRequest, error: urllib3.exceptions.HTTPError) -> HttpResponse:
    """Orthanc down is a 502, Orthanc too slow a 504, no free connection a 503."""
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    if isinstance(error, urllib3.exceptions.EmptyPoolError):
        logger.warning("no free connection to Orthanc: %s", error)
        return response(request, 503, "the archive is busy; try again")
    if isinstance(error, urllib3.exceptions.ReadTimeoutError):
        logger.warning("Orthanc timed out: %s", error)
        return response(request, 504, "the archive did not answer in time")
    logger.error("Orthanc unreachable: %s", error)
    return response(request, 502, "the archive is not reachable")
