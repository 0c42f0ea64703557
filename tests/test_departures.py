"""Every departure from stock Django or a library is in docs/departures.md: raw SQL and patched
attributes of imported modules or classes appear only in the runtime modules its table names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.services import REPO

RUNTIME = ["accounts", "audit", "core", "orthanc", "pacsportal", "proxy", "shares", "viewer"]
# cursor.execute(...), Manager.raw(...), QuerySet.extra(...), RawSQL(...)
RAW_SQL = {"execute", "executemany", "executescript", "raw", "extra", "RawSQL"}
LISTED = re.compile(r"`([\w/.]+\.py)")


def runtime_modules() -> list[Path]:
    found = [path for package in RUNTIME for path in (REPO / package).rglob("*.py")]
    return [path for path in found if "migrations" not in path.parts] + [REPO / "gunicorn.conf.py"]


def root(node: ast.expr) -> str | None:
    """The name an attribute chain starts from (`getattr(x, ...)` counts as x)."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
        return root(node.args[0]) if node.args else None
    return node.id if isinstance(node, ast.Name) else None


def library_names(tree: ast.Module) -> set[str]:
    """Names bound by imports, and names assigned from them (`policy = getattr(message, ...)`)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    assignments = [node for node in ast.walk(tree) if isinstance(node, ast.Assign)]
    grown = True
    while grown:
        grown = False
        for node in assignments:
            if root(node.value) in names:
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id not in names:
                        names.add(target.id)
                        grown = True
    return names


def departures(source: str) -> list[str]:
    tree = ast.parse(source)
    names = library_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in RAW_SQL:
                found.append(f"line {node.lineno}: raw SQL ({called})")
            if called == "setattr" and node.args and root(node.args[0]) in names:
                found.append(f"line {node.lineno}: setattr on {ast.unparse(node.args[0])}")
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        found.extend(
            f"line {target.lineno}: patches {ast.unparse(target)}"
            for target in targets
            if isinstance(target, ast.Attribute) and root(target) in names
        )
    return found


def listed() -> set[str]:
    text = (REPO / "docs" / "departures.md").read_text()
    return {path for line in text.splitlines() if line.startswith("| ") for path in LISTED.findall(line)}


def test_it_names_every_module_with_raw_sql_or_a_patched_attribute() -> None:
    unlisted = {
        f"{path.relative_to(REPO)} {found}"
        for path in runtime_modules()
        if str(path.relative_to(REPO)) not in listed()
        for found in departures(path.read_text())
    }
    assert not unlisted, "add them to docs/departures.md, with the measured reason"


def test_every_module_it_names_exists() -> None:
    assert {path for path in listed() if not (REPO / path).exists()} == set()


@pytest.mark.parametrize(
    "source",
    [
        "from django.db import connection\nwith connection.cursor() as c:\n    c.execute('SELECT 1')\n",
        "from django.db.models.expressions import RawSQL\nRawSQL('1', [])\n",
        "def f(model):\n    return model.objects.raw('SELECT 1')\n",
        "import http.client\nhttp.client.parse_headers = None\n",
        "from gunicorn.http import message\npolicy = getattr(message, 'HeaderPolicy')\npolicy.x = 1\n",
        "from django.contrib import admin\nadmin.site.login_form = None\n",
        "import time\nsetattr(time, 'monotonic', None)\n",
    ],
)
def test_it_recognises_raw_sql_and_patches(source: str) -> None:
    assert departures(source)


def test_it_leaves_plain_attributes_of_the_modules_own_objects_alone() -> None:
    source = (
        "from audit.models import AuditEvent\ndef f(event: AuditEvent):\n    event.pk = 1\n    self.x = 2\n"
    )
    assert departures(source) == []
