"""The two mounts in front of Orthanc: /pacs (DICOMweb, WADO-URI) and /pacs-admin.

Built on django-revproxy's ProxyView, overriding what it gets wrong for a door
to patient data: it reads request bodies whole (`request.body`), forwards the
client's Authorization, Cookie and forwarding headers, re-quotes a decoded path
without refusing `..`, shares one unbounded pool with no timeouts, copies every
upstream header (WWW-Authenticate included) and leaks a pool connection when a
client disconnects mid-download.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import urllib3
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect
from revproxy.views import ProxyView

from accounts import roles
from accounts.authentication import BadCredentials, identify
from accounts.clientip import client_ip
from accounts.permissions import has_perm
from audit.models import Action, AuditEvent
from orthanc import client as orthanc
from proxy import errors, origin, paths

logger = logging.getLogger("proxy")
STREAM_CHUNK = 1024 * 1024
MAX_STOW_ANSWER = 16 * 1024 * 1024
FORWARDED_REQUEST_HEADERS = {
    "HTTP_ACCEPT": "Accept",
    "HTTP_ACCEPT_ENCODING": "Accept-Encoding",
    "CONTENT_TYPE": "Content-Type",
    "HTTP_RANGE": "Range",
    "HTTP_IF_NONE_MATCH": "If-None-Match",
    "HTTP_IF_MODIFIED_SINCE": "If-Modified-Since",
}
RETURNED_RESPONSE_HEADERS = (
    "Content-Length",
    "Content-Encoding",
    "Content-Disposition",
    "Content-Range",
    "Accept-Ranges",
    "ETag",
    "Last-Modified",
    "Allow",
)
# Reads may reconnect once (Orthanc closes idle keep-alive connections after a
# second), but a read that timed out is not repeated: the client gets its 504
# after ORTHANC_READ_TIMEOUT, not twice that.
READ_RETRIES = urllib3.Retry(total=1, connect=1, read=0, redirect=0, status=0, other=0)


class IncompleteBody(Exception):
    pass


class ExactBody:
    """The request body as a stream of exactly Content-Length bytes.

    A client that sends less than it announced must not get a truncated
    study stored upstream: running dry raises, which aborts the upstream request.
    """

    def __init__(self, request: HttpRequest, length: int) -> None:
        self.request = request
        self.remaining = length

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        wanted = self.remaining if size < 0 else min(size, self.remaining)
        data = self.request.read(wanted)
        if not data:
            raise IncompleteBody(f"request body ended {self.remaining} bytes early")
        self.remaining -= len(data)
        return data


class UpstreamStream:
    """Orthanc's response body, in chunks; returns or drops the pooled connection when done."""

    def __init__(self, upstream: urllib3.BaseHTTPResponse, already_read: bytes = b"") -> None:
        self.upstream = upstream
        self.already_read = already_read

    def __iter__(self) -> Iterator[bytes]:
        if self.already_read:
            yield self.already_read
        yield from self.upstream.stream(STREAM_CHUNK, decode_content=False)

    def close(self) -> None:
        # Called by Django when the response ends, read fully or not: an
        # unfinished body leaves the connection unusable, so drop it.
        if not self.upstream.isclosed():
            self.upstream.close()
        self.upstream.release_conn()


class OrthancProxyView(ProxyView):
    mount = ""

    @property
    def upstream(self) -> str:
        return settings.ORTHANC_URL

    def dispatch(self, request: HttpRequest, path: str = "") -> HttpResponseBase:  # type: ignore[override]
        self.stored_uids: list[str] = []
        self.requested_path = path  # for classifying the audit row only
        self.safe_path: str | None = None  # checked: what UIDs are read from
        try:
            response = self.respond(request, path)
        except DatabaseError as error:
            logger.error("database unavailable: %s", error)
            return errors.response(request, 503, "the portal's database is not available")
        return self.audited(request, response)

    def audited(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """Record the request; refuse to show patient data that could not be audited."""
        if not settings.AUDIT_PROXY_REQUESTS:
            return response
        identifiers = {}
        if self.safe_path is not None:
            identifiers = paths.dicom_identifiers(self.safe_path, request.META.get("QUERY_STRING", ""))
        if identifiers.get("study_uid") and not identifiers.get("patient_id") and response.status_code < 400:
            identifiers["patient_id"] = orthanc.patient_id_of(identifiers["study_uid"])
        try:
            AuditEvent.objects.record(
                self.audit_action(request),
                request=request,
                status=response.status_code,
                success=response.status_code < 400,
                stored_uids=self.stored_uids,
                **identifiers,
            )
        except DatabaseError as error:
            if response.status_code >= 400:
                logger.error(
                    "audit write failed for a refused %s %s: %s", request.method, request.path, error
                )
            elif request.method in origin.SAFE_METHODS:
                logger.error("audit write failed, refusing %s %s: %s", request.method, request.path, error)
                response.close()
                return errors.response(request, 503, "the access could not be audited, so it was refused")
            else:
                # Orthanc has already applied the write: hiding that would make the
                # client retry or give up on data that is stored. Say so loudly instead.
                logger.critical(
                    "UNAUDITED %s %s by %s: %s", request.method, request.path, request.user, error
                )
        return response

    def audit_action(self, request: HttpRequest) -> str:
        raise NotImplementedError

    def respond(self, request: HttpRequest, path: str) -> HttpResponseBase:
        # Who first, then the path: the audit trail names who tried a hostile path.
        session = request.user.is_authenticated
        try:
            user = identify(request).user
        except BadCredentials as error:
            return errors.unauthorized(request, str(error))
        if getattr(request, "axes_locked_out", False):
            return errors.response(request, 429, "too many failed logins; try again later")
        if not user.is_authenticated:
            return self.anonymous(request)
        request.user = user
        try:
            path = paths.clean(path, request.META.get("RAW_URI"))
            query = paths.clean_query(request.META.get("QUERY_STRING", ""))
        except paths.UnsafePath as error:
            return errors.response(request, 400, str(error))
        self.safe_path = path
        refusal = self.authorize(request, path)
        if refusal is not None:
            return refusal
        own_origin = f"{request.scheme}://{request.get_host()}"
        if origin.is_cross_site(
            request.method or "",
            request.META.get("HTTP_SEC_FETCH_SITE"),
            request.META.get("HTTP_ORIGIN"),
            own_origin,
            session,
        ):
            return errors.response(request, 403, "cross-site request refused")
        return self.forward(request, path, query)

    def anonymous(self, request: HttpRequest) -> HttpResponseBase:
        return errors.unauthorized(request, "authentication required")

    def authorize(self, request: HttpRequest, path: str) -> HttpResponseBase | None:
        raise NotImplementedError

    def get_request_headers(self) -> dict[str, str]:
        """An allowlist: the client's credentials, cookies and hop-by-hop or
        forwarding headers never reach Orthanc; the portal says who forwarded."""
        request = self.request
        headers = {
            name: request.META[key]
            for key, name in FORWARDED_REQUEST_HEADERS.items()
            if request.META.get(key)
        }
        host = request.get_host()
        # The DICOMweb plugin (1.7) builds RetrieveURL and BulkDataURI as
        # proto://host + its root: putting the mount into `host` makes them
        # resolve through the portal.
        headers["Forwarded"] = f"host={host}/{self.mount};proto={request.scheme}"
        headers["X-Forwarded-For"] = client_ip(request) or ""
        headers["X-Forwarded-Host"] = host
        headers["X-Forwarded-Proto"] = request.scheme
        return headers

    def forward(self, request: HttpRequest, path: str, query: str) -> HttpResponseBase:
        self.request = request
        headers = self.get_request_headers()
        body: ExactBody | None = None
        if request.method not in origin.SAFE_METHODS:
            if "HTTP_TRANSFER_ENCODING" in request.META:
                return errors.response(
                    request, 411, "send a Content-Length; chunked request bodies are not accepted"
                )
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return errors.response(request, 400, "malformed Content-Length")
            if length < 0:
                return errors.response(request, 400, "malformed Content-Length")
            headers["Content-Length"] = str(length)
            body = ExactBody(request, length) if length else None
            # The STOW answer is read here to audit what was stored: keep it uncompressed.
            headers.pop("Accept-Encoding", None)
        target = "/" + paths.quoted(path) + (f"?{query}" if query else "")
        try:
            upstream = orthanc.request(
                request.method or "GET",
                target,
                body=body,
                headers=headers,
                stream=True,
                retries=READ_RETRIES if body is None else False,
            )
        except IncompleteBody as error:
            return errors.response(request, 400, str(error))
        except urllib3.exceptions.HTTPError as error:
            return errors.upstream_failure(request, error)
        if upstream.status == 401:
            # Orthanc's 401 means the portal's own credential is wrong: not the user's problem.
            upstream.close()
            upstream.release_conn()
            return errors.response(request, 502, "the archive refused the portal's service credential")
        if request.method == "POST" and upstream.status == 200 and paths.is_stow(path):
            return self.stow_response(upstream)
        return self.client_response(upstream)

    def stow_response(self, upstream: urllib3.BaseHTTPResponse) -> HttpResponseBase:
        """Read the STOW-RS answer to audit which instances were stored.

        An answer larger than MAX_STOW_ANSWER is passed on whole, streamed, and
        audited without its UIDs: the client must never get a truncated answer.
        """
        head = upstream.read(MAX_STOW_ANSWER + 1, decode_content=False)
        if len(head) > MAX_STOW_ANSWER:
            return self.client_response(upstream, already_read=head)
        upstream.release_conn()
        self.stored_uids = stored_sop_uids(head)
        response = HttpResponse(
            head, status=upstream.status, content_type=upstream.headers.get("Content-Type")
        )
        response["Cache-Control"] = "no-store, private"
        return response

    def client_response(
        self, upstream: urllib3.BaseHTTPResponse, already_read: bytes = b""
    ) -> HttpResponseBase:
        response = StreamingHttpResponse(
            UpstreamStream(upstream, already_read),
            status=upstream.status,
            content_type=upstream.headers.get("Content-Type", "application/octet-stream"),
        )
        for name in RETURNED_RESPONSE_HEADERS:
            if name in upstream.headers:
                response[name] = upstream.headers[name]
        location = upstream.headers.get("Location")
        if location:
            response["Location"] = location.replace(settings.ORTHANC_URL, f"/{self.mount}", 1)
        # Patient data stays off shared workstations' disks.
        response["Cache-Control"] = "no-store, private"
        return response


def stored_sop_uids(answer: bytes) -> list[str]:
    """SOP Instance UIDs in a STOW-RS answer's ReferencedSOPSequence (0008,1199)."""
    try:
        referenced = json.loads(answer)["00081199"]["Value"]
        return [str(item["00081155"]["Value"][0]) for item in referenced]
    except (ValueError, KeyError, IndexError, TypeError):
        return []


class PacsProxyView(OrthancProxyView):
    """/pacs/: DICOMweb and WADO-URI only; reads for clinicians, STOW for uploaders."""

    mount = "pacs"

    def audit_action(self, request: HttpRequest) -> str:
        if request.method not in origin.SAFE_METHODS:
            return Action.STORE
        if paths.is_qido(self.requested_path):
            return Action.QUERY
        return Action.RETRIEVE

    def authorize(self, request: HttpRequest, path: str) -> HttpResponseBase | None:
        user = request.user
        if request.method in origin.SAFE_METHODS and paths.is_pacs_read(path):
            return None if has_perm(user, roles.READ_STUDIES) else errors.forbidden(request)
        if request.method == "POST" and paths.is_stow(path):
            return None if has_perm(user, roles.STORE_STUDIES) else errors.forbidden(request)
        if paths.is_pacs_read(path):
            allowed = "GET, HEAD, POST" if paths.is_stow(path) else "GET, HEAD"
            refusal = errors.response(request, 405, f"{request.method} is not allowed here")
            refusal["Allow"] = allowed
            return refusal
        return errors.response(request, 404, "not a DICOMweb or WADO-URI resource")


class AdminProxyView(OrthancProxyView):
    """/pacs-admin/: Orthanc Explorer and the whole REST API, for PACS admins."""

    mount = "pacs-admin"

    def audit_action(self, request: HttpRequest) -> str:
        return Action.ADMIN_READ if request.method in origin.SAFE_METHODS else Action.ADMIN_WRITE

    def anonymous(self, request: HttpRequest) -> HttpResponseBase:
        if request.method in origin.SAFE_METHODS and errors.wants_html(request):
            return redirect_to_login(request.get_full_path())
        return super().anonymous(request)

    def authorize(self, request: HttpRequest, path: str) -> HttpResponseBase | None:
        if not has_perm(request.user, roles.ADMINISTER_PACS):
            return errors.forbidden(request)
        return None

    def forward(self, request: HttpRequest, path: str, query: str) -> HttpResponseBase:
        if not path and request.method in origin.SAFE_METHODS:
            return redirect("/pacs-admin/app/explorer.html")
        return super().forward(request, path, query)


def as_view(view_class: type[OrthancProxyView]) -> Any:
    # The proxy authenticates by itself (session or Basic) and answers 401,
    # not a redirect to the login page, to API clients.
    return login_not_required(view_class.as_view())


pacs = as_view(PacsProxyView)
pacs_admin = as_view(AdminProxyView)
