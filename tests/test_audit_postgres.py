"""On PostgreSQL the audit table is append-only at the database; pruning is the one way out."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.services import REPO, PostgresCluster


@pytest.fixture(scope="module")
def audit_database(postgres_always: PostgresCluster) -> Iterator[str]:
    url = postgres_always.create_database("append_only")
    yield url


def manage(database_url: str, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "PORTAL_VAR_DIR": tempfile.mkdtemp(prefix="pacsportal-prune-"),
        "DEBUG": "true",
        "DATABASE_URL": database_url,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True)


def insert_event(db: psycopg.Connection, when: str, action: str = "retrieve") -> None:
    db.execute(
        "INSERT INTO audit_auditevent (action_time, username, user_agent, action, success, method, path,"
        " query, study_uid, series_uid, sop_uid, patient_id, stored_uids, detail)"
        " VALUES (%s, 'alice', '', %s, true, 'GET', '/pacs/x', '', '1.2.3', '', '', '', '[]', '')",
        (when, action),
    )


def assert_refused(db: psycopg.Connection, table: str, update: str, refusal: str) -> None:
    """UPDATE, DELETE and TRUNCATE of the table, each refused by its trigger."""
    for statement in (f"UPDATE {{}} {update}", "DELETE FROM {}", "TRUNCATE {}"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=refusal):
            db.execute(sql.SQL(statement).format(sql.Identifier(table)))


def test_it_refuses_update_delete_and_truncate_from_a_raw_connection(audit_database: str) -> None:
    manage(audit_database, "migrate", "-v0")
    with connect(audit_database) as db:
        insert_event(db, "2020-01-01T00:00:00Z")
        assert_refused(db, "audit_auditevent", "SET username = 'mallory'", "append-only")
        assert db.execute("SELECT count(*) FROM audit_auditevent WHERE username = 'alice'").fetchone() == (1,)


def test_it_prunes_old_events_and_records_the_pruning(audit_database: str) -> None:
    manage(audit_database, "migrate", "-v0")
    with connect(audit_database) as db:
        db.execute("SET pacsportal.audit_prune = 'on'")
        db.execute("DELETE FROM audit_auditevent")  # a clean slate; the trigger lets only pruning through
        db.execute("RESET pacsportal.audit_prune")
        insert_event(db, "2020-01-01T00:00:00Z")
        insert_event(db, "2020-06-01T00:00:00Z")
        insert_event(db, "2099-01-01T00:00:00Z")
    output = manage(audit_database, "prune_audit", "--before", "2021-01-01")
    assert output == "Removed 2 audit events before 2021-01-01 (UTC).\n"
    with connect(audit_database) as db:
        rows = db.execute("SELECT action, username, detail FROM audit_auditevent ORDER BY id").fetchall()
    assert rows == [
        ("retrieve", "alice", ""),
        ("audit-prune", "manage.py prune_audit", "removed 2 events before 2021-01-01"),
    ]


def test_its_access_summary_changes_only_as_rows_arrive_or_are_pruned(audit_database: str) -> None:
    """The auditor's accesses page reads AccessSummary: a raw connection cannot edit it either."""
    manage(audit_database, "migrate", "-v0")
    with connect(audit_database) as db:
        db.execute("SET pacsportal.audit_prune = 'on'")
        db.execute("DELETE FROM audit_auditevent")
        db.execute("DELETE FROM audit_accesssummary")
        db.execute("RESET pacsportal.audit_prune")
        insert_event(db, "2020-01-01T00:00:00Z")
        insert_event(db, "2020-06-01T00:00:00Z")  # the same line, counted again by the trigger
        insert_event(db, "2099-01-01T00:00:00Z")
        assert_refused(db, "audit_accesssummary", "SET rows = 0", "audit summary")
        assert db.execute("SELECT username, rows FROM audit_accesssummary").fetchall() == [("alice", 3)]
    manage(audit_database, "prune_audit", "--before", "2021-01-01")
    with connect(audit_database) as db:
        line = db.execute("SELECT rows, first FROM audit_accesssummary").fetchall()
    assert [(rows, first.year) for rows, first in line] == [(1, 2099)]
