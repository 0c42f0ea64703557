"""The layout shows the design: apps never import the project package, core/ and
audit/ never import an app above them, only orthanc/ opens connections to Orthanc,
and nothing that runs in production imports the local stack (devstack/: Orthanc
and nginx supervision, debootstrap, `manage.py serve`), which may import any of it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.services import REPO

APPS = ["accounts", "audit", "core", "orthanc", "proxy", "shares", "viewer"]
# The packages above the ground floor: core/ and audit/ import none of them.
ABOVE = ["accounts", "orthanc", "pacsportal", "proxy", "shares", "viewer"]
# What the image runs: the apps and the project package.
RUNTIME = [*APPS, "pacsportal"]
LOCAL_STACK = "devstack"
# Ways to open an HTTP connection; only orthanc/ (the one client) may use them.
CONNECTION_MAKERS = {"connection_from_url", "PoolManager", "HTTPConnectionPool", "HTTPConnection", "urlopen"}
CONNECTION_MODULES = {"requests", "httpx", "http.client", "urllib.request"}


def modules(app: str) -> list[Path]:
    return [path for path in (REPO / app).rglob("*.py") if "migrations" not in path.parts]


def imported(path: Path) -> set[str]:
    names: set[str] = set()
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


@pytest.mark.parametrize(("package", "below"), [("core", ["audit", *ABOVE]), ("audit", ABOVE)])
def test_it_never_imports_upwards_from_the_ground_floor(package: str, below: list[str]) -> None:
    upwards = {
        f"{path.relative_to(REPO)}: {name}"
        for path in modules(package)
        for name in imported(path)
        if name.split(".")[0] in below
    }
    assert not upwards


@pytest.mark.parametrize("app", ["accounts", "audit", "core", "pacsportal", "proxy", "shares", "viewer"])
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


@pytest.mark.parametrize("package", RUNTIME)
def test_it_never_imports_the_local_stack_from_a_runtime_package(package: str) -> None:
    found = {
        f"{path.relative_to(REPO)}: {name}"
        for path in modules(package)
        for name in imported(path)
        if name == LOCAL_STACK or name.startswith(f"{LOCAL_STACK}.")
    }
    assert not found


def test_it_leaves_the_local_stack_out_of_the_image() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].strip("/") for line in lines if line.startswith("!")}
    assert set(RUNTIME) <= allowed
    assert LOCAL_STACK not in allowed
