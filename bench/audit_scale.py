"""The auditor's pages against an audit table of millions of rows.

A portal of its own, on the bench's database kind (SQLite, or PostgreSQL with
`--postgres`), behind its nginx as `make run` serves it, is filled to each size in
`--audit-rows` with rows shaped as a hospital's: 200 clinicians over 18 months,
study-level reads of 30,000 patients' studies (mostly retrieves and queries),
sign-ins, stores, audit views. The database makes the rows in bulk, its indexes
rebuilt after and AccessSummary filled as the upgrade to it fills it: the state the
proxy's own writes reach one by one (tests/test_audit_summary.py), hours sooner. At each size an auditor asks
each page a few times; the median and the slowest are kept, and for each CSV the
time to its first byte of data.

    .venv/bin/python -m bench.audit_scale --audit-rows 1000000,10000000 [--postgres]
"""

from __future__ import annotations

import importlib
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
import requests

if TYPE_CHECKING:
    from bench.bench import Bench
    from tests.services import LivePortal

NAME = "audit at {} rows"
ASKS = 5
CLINICIANS = [f"clin{n:03d}" for n in range(200)]
PATIENTS = 30_000
DAYS = 540
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
COLUMNS = (
    "action_time, user_id, username, credential, client_ip, user_agent, action, status, success, "
    "method, path, query, study_uid, series_uid, sop_uid, patient_id, stored_uids, detail, bucket_key"
)
ACTIONS = ["retrieve"] * 70 + ["query"] * 20 + ["login"] * 5 + ["store"] * 3 + ["audit-view", "logout"]
PATIENT = "P0012345"
USER = CLINICIANS[7]


# The rows are made by the database itself (Python made 10,000 a second here): each
# row's picks drawn once, then its columns as the portal writes them. A bucket key
# starts with the row's number: the unique index then grows at its end, as a sorted
# load does (the random digests the portal writes cost SQLite half the load's time).
# The method, path, query, study and the UIDs a study-level read leaves empty: the
# same SQL in both databases.
REQUEST = """CASE action WHEN 'store' THEN 'POST' ELSE 'GET' END,
       CASE WHEN action IN ('retrieve', 'query', 'store')
            THEN '/pacs/dicom-web/studies/' || study || '/metadata' ELSE '/accounts/login/' END,
       '',
       CASE WHEN action IN ('retrieve', 'query', 'store') THEN study ELSE '' END,
       '', ''"""

SQLITE_ROWS = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count),
picks AS MATERIALIZED (
    SELECT abs(random()) % 200 AS u, abs(random()) % 100 AS a, abs(random()) % 30000 AS p,
           abs(random()) % 3 AS k, abs(random()) % :span AS t,
           printf('%012x', :first + i) || lower(hex(randomblob(10))) AS b
    FROM n),
made AS (
    SELECT *, CASE WHEN a < 70 THEN 'retrieve' WHEN a < 90 THEN 'query' WHEN a < 95 THEN 'login'
                   WHEN a < 98 THEN 'store' WHEN a < 99 THEN 'audit-view' ELSE 'logout' END AS action,
           '1.2.826.0.1.3680043.10.1.' || p || '.' || k AS study
    FROM picks)
INSERT INTO audit_auditevent (COLUMNS)
SELECT strftime('%Y-%m-%d %H:%M:%f', :start + t, 'unixepoch') || '000', NULL, printf('clin%03d', u),
       'session', '10.20.' || (u / 250) || '.' || (u % 250 + 1), :agent, action, 200, 1,
       REQUEST,
       CASE WHEN action IN ('retrieve', 'query', 'store') THEN printf('P%07d', p) ELSE '' END,
       '[]', '',
       CASE WHEN action IN ('retrieve', 'query') THEN b END
FROM made
"""

POSTGRESQL_ROWS = """
INSERT INTO audit_auditevent (COLUMNS)
SELECT to_timestamp(%(start)s + t), NULL, 'clin' || lpad(u::text, 3, '0'), 'session',
       ('10.20.' || (u / 250) || '.' || (u %% 250 + 1))::inet, %(agent)s, action, 200, true,
       REQUEST,
       CASE WHEN action IN ('retrieve', 'query', 'store') THEN 'P' || lpad(p::text, 7, '0') ELSE '' END,
       '[]', '',
       CASE WHEN action IN ('retrieve', 'query')
            THEN lpad(to_hex(%(first)s + i), 12, '0') || left(md5(random()::text), 20) END
FROM (
    SELECT i, u, p, t, '1.2.826.0.1.3680043.10.1.' || p || '.' || k AS study,
           CASE WHEN a < 70 THEN 'retrieve' WHEN a < 90 THEN 'query' WHEN a < 95 THEN 'login'
                WHEN a < 98 THEN 'store' WHEN a < 99 THEN 'audit-view' ELSE 'logout' END AS action
    FROM (SELECT floor(random() * 200)::int AS u, floor(random() * 100)::int AS a,
                 floor(random() * 30000)::int AS p, floor(random() * 3)::int AS k,
                 random() * %(span)s AS t, i
          FROM generate_series(1, %(count)s) AS i) AS picks
) AS made
"""


def statement(rows: str) -> str:
    return rows.replace("COLUMNS", COLUMNS).replace("REQUEST", REQUEST)


def drawn(first: int, count: int, end: datetime) -> dict[str, Any]:
    """The parameters of the rows' statement: which rows, over which seconds, from which browser."""
    span = DAYS * 86_400
    start = int(end.timestamp()) - span
    return {"first": first, "count": count, "span": span, "start": start, "agent": USER_AGENT}


def summary_backfill(vendor: str) -> str:
    """The statement that fills AccessSummary from the rows, as the upgrade to it does."""
    migration = importlib.import_module("audit.migrations.0006_access_summary")
    return next(str(sql) for sql in migration.INSTALL[vendor] if sql.lstrip().startswith("INSERT"))


def add_sqlite(path: str, first: int, count: int, end: datetime) -> None:
    """Rows in bulk: the table's indexes and summary trigger set aside, then rebuilt, and
    AccessSummary filled again from all rows (the trigger's result, test_audit_summary)."""
    database = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        database.execute("PRAGMA cache_size = -1000000")
        kept = database.execute(
            "SELECT name, type, sql FROM sqlite_master WHERE tbl_name = 'audit_auditevent'"
            " AND sql IS NOT NULL AND type IN ('index', 'trigger')"
        ).fetchall()
        database.execute("BEGIN")
        for name, kind, _ in kept:
            database.execute(f'DROP {kind} "{name}"')
        database.execute(statement(SQLITE_ROWS), drawn(first, count, end))
        for _, kind, create in kept:
            if kind == "index":
                database.execute(create)
        if database.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit_accesssummary'").fetchone():
            database.execute("DELETE FROM audit_accesssummary")
            database.execute(summary_backfill("sqlite"))
        for _, kind, create in kept:
            if kind == "trigger":
                database.execute(create)
        database.execute("COMMIT")
        database.execute("ANALYZE")
    finally:
        database.close()


def add_postgresql(url: str, first: int, count: int, end: datetime) -> None:
    """As add_sqlite: indexes set aside and rebuilt, the trigger off, the summary refilled."""
    with psycopg.connect(url) as database:
        kept = database.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_auditevent'"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        ).fetchall()
        for name, _ in kept:
            database.execute(f'DROP INDEX "{name}"')
        summary = database.execute("SELECT to_regclass('audit_accesssummary') IS NOT NULL").fetchone()
        if summary and summary[0]:  # a commit before it (a "before" run) has none
            database.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_access_summary_count")
        database.execute(statement(POSTGRESQL_ROWS), drawn(first, count, end))
        database.commit()  # the rows' deferred foreign-key checks run before an index may be built
        for _, create in kept:
            database.execute(create)
        if summary and summary[0]:
            database.execute("SET LOCAL pacsportal.audit_prune = 'on'")  # the summary's guard lets it
            database.execute("TRUNCATE audit_accesssummary")
            database.execute(summary_backfill("postgresql"))
            database.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_access_summary_count")
        database.commit()
        database.autocommit = True
        database.execute("ANALYZE")


def add_rows(portal: LivePortal, first: int, count: int, end: datetime) -> None:
    url = portal.env["DATABASE_URL"]
    if url.startswith("sqlite:///"):
        add_sqlite(url.removeprefix("sqlite:///"), first, count, end)
    else:
        add_postgresql(url, first, count, end)


def asked(session: requests.Session, url: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    answer = session.get(url, params=params, timeout=600)
    answer.raise_for_status()
    return (time.perf_counter() - started) * 1000


def first_byte(session: requests.Session, url: str, params: dict[str, str]) -> float:
    """Milliseconds to the CSV's first row of data (its header line comes first)."""
    started = time.perf_counter()
    with session.get(url, params=params, stream=True, timeout=600) as answer:
        answer.raise_for_status()
        lines = answer.iter_lines()
        next(lines)
        next(lines)
        return (time.perf_counter() - started) * 1000


PAGES = {
    "/audit/": ("/audit/", {}),
    "/audit/, a user": ("/audit/", {"user": USER}),
    "/audit/, a patient": ("/audit/", {"patient_id": PATIENT}),
    "/audit/accesses/": ("/audit/accesses/", {}),
    "/audit/accesses/, a user": ("/audit/accesses/", {"user": USER}),
    "/audit/accesses/, a patient": ("/audit/accesses/", {"patient_id": PATIENT}),
}
CSVS = {
    "events CSV": ("/audit/export.csv", {}),
    "accesses CSV": ("/audit/export.csv", {"view": "accesses"}),
}


def measure_pages(portal: LivePortal, session: requests.Session) -> dict[str, dict[str, float]]:
    """Each page asked ASKS times after one uncounted ask: the median and the slowest."""
    found: dict[str, dict[str, float]] = {}
    for kind, timed, asks in (("median_ms", asked, PAGES), ("first_byte_ms", first_byte, CSVS)):
        for name, (path, params) in asks.items():
            times = [timed(session, portal.url + path, params) for _ in range(ASKS + 1)][1:]
            found[name] = {kind: round(statistics.median(times), 1), "slowest_ms": round(max(times), 1)}
    return found


def measure(bench: Bench, sizes: list[int]) -> None:
    """The pages at each size, into bench.results as `audit at N rows`."""
    if not sizes:
        return
    database_url = bench.postgres.create_database("audit_scale") if bench.postgres else None
    portal = bench.start_portal("portal-audit-scale", {}, database_url=database_url)
    try:
        portal.add_user("dave", "auditor")
        session = portal.login("dave")
        end, held = datetime.now(UTC), 0
        for size in sizes:
            started = time.monotonic()
            add_rows(portal, held, size - held, end)
            log(f"audit table filled to {size:,} rows in {time.monotonic() - started:.0f} s")
            held = size
            found = measure_pages(portal, session)
            bench.results[NAME.format(f"{size:,}")] = found
            log(f"  {found}")
    finally:
        portal.stop()


def sizes(text: str) -> list[int]:
    return [int(size) for size in text.split(",") if size]


def log(message: str) -> None:
    print(f"[audit scale] {message}", file=sys.stderr, flush=True)


def main() -> None:
    from bench.bench import Bench, bench_arguments

    args = bench_arguments().parse_args()
    bench = Bench(args)
    try:
        bench.start_services()
        measure(bench, sizes(args.audit_rows))
    finally:
        bench.stop()
    for name, pages in bench.results.items():
        for page, figures in pages.items():
            print(f"{name:<24} {page:<30} {figures}")


if __name__ == "__main__":
    main()
