"""The layout shows the design: apps never import the project package, and only
orthanc/ opens connections to Orthanc."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.services import REPO

APPS = ["accounts", "audit", "orthanc", "proxy", "shares", "viewer"]
# Ways to open an HTTP connection; only orthanc/ (the one client) may use them.
CONNECTION_MAKERS = {"connection_from_url", "PoolManager", "HTTPConnectionPool", "HTTPConnection", "urlopen"}
CONNECTION_MODULES = {"requests", "httpx", "http.client", "urllib.request"}


def modules(app: str) -> list[Path]:
    return [path for path in (REPO / app).rglob("*.py") if "migrations" not in path.parts]


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("app", APPS)
def test_it_never_imports_the_project_package_from_an_app(app: str) -> None:
    upwards = {
        f"{path.relative_to(REPO)}: {name}"
        for path in modules(app)
        for name in imported(path)
        if name == "pacsportal" or name.startswith("pacsportal.")
    }
    assert not upwards


@pytest.mark.parametrize("app", ["accounts", "audit", "pacsportal", "proxy", "shares", "viewer"])
def test_it_opens_connections_to_orthanc_only_from_the_orthanc_package(app: str) -> None:
    found = set()
    for path in modules(app):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute | ast.Name):
                name = node.attr if isinstance(node, ast.Attribute) else node.id
                if name in CONNECTION_MAKERS:
                    found.add(f"{path.relative_to(REPO)}:{node.lineno} {name}")
        found.update(
            f"{path.relative_to(REPO)}: imports {name}" for name in imported(path) & CONNECTION_MODULES
        )
    assert not found
