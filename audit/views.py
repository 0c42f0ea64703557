"""The audit log for auditors: a filtered list, accesses grouped by patient and study,
and a streamed CSV export of either."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import permission_required
from django.db import connection, transaction
from django.db.models import Count, Max, Min, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from audit.forms import AuditFilterForm
from audit.models import ACCESS_ACTIONS, AccessSummary, Action, AuditEvent
from audit.pages import page_of
from core.roles import READ_AUDIT

CSV_COLUMNS = [
    ("time_utc", lambda e: e.action_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    ("username", lambda e: e.username),
    ("client_ip", lambda e: e.client_ip or ""),
    ("action", lambda e: e.action),
    ("status", lambda e: "" if e.status is None else str(e.status)),
    ("success", lambda e: "yes" if e.success else "no"),
    ("method", lambda e: e.method),
    ("path", lambda e: e.path),
    ("query", lambda e: e.query),
    ("study_uid", lambda e: e.study_uid),
    ("series_uid", lambda e: e.series_uid),
    ("sop_uid", lambda e: e.sop_uid),
    ("patient_id", lambda e: e.patient_id),
    ("stored_uids", lambda e: " ".join(e.stored_uids)),
    ("user_agent", lambda e: e.user_agent),
    ("detail", lambda e: e.detail),
    # A visitor's reads through a shared link, and a token's, are recorded under the
    # owner's username: only this tells them from the owner's own. Last, so that a
    # script reading the columns by position reads the others where they were.
    ("credential", lambda e: e.credential),
]
ACCESS_GROUP = ("patient_id", "study_uid", "username", "credential", "client_ip", "action")
ACCESS_COLUMNS = [
    ("patient_id", lambda a: a["patient_id"]),
    ("study_uid", lambda a: a["study_uid"]),
    ("username", lambda a: a["username"]),
    ("credential", lambda a: a["credential"]),
    ("client_ip", lambda a: a["client_ip"] or ""),
    ("action", lambda a: a["action"]),
    ("first_utc", lambda a: a["first"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
    ("last_utc", lambda a: a["last"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
    ("rows", lambda a: str(a["rows"])),
]
# A cell starting with one of these can run as a formula (OWASP's CSV-injection
# list), after any leading spaces, in any spreadsheet: `"` too, as a quoted cell
# is read as typed, and `'`, the escape itself, so that every `'` at a cell's
# start is one spreadsheet_safe added.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", '"', "'")
# A spreadsheet may split cells at any of these, whatever the file's own comma says.
CELL_SEPARATORS = ",;\t\r\n"
SEPARATORS_AS_COMMA = str.maketrans({separator: "," for separator in CELL_SEPARATORS})
# As long as nginx waits on a client that stops reading (send_timeout).
EXPORT_IDLE_SECONDS = 120


@require_safe
@never_cache
@permission_required(READ_AUDIT, raise_exception=True)
def events(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    matching = AuditEvent.objects.none()
    status = 200
    if form.is_bound and form.is_valid():
        matching = form.filter(AuditEvent.objects.all())
    elif form.is_bound:
        status = 400  # the form comes back with its errors, and no rows
    else:
        form = AuditFilterForm({})
        form.is_valid()
        matching = AuditEvent.objects.all()
    # Recorded first: the page's count and its rows must agree.
    AuditEvent.objects.record(Action.AUDIT_VIEW, request=request, status=status, success=status < 400)
    page = page_of(matching, request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    return render(request, "audit/events.html", context, status=status)


def accesses_of(events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent, dict[str, Any]]:
    """Successful accesses to patient data, one line per patient, study, user, address and action."""
    return (
        events.filter(action__in=ACCESS_ACTIONS, success=True)
        .exclude(patient_id="", study_uid="")
        .values(*ACCESS_GROUP)
        .annotate(first=Min("action_time"), last=Max("action_time"), rows=Count("id"))
        # The whole line last: pages by OFFSET neither repeat nor skip a line.
        .order_by("patient_id", "study_uid", "-last", "username", "credential", "client_ip", "action")
    )


def accesses_in(form: AuditFilterForm) -> QuerySet[Any]:
    """The filter's accesses: from AccessSummary, kept as rows arrive; counted from the
    rows themselves only when dates are chosen (the window bounds the work)."""
    if form.has_dates:
        return accesses_of(form.filter(AuditEvent.objects.all()))
    return (
        form.filter(AccessSummary.objects.all())
        .values(*ACCESS_GROUP, "first", "last", "rows")
        .order_by("patient_id", "study_uid", "-last", "id")
    )


@require_safe
@never_cache
@permission_required(READ_AUDIT, raise_exception=True)
def accesses(request: HttpRequest) -> HttpResponse:
    """Who opened patient X (or study Y), and when: the auditor's first question, on one screen."""
    form = AuditFilterForm(request.GET or None)
    status = 200 if not form.is_bound or form.is_valid() else 400
    if not form.is_bound:
        form = AuditFilterForm({})
        form.is_valid()
    grouped = accesses_in(form) if status == 200 else AuditEvent.objects.none()
    AuditEvent.objects.record(
        Action.AUDIT_VIEW, request=request, status=status, success=status < 400, detail="accesses by patient"
    )
    page = page_of(grouped, request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "bucket_minutes": max(1, settings.AUDIT_BUCKET_SECONDS // 60),
        "from_rows": status == 200 and form.has_dates,
    }
    return render(request, "audit/accesses.html", context, status=status)


class Echo:
    """csv.writer target that hands each row back instead of storing it."""

    def write(self, value: str) -> str:
        return value


def spreadsheet_safe(value: str) -> str:
    """The value with a `'` before every place a spreadsheet could start a formula cell.

    A spreadsheet whose locale separates on `;` or tab reads `x;=1+1` as two
    cells, the second a formula, quotes or not. So the value is cut at every
    `,` `;` tab, CR and LF, and each piece that could open a formula gets a `'`
    in front (the spreadsheets' "this is text" mark). Reversible: read the
    file as comma-separated CSV, then in each cell delete the `'` at its start
    and every `'` right after `,` `;` tab, CR or LF; in Python,
    `re.sub(r"(\\A|[,;\\t\\r\\n])'", r"\\1", cell)`.
    """
    if "," not in value and ";" not in value and value.isprintable():  # tab, CR, LF are not printable
        return "'" + value if value.lstrip(" ").startswith(FORMULA_STARTS) else value
    defused, start = [], 0
    for piece in value.translate(SEPARATORS_AS_COMMA).split(","):
        cell = value[start : start + len(piece) + 1]  # the piece as written, with the separator after it
        defused.append("'" + cell if cell.lstrip(" ").startswith(FORMULA_STARTS) else cell)
        start += len(piece) + 1
    return "".join(defused)


def csv_rows(events: Iterator[Any], columns: list[tuple[str, Any]] = CSV_COLUMNS) -> Iterator[str]:
    writer = csv.writer(Echo(), lineterminator="\r\n")
    yield "\ufeff" + writer.writerow([name for name, _ in columns])  # BOM: spreadsheets then read UTF-8
    for event in events:
        yield writer.writerow([spreadsheet_safe(value(event)) for _, value in columns])


def streamed(rows: QuerySet[Any], columns: list[tuple[str, Any]]) -> Iterator[str]:
    """The query's rows as CSV lines, fetched in chunks as they are sent, never all at once.

    On PostgreSQL the server-side cursor is declared inside a transaction held for
    the download: outside one Django declares it WITH HOLD, which PostgreSQL fills with
    every row before the first is sent (5.2 s at a million rows). The planner is told the
    first rows matter (`cursor_tuple_fraction`), so it walks an index, not sorts the
    table; and a client that stops reading for EXPORT_IDLE_SECONDS loses the transaction,
    which would otherwise hold back vacuum for as long as it stalled. SQLite's cursor
    reads as it goes already, and a transaction there would hold the write lock
    (`transaction_mode: IMMEDIATE`) for the whole download.
    """
    if connection.vendor != "postgresql":
        yield from csv_rows(rows.iterator(chunk_size=2000), columns)
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL cursor_tuple_fraction = 0.001")
            cursor.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{EXPORT_IDLE_SECONDS}s'")
        yield from csv_rows(rows.iterator(chunk_size=2000), columns)


@require_safe
@never_cache
@permission_required(READ_AUDIT, raise_exception=True)
def export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        return HttpResponse("Invalid filter: " + form.errors.as_text(), status=400, content_type="text/plain")
    matching = form.filter(AuditEvent.objects.all())
    AuditEvent.objects.record(
        Action.AUDIT_EXPORT, request=request, status=200, detail=request.GET.urlencode()
    )
    if request.GET.get("view") == "accesses":
        rows = streamed(accesses_in(form), ACCESS_COLUMNS)
    else:
        rows = streamed(matching, CSV_COLUMNS)
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    return response
