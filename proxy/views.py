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

import dataclasses
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect
from revproxy.views import ProxyView

from core.clientip import client_ip
from orthanc import client, lookups
from proxy import accesses, errors, rules, stow
from proxy.accesses import Written
from proxy.decision import Asked, Decision, decide, of_django, refuse
from proxy.errors import IncompleteBody
from proxy.models import ExportJob
from proxy.origin import SAFE_METHODS
from proxy.paths import is_export, is_stow
from proxy.subjects import Subject

logger = logging.getLogger("proxy")
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
        # META is the WSGI environ itself.
        self.stream = request.META["wsgi.input"]

    def read(self, size: int = -1) -> bytes:
        try:
            return self.stream.read(size)
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
        self, upstream: urllib3.HTTPResponse, already_read: bytes, done: Callable[[int], None]
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

    def dispatch(self, request: HttpRequest, path: str = "") -> HttpResponseBase:
        response = self.answer(request, path)
        if request.method not in SAFE_METHODS and response.status_code >= 400:
            drain(request)
        return response

    def answer(self, request: HttpRequest, path: str) -> HttpResponseBase:
        try:
            asked = of_django(request, self.mount, path)
            body = self.admin_body(request)
            decision = decide(asked, body.parsed if body else None)
        except IncompleteBody as error:
            return errors.response(request, 400, str(error))
        except DatabaseError as error:
            logger.error("database unavailable: %s", error)
            return errors.response(request, 503, "the portal's database is not available")
        if decision.allowed and body is not None and body.problem:
            decision = refuse(decision, body.problem[0], body.problem[1])
        if not decision.allowed:
            response = self.refusal(request, decision)
            accesses.record_refusal(asked, decision, response.status_code)
            return response
        if decision.is_read and not accesses.record_read(asked, decision, export_detail(body)):
            return errors.response(request, 503, "the access could not be audited, so it was refused")
        written = self.forward(request, asked, decision, body)
        if not decision.is_read:
            accesses.record_write(asked, decision, written)
        response = written.response
        if not isinstance(response, StreamingHttpResponse):
            accesses.log_access(asked, decision, response.status_code, len(getattr(response, "content", b"")))
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

    def refusal(self, request: HttpRequest, decision: Decision) -> HttpResponseBase:
        return errors.refusal(request, decision.status, decision.reason, decision.allow)

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
        self, request: HttpRequest, asked: Asked, decision: Decision, admin_body: AdminBody | None
    ) -> Written:
        self.request = request
        if request.method in SAFE_METHODS:
            return self.send(request, asked, decision, None, {})
        stowing = is_stow(decision.path) and request.method == "POST"
        if "HTTP_TRANSFER_ENCODING" in request.META and stowing:
            # nginx passes uploads on unbuffered, chunked as the client sent them.
            return self.stow(request, asked, decision, ChunkedBody(request))
        if "HTTP_TRANSFER_ENCODING" in request.META:
            message = "send a Content-Length; chunked request bodies are not accepted"
            return Written(errors.response(request, 411, message))
        length = content_length(request)
        if length is None:
            return Written(errors.response(request, 400, "malformed Content-Length"))
        # The checked parts reach Orthanc as a chunked body of their own. Through
        # /pacs-admin the body was already read (or begun) to decide on it: read on from there.
        if stowing:
            return self.stow(request, asked, decision, admin_stream(admin_body) or ExactBody(request, length))
        body: Any = None
        detail = f"body of {length} bytes"
        if admin_body is not None:
            body = admin_body.data
            if isinstance(body, bytes):
                detail = body.decode("utf-8", "replace")[:1000]
        elif length:
            body = ExactBody(request, length)
        written = self.send(request, asked, decision, body, {"Content-Length": str(length)})
        return dataclasses.replace(written, detail=detail if body is not None else "")

    def send(
        self, request: HttpRequest, asked: Asked, decision: Decision, body: Any, extra_headers: dict[str, str]
    ) -> Written:
        headers = {**self.get_request_headers(), **extra_headers}
        if request.method not in SAFE_METHODS:
            headers.pop("Accept-Encoding", None)
        try:
            upstream = client.request(
                request.method or "GET",
                decision.target,
                body=body,
                headers=headers,
                stream=True,
                retries=READ_RETRIES if body is None else False,
            )
        except IncompleteBody as error:
            return Written(errors.response(request, 400, str(error)))
        except urllib3.exceptions.HTTPError as error:
            return Written(errors.upstream_failure(request, error))
        if upstream.status == 401:
            # Orthanc's 401 means the portal's own credential is wrong: not the user's problem.
            upstream.close()
            upstream.release_conn()
            return Written(
                errors.response(request, 502, "the archive refused the portal's service credential")
            )
        if upstream.status >= 400:
            return Written(errors.from_orthanc(request, upstream))
        if request.method == "POST" and upstream.status == 200 and is_stow(decision.path):
            return stow_written(asked, decision, upstream)
        if is_export(decision.path) and upstream.headers.get("Content-Type", "").startswith(
            "application/json"
        ):
            return Written(export_job_response(upstream, decision))
        return Written(client_response(asked, decision, upstream))

    def stow(
        self,
        request: HttpRequest,
        asked: Asked,
        decision: Decision,
        body: ExactBody | ChunkedBody | PrefixedBody | io.BytesIO,
    ) -> Written:
        """Check each part, and store only those that passed; the refused ones are audited each."""
        try:
            boundary = stow.boundary_of(request.META.get("CONTENT_TYPE", ""))
        except stow.BadBody as error:
            return Written(errors.response(request, 415, str(error)))
        upload = stow.Upload(body, boundary, decision.subject.study_uid)
        try:
            first = upload.next_batch()
        except lookups.LookupFailed:
            message = "the archive could not be asked who owns these UIDs"
            return Written(errors.response(request, 503, message), refused_parts=tuple(upload.refused))
        if not first:
            refused_parts = tuple(upload.refused)
            if upload.unreadable:
                message = f"the STOW-RS body cannot be read: {upload.unreadable}"
                return Written(errors.response(request, 400, message), refused_parts=refused_parts)
            return Written(
                stow_answer(409 if upload.conflict else 400, upload.refused, {}), refused_parts=refused_parts
            )
        written = self.send(
            request, asked, decision, upload.chunks(first), {"Content-Type": upload.content_type}
        )
        refused = upload.refused + ([upload.broken] if upload.broken else [])
        response = written.response
        if refused and isinstance(response, HttpResponse) and response.status_code == 200:
            response = merged_stow_answer(response, refused)
        return dataclasses.replace(written, response=response, refused_parts=tuple(refused))


def client_response(
    asked: Asked, decision: Decision, upstream: urllib3.HTTPResponse, already_read: bytes = b""
) -> StreamingHttpResponse:
    def done(sent: int) -> None:
        accesses.log_access(asked, decision, upstream.status, sent)

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
        response["Location"] = location.replace(settings.ORTHANC_URL, f"/{decision.mount}", 1)
    # Patient data stays off shared workstations' disks.
    response["Cache-Control"] = "no-store, private"
    return response


def stow_written(asked: Asked, decision: Decision, upstream: urllib3.HTTPResponse) -> Written:
    """Read the STOW-RS answer to audit which instances were stored, and whose they are.

    An answer larger than MAX_STOW_ANSWER is passed on whole, streamed, and
    audited without its UIDs: the client must never get a truncated answer.
    """
    head = upstream.read(MAX_STOW_ANSWER + 1, decode_content=False)
    if len(head) > MAX_STOW_ANSWER:
        return Written(client_response(asked, decision, upstream, already_read=head))
    upstream.release_conn()
    response = HttpResponse(head, status=upstream.status, content_type=upstream.headers.get("Content-Type"))
    response["Cache-Control"] = "no-store, private"
    uids, study_uid = stow_result(head)
    subject = stored_subject(study_uid or decision.subject.study_uid)
    return Written(response, stored_uids=tuple(uids), subject=subject)


def export_job_response(upstream: urllib3.HTTPResponse, decision: Decision) -> HttpResponse:
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
    return stow_answer(202, refused, answer if isinstance(answer, dict) else {})


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
        self, request: HttpRequest, asked: Asked, decision: Decision, admin_body: AdminBody | None
    ) -> Written:
        if not decision.path and request.method in SAFE_METHODS:
            return Written(redirect("/pacs-admin/app/explorer.html"))
        return super().forward(request, asked, decision, admin_body)


def as_view(view_class: type[OrthancProxyView]) -> Any:
    # The proxy authenticates by itself (session or Basic) and answers 401,
    # not a redirect to the login page, to API clients.
    return login_not_required(view_class.as_view())


pacs = as_view(PacsProxyView)
pacs_admin = as_view(AdminProxyView)
