"""The Django doors in front of Orthanc: /pacs (DICOMweb, WADO-URI) and /pacs-admin.

Each request is decided by `proxy.decision.decide`; these views only act on
the decision: answer the refusal, record the access, stream the request to
Orthanc and its answer back. Built on django-revproxy's ProxyView (its
dispatch skeleton and as_view), overriding what it gets wrong for a door to
patient data: it reads request bodies whole (`request.body`), forwards the
client's Authorization, Cookie and forwarding headers, re-quotes a decoded
path without refusing `..`, shares one unbounded pool with no timeouts,
copies every upstream header (WWW-Authenticate included) and leaks a pool
connection when a client disconnects mid-download.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

import urllib3
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from revproxy.views import ProxyView

from accounts.authentication import SESSION, Identity
from audit.models import AuditEvent
from core.clientip import client_ip
from orthanc import client, lookups
from proxy import errors, rules, stow
from proxy.decision import Decision, Original, decide, refuse
from proxy.errors import IncompleteBody
from proxy.models import ExportJob
from proxy.origin import SAFE_METHODS
from proxy.paths import is_export, is_stow
from proxy.subjects import Subject

logger = logging.getLogger("proxy")
# Per-request detail for forensics (who, what path, status, bytes), one JSON
# line each; the audit trail holds one row per study access instead.
access_log = logging.getLogger("pacsportal.access")
STREAM_CHUNK = 1024 * 1024
MAX_STOW_ANSWER = 16 * 1024 * 1024
MAX_JOB_ANSWER = 64 * 1024
# /pacs-admin bodies up to this size are read whole, to audit what they ask
# (tools/find queries, modify and anonymize requests); larger ones (uploads) stream.
ADMIN_BODY_LIMIT = 1024 * 1024
# Orthanc's JSON parser recurses: a kilobyte of nesting crashed 1.10. Real bodies nest under 6.
MAX_JSON_DEPTH = 32
# Refused bodies up to this size are read and dropped; past it gunicorn closes the connection.
DRAIN_LIMIT = 16 * 1024 * 1024
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


class ChunkedBody:
    """A chunked request body, as gunicorn decodes it, read to its end."""

    def __init__(self, request: HttpRequest) -> None:
        self.stream = request.environ["wsgi.input"]

    def read(self, size: int = -1) -> bytes:
        try:
            return self.stream.read(size)  # type: ignore[no-any-return]
        except (OSError, ValueError) as error:  # gunicorn's NoMoreData, a bad chunk size
            raise IncompleteBody(f"the chunked request body broke off: {error}") from None


class PrefixedBody:
    """A body whose first bytes were already read (to look at them), then the rest."""

    def __init__(self, start: bytes, rest: ExactBody) -> None:
        self.start, self.rest = start, rest

    def read(self, size: int = -1) -> bytes:
        if self.start:
            start, self.start = self.start, b""
            return start
        return self.rest.read(size)


RequestStream = ExactBody | ChunkedBody | PrefixedBody | io.BytesIO


@dataclass
class AdminBody:
    data: bytes | PrefixedBody
    parsed: Any = None
    problem: tuple[int, str] | None = None


class RepeatedKey(ValueError):
    """A JSON object naming a key twice: which value Orthanc's parser keeps is not ours to guess."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise RepeatedKey(key)
        found[key] = value
    return found


def looks_like_json(data: bytes) -> bool:
    return data.lstrip()[:1] in (b"{", b"[")


def json_depth(data: bytes) -> int:
    """How deep JSON arrays and objects nest, counted without parsing (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def drain(request: HttpRequest) -> None:
    """Read what is left of a refused request's body (up to DRAIN_LIMIT), so a client that
    retries on the same connection after a 401 challenge (httplib2, any Basic client) can."""
    drained = 0
    while drained <= DRAIN_LIMIT:
        try:
            chunk = request.read(STREAM_CHUNK)
        except OSError:
            return
        if not chunk:
            return
        drained += len(chunk)


class UpstreamStream:
    """Orthanc's response body, in chunks; returns or drops the pooled connection when done."""

    def __init__(
        self, upstream: urllib3.BaseHTTPResponse, already_read: bytes, done: Callable[[int], None]
    ) -> None:
        self.upstream = upstream
        self.already_read = already_read
        self.done = done
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        if self.already_read:
            self.sent += len(self.already_read)
            yield self.already_read
        for chunk in self.upstream.stream(STREAM_CHUNK, decode_content=False):
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        # Called by Django when the response ends, read fully or not: an
        # unfinished body leaves the connection unusable, so drop it.
        if not self.upstream.isclosed():
            self.upstream.close()
        self.upstream.release_conn()
        self.done(self.sent)


class OrthancProxyView(ProxyView):
    """One mount in front of Orthanc.

    csrf_exempt (from ProxyView.as_view) is right here: OHIF and Orthanc
    Explorer send no CSRF token, and the decision's same-origin rule
    (`proxy.origin`) refuses unsafe requests another site could have forged.
    """

    mount = ""

    @property
    def upstream(self) -> str:
        return settings.ORTHANC_URL

    def dispatch(self, request: HttpRequest, path: str = "") -> HttpResponseBase:  # type: ignore[override]
        self.started = time.monotonic()
        response = self.answer(request, path)
        if request.method not in SAFE_METHODS and response.status_code >= 400:
            drain(request)
        return response

    def answer(self, request: HttpRequest, path: str) -> HttpResponseBase:
        try:
            body = self.admin_body(request)
            decision = decide(request, self.mount, path, body.parsed if body else None)
        except IncompleteBody as error:
            return errors.response(request, 400, str(error))
        except DatabaseError as error:
            logger.error("database unavailable: %s", error)
            return errors.response(request, 503, "the portal's database is not available")
        if decision.identity.is_authenticated:
            request.user = decision.identity.user
        if decision.allowed and body is not None and body.problem:
            decision = refuse(decision, body.problem[0], body.problem[1])
        if not decision.allowed:
            return self.refused(request, decision)
        if decision.is_read and not self.record_read(request, decision, export_detail(body)):
            return errors.response(request, 503, "the access could not be audited, so it was refused")
        response = self.forward(request, decision, body)
        if not decision.is_read:
            response = self.record_write(request, decision, response)
        if not isinstance(response, StreamingHttpResponse):
            self.log_access(request, decision, response.status_code, len(getattr(response, "content", b"")))
        return response

    def admin_body(self, request: HttpRequest) -> AdminBody | None:
        """A /pacs-admin request body: small ones read whole (to audit what they ask, and
        to check JSON before Orthanc's recursive parser sees it), large ones streamed."""
        if self.mount != rules.PACS_ADMIN or request.method in SAFE_METHODS:
            return None
        length = content_length(request)
        if length is None or length == 0 or "HTTP_TRANSFER_ENCODING" in request.META:
            return None
        if length > ADMIN_BODY_LIMIT:
            start = ExactBody(request, length).read(16)
            body = AdminBody(PrefixedBody(start, ExactBody(request, length - len(start))))
            if looks_like_json(start):
                body.problem = (413, f"JSON bodies to /pacs-admin are limited to {ADMIN_BODY_LIMIT} bytes")
            return body
        data = ExactBody(request, length).read()
        body = AdminBody(data)
        if looks_like_json(data):
            depth = json_depth(data)
            if depth > MAX_JSON_DEPTH:
                body.problem = (400, f"JSON nests {depth} levels deep (at most {MAX_JSON_DEPTH})")
                return body
            try:
                body.parsed = json.loads(data, object_pairs_hook=unique_keys)
            except RepeatedKey as repeated:
                body.problem = (400, f"the JSON body names {str(repeated)[:64]!r} twice in one object")
            except ValueError:
                body.problem = (400, "the body looks like JSON but is not valid JSON")
        return body

    def refused(self, request: HttpRequest, decision: Decision) -> HttpResponseBase:
        response = self.refusal(request, decision)
        try:
            self.record(request, decision, response.status_code, bucketed=False)
        except DatabaseError as error:
            logger.error("audit write failed for a refused %s %s: %s", request.method, request.path, error)
        self.log_access(request, decision, response.status_code, 0)
        return response

    def refusal(self, request: HttpRequest, decision: Decision) -> HttpResponseBase:
        if decision.status == 401:
            return errors.unauthorized(request, decision.reason)
        response = errors.response(request, decision.status, decision.reason)
        if decision.allow:
            response["Allow"] = decision.allow
        return response

    def record(
        self,
        request: HttpRequest,
        decision: Decision,
        status: int | None,
        bucketed: bool,
        subject: Subject | None = None,
        **extra: Any,
    ) -> None:
        if not settings.AUDIT_PROXY_REQUESTS:
            return
        subject = subject or decision.subject
        AuditEvent.objects.record(
            decision.action,
            request=request,
            # The decision's, not the request's: an ambiguous credential names nobody.
            user=decision.identity.user,
            credential=decision.identity.credential,
            status=status,
            success=status is None or status < 400,
            patient_id=subject.patient_id,
            study_uid=subject.study_uid,
            series_uid=subject.series_uid,
            sop_uid=subject.sop_uid,
            bucketed=bucketed,
            **extra,
        )

    def record_read(self, request: HttpRequest, decision: Decision, export: str = "") -> bool:
        """Record the access before serving it; False if it could not be recorded.

        An export (`export`: what its body asked for) gets a row of its own; other
        reads one per bucket.
        """
        detail = f"export granted: {export}" if export else "granted; covers this bucket's reads"
        try:
            self.record(request, decision, None, bucketed=not export, detail=detail)
        except DatabaseError as error:
            logger.error("audit write failed, refusing %s %s: %s", request.method, request.path, error)
            return False
        return True

    def record_write(
        self, request: HttpRequest, decision: Decision, response: HttpResponseBase
    ) -> HttpResponseBase:
        stored = getattr(response, "stored_uids", [])
        subject = getattr(response, "stored_subject", None)
        detail = getattr(request, "audited_body", "")
        try:
            self.record(
                request,
                decision,
                response.status_code,
                bucketed=False,
                subject=subject,
                stored_uids=stored,
                detail=detail,
            )
        except DatabaseError as error:
            # Orthanc has already applied the write: hiding that would make the
            # client retry or give up on data that is stored. Say so loudly instead.
            logger.critical("UNAUDITED %s %s by %s: %s", request.method, request.path, request.user, error)
        return response

    def log_access(self, request: HttpRequest, decision: Decision, status: int, sent: int) -> None:
        identity = decision.identity
        access_log.info(
            json.dumps(
                {
                    "user": identity.user.get_username() if identity.is_authenticated else "",
                    "credential": decision.identity.credential,
                    "client": client_ip(request),
                    "method": request.method,
                    "path": getattr(getattr(request, "pacs_original", None), "path", request.path),
                    "status": status,
                    "bytes": sent,
                    "ms": round((time.monotonic() - self.started) * 1000, 1),
                    "pid": os.getpid(),
                }
            )
        )

    def get_request_headers(self) -> dict[str, str]:
        """An allowlist: the client's credentials, cookies and hop-by-hop or
        forwarding headers never reach Orthanc; the portal says who forwarded."""
        request = self.request
        headers = {
            name: request.META[key]
            for key, name in FORWARDED_REQUEST_HEADERS.items()
            if request.META.get(key)
        }
        # The DICOMweb plugin builds RetrieveURL and BulkDataURI as proto://host
        # + its root: putting the mount into `host` makes them resolve through
        # the portal. Only `Forwarded`: DICOMweb 1.14+ prefers X-Forwarded-Host,
        # which cannot carry the mount, and would drop it (FIELD-NOTES).
        headers["Forwarded"] = f"host={request.get_host()}/{self.mount};proto={request.scheme}"
        headers["X-Forwarded-For"] = client_ip(request) or ""
        return headers

    def forward(
        self, request: HttpRequest, decision: Decision, admin_body: AdminBody | None
    ) -> HttpResponseBase:
        self.request = request
        headers: dict[str, str] = {}
        body: Any = None
        if request.method not in SAFE_METHODS:
            stowing = is_stow(decision.path) and request.method == "POST"
            if "HTTP_TRANSFER_ENCODING" in request.META and stowing:
                # nginx passes uploads on unbuffered, chunked as the client sent them.
                return self.stow(request, decision, ChunkedBody(request))
            if "HTTP_TRANSFER_ENCODING" in request.META:
                return errors.response(
                    request, 411, "send a Content-Length; chunked request bodies are not accepted"
                )
            length = content_length(request)
            if length is None:
                return errors.response(request, 400, "malformed Content-Length")
            # The checked parts reach Orthanc as a chunked body of their own. Through
            # /pacs-admin the body was already read (or begun) to decide on it: read on from there.
            if stowing:
                return self.stow(request, decision, admin_stream(admin_body) or ExactBody(request, length))
            headers["Content-Length"] = str(length)
            if admin_body is not None and isinstance(admin_body.data, bytes):
                body = admin_body.data
                request.audited_body = body.decode("utf-8", "replace")[:1000]  # type: ignore[attr-defined]
            elif admin_body is not None:
                body = admin_body.data
                request.audited_body = f"body of {length} bytes"  # type: ignore[attr-defined]
            elif length:
                body = ExactBody(request, length)
                request.audited_body = f"body of {length} bytes"  # type: ignore[attr-defined]
        return self.send(request, decision, body, headers)

    def send(
        self, request: HttpRequest, decision: Decision, body: Any, extra_headers: dict[str, str]
    ) -> HttpResponseBase:
        headers = {**self.get_request_headers(), **extra_headers}
        if request.method not in SAFE_METHODS:
            headers.pop("Accept-Encoding", None)
        target = decision.target
        try:
            upstream = client.request(
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
        if upstream.status >= 400:
            return errors.from_orthanc(request, upstream)
        if request.method == "POST" and upstream.status == 200 and is_stow(decision.path):
            return self.stow_response(request, decision, upstream)
        if is_export(decision.path) and upstream.headers.get("Content-Type", "").startswith(
            "application/json"
        ):
            return self.export_job_response(request, decision, upstream)
        return self.client_response(request, decision, upstream)

    def export_job_response(
        self, request: HttpRequest, decision: Decision, upstream: urllib3.BaseHTTPResponse
    ) -> HttpResponseBase:
        """An export made a job: remember whose data it holds before the client can ask for it."""
        head = upstream.read(MAX_JOB_ANSWER + 1, decode_content=True)
        upstream.release_conn()
        try:
            job_id = str(json.loads(head).get("ID", ""))
        except (ValueError, AttributeError):
            job_id = ""
        if job_id and len(head) <= MAX_JOB_ANSWER:
            subject = decision.subject
            try:
                ExportJob.objects.get_or_create(
                    job_id=job_id[:64],
                    defaults={"patient_id": subject.patient_id, "study_uid": subject.study_uid},
                )
            except DatabaseError as error:
                # The job runs anyway; its download will be refused as unattributed.
                logger.error("could not remember export job %s: %s", job_id, error)
        response = HttpResponse(head, status=upstream.status, content_type=upstream.headers["Content-Type"])
        response["Cache-Control"] = "no-store, private"
        return response

    def stow(
        self,
        request: HttpRequest,
        decision: Decision,
        body: ExactBody | ChunkedBody | PrefixedBody | io.BytesIO,
    ) -> HttpResponseBase:
        """Check each part, audit each refused one, and store only those that passed."""
        try:
            boundary = stow.boundary_of(request.META.get("CONTENT_TYPE", ""))
        except stow.BadBody as error:
            return errors.response(request, 415, str(error))
        upload = stow.Upload(body, boundary, decision.subject.study_uid)
        try:
            first = upload.next_batch()
        except lookups.LookupFailed:
            self.record_refused_parts(request, decision, upload.refused)
            return errors.response(request, 503, "the archive could not be asked who owns these UIDs")
        if not first:
            self.record_refused_parts(request, decision, upload.refused)
            if upload.unreadable:
                return errors.response(request, 400, f"the STOW-RS body cannot be read: {upload.unreadable}")
            return stow_answer(409 if upload.conflict else 400, upload.refused, {})
        response = self.send(request, decision, upload.chunks(first), {"Content-Type": upload.content_type})
        refused = upload.refused + ([upload.broken] if upload.broken else [])
        self.record_refused_parts(request, decision, refused)
        if refused and isinstance(response, HttpResponse) and response.status_code == 200:
            return merged_stow_answer(response, refused)
        return response

    def record_refused_parts(
        self, request: HttpRequest, decision: Decision, refused: list[stow.Part]
    ) -> None:
        for part in refused:
            try:
                self.record(
                    request,
                    decision,
                    409 if part.conflict else 400,
                    bucketed=False,
                    subject=Subject(part.patient_id, part.study_uid, part.series_uid, part.sop_uid),
                    detail=f"STOW part refused: {part.refusal}",
                )
            except DatabaseError as error:
                logger.error("audit write failed for a refused STOW part: %s", error)

    def stow_response(
        self, request: HttpRequest, decision: Decision, upstream: urllib3.BaseHTTPResponse
    ) -> HttpResponseBase:
        """Read the STOW-RS answer to audit which instances were stored, and whose they are.

        An answer larger than MAX_STOW_ANSWER is passed on whole, streamed, and
        audited without its UIDs: the client must never get a truncated answer.
        """
        head = upstream.read(MAX_STOW_ANSWER + 1, decode_content=False)
        if len(head) > MAX_STOW_ANSWER:
            return self.client_response(request, decision, upstream, already_read=head)
        upstream.release_conn()
        response = HttpResponse(
            head, status=upstream.status, content_type=upstream.headers.get("Content-Type")
        )
        response.stored_uids, study_uid = stow_result(head)  # type: ignore[attr-defined]
        response.stored_subject = stored_subject(study_uid or decision.subject.study_uid)  # type: ignore[attr-defined]
        response["Cache-Control"] = "no-store, private"
        return response

    def client_response(
        self,
        request: HttpRequest,
        decision: Decision,
        upstream: urllib3.BaseHTTPResponse,
        already_read: bytes = b"",
    ) -> HttpResponseBase:
        def done(sent: int) -> None:
            self.log_access(request, decision, upstream.status, sent)

        response = StreamingHttpResponse(
            UpstreamStream(upstream, already_read, done),
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


def export_detail(admin_body: AdminBody | None) -> str:
    """What an export's body asked for, as its audit row's detail ('' for anything else)."""
    if admin_body is None or admin_body.parsed is None or not isinstance(admin_body.data, bytes):
        return ""
    return admin_body.data.decode("utf-8", "replace")[:900]


def admin_stream(admin_body: AdminBody | None) -> io.BytesIO | PrefixedBody | None:
    """A /pacs-admin body as a stream from its first byte, however much of it was read already."""
    if admin_body is None:
        return None
    if isinstance(admin_body.data, bytes):
        return io.BytesIO(admin_body.data)
    return admin_body.data


def content_length(request: HttpRequest) -> int | None:
    """The request's Content-Length (0 when absent), None when malformed."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    return length if length >= 0 else None


def stow_result(answer: bytes) -> tuple[list[str], str]:
    """The SOP Instance UIDs a STOW-RS answer says were stored (0008,1199), and its study."""
    try:
        found = json.loads(answer)
    except ValueError:
        return [], ""
    if not isinstance(found, dict):
        return [], ""
    try:
        stored = [str(item["00081155"]["Value"][0]) for item in found["00081199"]["Value"]]
    except (KeyError, IndexError, TypeError):
        stored = []
    try:
        study_uid = str(found["00081190"]["Value"][0]).rstrip("/").rsplit("/", 1)[-1]
    except (KeyError, IndexError, TypeError):
        study_uid = ""
    return stored, study_uid


def stow_answer(status: int, refused: list[stow.Part], answer: dict[str, Any]) -> HttpResponse:
    # The Store Instances Response as Orthanc gives it: Specific Character Set (this JSON is
    # UTF-8) and the Referenced SOP Sequence, empty when nothing was stored.
    answer.setdefault("00080005", {"vr": "CS", "Value": ["ISO_IR 192"]})
    answer.setdefault("00081199", {"vr": "SQ"})
    failed = answer.setdefault("00081198", {"vr": "SQ", "Value": []})
    failed.setdefault("Value", []).extend(stow.failed_item(part) for part in refused)
    response = HttpResponse(json.dumps(answer), status=status, content_type="application/dicom+json")
    response["Cache-Control"] = "no-store, private"
    return response


def merged_stow_answer(stored: HttpResponse, refused: list[stow.Part]) -> HttpResponse:
    """Orthanc's answer with the portal's refusals added: 202, as STOW-RS says for partial success."""
    try:
        answer = json.loads(stored.content)
    except ValueError:
        answer = {}
    merged = stow_answer(202, refused, answer if isinstance(answer, dict) else {})
    merged.stored_uids = getattr(stored, "stored_uids", [])  # type: ignore[attr-defined]
    merged.stored_subject = getattr(stored, "stored_subject", None)  # type: ignore[attr-defined]
    return merged


def stored_subject(study_uid: str) -> Subject:
    """Whose study was just stored, as Orthanc's index now says."""
    if not study_uid:
        return Subject()
    try:
        found = lookups.by_uid("studies", study_uid)
    except lookups.LookupFailed:
        found = []
    if len(found) == 1:
        return Subject(patient_id=found[0].patient_id, study_uid=study_uid)
    return Subject(study_uid=study_uid)


class PacsProxyView(OrthancProxyView):
    """/pacs/: DICOMweb and WADO-URI only; reads for clinicians, STOW for uploaders."""

    mount = rules.PACS


class AdminProxyView(OrthancProxyView):
    """/pacs-admin/: Orthanc Explorer and the whole REST API, for PACS admins."""

    mount = rules.PACS_ADMIN

    def refusal(self, request: HttpRequest, decision: Decision) -> HttpResponseBase:
        anonymous = not decision.identity.is_authenticated and decision.status == 401
        if anonymous and request.method in SAFE_METHODS and errors.is_navigation(request):
            return redirect_to_login(request.get_full_path())
        return super().refusal(request, decision)

    def forward(
        self, request: HttpRequest, decision: Decision, admin_body: AdminBody | None
    ) -> HttpResponseBase:
        if not decision.path and request.method in SAFE_METHODS:
            return redirect("/pacs-admin/app/explorer.html")
        return super().forward(request, decision, admin_body)


@dataclass(frozen=True)
class FrontOriginal(Original):
    path: str = ""


@login_not_required
@require_safe
@never_cache
def front_decision(request: HttpRequest, mount: str) -> HttpResponse:
    """nginx's authorization sub-request (auth_request) for a request under /pacs.

    The same decision as the proxy view, for the request nginx holds: for a
    GET or HEAD, 204 with the path and query Orthanc should be asked for once
    the access is recorded; for a write, 204 and nginx passes the body on to
    the proxy view, which records what it stored. A refusal is recorded here,
    once, and answered as a bodiless 401 or 403 carrying its real status and
    reason in headers, which nginx has `front_refusal_page` word.
    """
    uri = request.META.get("HTTP_X_ORIGINAL_URI", "")
    method = request.META.get("HTTP_X_ORIGINAL_METHOD", "")
    prefix = f"/{rules.PACS}/"
    if mount != rules.PACS or not method or not uri.startswith(prefix):
        return HttpResponse(status=403)
    raw_path, _, query_string = uri.partition("?")
    try:
        path = unquote_to_bytes(raw_path[len(prefix) :]).decode("utf-8")
    except UnicodeDecodeError:
        return HttpResponse(status=403)  # the door answers the 400
    original = FrontOriginal(method, uri, query_string, path=raw_path)
    request.pacs_original = original  # type: ignore[attr-defined]
    door = PacsProxyView()
    door.started = time.monotonic()
    try:
        decision = decide(request, rules.PACS, path, original=original)
    except DatabaseError as error:
        logger.error("database unavailable: %s", error)
        return front_refusal(503, "the portal's database is not available")
    finally:
        # django-axes' middleware would answer its own 429 (the decision says 429 itself),
        # which auth_request takes for an error (500): nginx would then hand the request
        # to the Django door, deciding it twice.
        request.axes_locked_out = False  # type: ignore[attr-defined]
    if decision.identity.is_authenticated:
        request.user = decision.identity.user
    if not decision.allowed:
        refusal = door.refused(request, decision)  # recorded here, once; nginx has Django word it
        return front_refusal(refusal.status_code, decision.reason, decision.allow)
    if method not in SAFE_METHODS:
        return HttpResponse(status=204)
    if not door.record_read(request, decision):
        return front_refusal(503, "the access could not be audited, so it was refused")
    response = HttpResponse(status=204)
    response["X-Pacs-Target"] = decision.target
    response["X-Pacs-User"] = f"{decision.identity.user.get_username()} ({decision.identity.credential})"
    # Counted from before the session and user were read (proxy.middleware, which must run).
    took = time.monotonic() - request.pacs_started  # type: ignore[attr-defined]
    reuse = reuse_seconds(decision.identity, took)
    if reuse is not None:
        response["X-Accel-Expires"] = str(reuse)
    return response


# A decision slower than this is never reused: one made from state that changed
# meanwhile could otherwise reach nginx's cache after accounts.revocation's sweeps.
FRESH_DECISION_SECONDS = 0.5


def reuse_seconds(identity: Identity, took: float) -> int | None:
    """How long nginx may reuse this allowed read's decision (None: NGINX_DECISION_SECONDS)."""
    if identity.share is not None or took > FRESH_DECISION_SECONDS:
        return 0  # a share is never reused: revoking it ends it on the next request
    if identity.credential == SESSION:
        return None
    # nginx keeps entries up to a second longer than asked, as for sessions (pacsportal/front.py).
    seconds = max(settings.NGINX_API_DECISION_SECONDS - 1, 0)
    if identity.expires_at is not None:
        seconds = min(seconds, max(int((identity.expires_at - timezone.now()).total_seconds()) - 1, 0))
    return seconds


def front_refusal(status: int, reason: str, allow: str = "") -> HttpResponse:
    """A refusal for nginx: 401 or 403 (all auth_request passes on), the real status in headers."""
    response = HttpResponse(status=401 if status == 401 else 403)
    response["X-Pacs-Status"] = str(status)
    response["X-Pacs-Reason"] = reason.encode("ascii", "replace").decode()
    if allow:
        response["X-Pacs-Allow"] = allow
    return response


@login_not_required
@never_cache
def front_refusal_page(request: HttpRequest) -> HttpResponse:
    """The answer to a refusal nginx met, worded as the Django door words its own.

    Reached only through nginx's internal @pacs_refusal location: either the
    decision refused (and recorded it), or Orthanc itself answered 401 or 403.
    """
    status = request.META.get("HTTP_X_PACS_STATUS", "")
    if not status.isdigit():
        upstream = request.META.get("HTTP_X_PACS_UPSTREAM_STATUS", "").split(",")[-1].strip()
        if upstream == "401":
            return errors.response(request, 502, "the archive refused the portal's service credential")
        return errors.response(request, 403, "the archive refused the request")
    code, reason = int(status), request.META.get("HTTP_X_PACS_REASON", "refused")
    if code == 401:
        return errors.unauthorized(request, reason)
    response = errors.response(request, code, reason)
    if request.META.get("HTTP_X_PACS_ALLOW"):
        response["Allow"] = request.META["HTTP_X_PACS_ALLOW"]
    return response


def as_view(view_class: type[OrthancProxyView]) -> Any:
    # The proxy authenticates by itself (session or Basic) and answers 401,
    # not a redirect to the login page, to API clients.
    return login_not_required(view_class.as_view())


pacs = as_view(PacsProxyView)
pacs_admin = as_view(AdminProxyView)
