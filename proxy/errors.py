"""Short error answers from the proxy: JSON for API clients, HTML for people."""

from __future__ import annotations

import json
import logging
import re

import urllib3
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape

logger = logging.getLogger("proxy")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class IncompleteBody(Exception):
    """The client sent less of a body than it announced."""


def is_navigation(request: HttpRequest) -> bool:
    """A browser loading a page (worth a redirect to the log-in page), not an API client.

    Browsers say so with Sec-Fetch-Mode (to secure origins only); over plain HTTP they
    send Upgrade-Insecure-Requests on every navigation. Accept alone cannot tell: API
    clients (httplib2, Java's URLConnection) accept text/html too, and need the 401's
    challenge before they send their credential.
    """
    mode = request.META.get("HTTP_SEC_FETCH_MODE")
    if mode is not None:
        return mode == "navigate"
    return request.META.get("HTTP_UPGRADE_INSECURE_REQUESTS") == "1" and wants_html(request)


def wants_html(request: HttpRequest) -> bool:
    accept = request.META.get("HTTP_ACCEPT", "")
    return "text/html" in accept and "json" not in accept


def response(request: HttpRequest, status: int, message: str) -> HttpResponse:
    # Printable only: nginx's door carries the worded answer in a header (proxy/nginx.py),
    # where a control character would be refused, and a reason may quote the client's bytes.
    message = CONTROL_CHARACTERS.sub(" ", message)
    if wants_html(request):
        head = f'<!doctype html><html lang="en"><title>{status}</title>'
        page = f"{head}<h1>{status}</h1><p>{escape(message)}</p>\n"
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


def refusal(request: HttpRequest, status: int, reason: str, allow: str = "") -> HttpResponse:
    """A decision's refusal, as both doors answer it (nginx's from this answer's headers)."""
    if status == 401:
        return unauthorized(request, reason)
    answer = response(request, status, reason)
    if allow:
        answer["Allow"] = allow
    return answer


def upstream_failure(request: HttpRequest, error: urllib3.exceptions.HTTPError) -> HttpResponse:
    """Orthanc down is a 502, Orthanc too slow a 504, no free connection a 503."""
    cause: Exception = error
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        cause = error.reason
    if isinstance(cause, urllib3.exceptions.EmptyPoolError):
        logger.warning("no free connection to Orthanc: %s", cause)
        return response(request, 503, "the archive is busy; try again")
    if isinstance(cause, urllib3.exceptions.ReadTimeoutError):
        logger.warning("Orthanc timed out: %s", cause)
        return response(request, 504, "the archive did not answer in time")
    logger.error("Orthanc unreachable: %s", cause)
    return response(request, 502, "the archive is not reachable")


# Orthanc's statuses that tell the client something; anything else from Orthanc is a 502.
MEANINGFUL = {400, 403, 404, 405, 409, 413, 415}
ORTHANC_ERROR_LIMIT = 64 * 1024


def from_orthanc(request: HttpRequest, upstream: urllib3.BaseHTTPResponse) -> HttpResponse:
    """Orthanc's error as the portal's own short answer: its status where meaningful, its
    one-line message, none of its internal fields (OrthancError, Details, Uri...)."""
    try:
        body = upstream.read(ORTHANC_ERROR_LIMIT, decode_content=True)
    except urllib3.exceptions.HTTPError:
        body = b""
    finally:
        upstream.close()
        upstream.release_conn()
    status = upstream.status if upstream.status in MEANINGFUL else 502
    message = {404: "not found in the archive", 409: "conflicts with what the archive holds"}.get(
        status, "the archive refused the request" if status < 500 else "the archive failed to answer"
    )
    try:
        said = json.loads(body).get("Message", "")
    except (ValueError, AttributeError):
        said = ""
    if isinstance(said, str) and said.isprintable() and 0 < len(said) <= 200 and status != 502:
        message = f"{message}: {said}"
    if status == 502:
        logger.error("Orthanc answered %s: %r", upstream.status, body[:500])
    answer = response(request, status, message)
    if status == 405 and upstream.headers.get("Allow"):
        answer["Allow"] = upstream.headers["Allow"]  # RFC 9110: a 405 names the methods allowed
    return answer
