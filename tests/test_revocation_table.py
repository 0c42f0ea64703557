"""The revocation table (core/revocation_table.py) holds every cache, README quotes it, and each
of its bounds is asserted through real HTTP by the tests it names."""

from __future__ import annotations

import ast
import functools
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from accounts import permissions
from core import revocation_table
from core.revocation_table import CACHES, CHANGES, MEMOS
from core.ttlcache import TTLCache
from tests.services import REPO

RUNTIME = ["accounts", "audit", "core", "orthanc", "pacsportal", "proxy", "shares", "viewer"]
MEMO_DECORATORS = {"lru_cache", "cache", "cached_property"}


def runtime_modules() -> list[Path]:
    found = [path for package in RUNTIME for path in (REPO / package).rglob("*.py")]
    return [path for path in found if "migrations" not in path.parts] + [REPO / "gunicorn.conf.py"]


def dotted(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def resolve(where: str) -> Any:
    """The object at a dotted path: the longest importable module, then attributes."""
    parts = where.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        return found
    raise LookupError(where)


def test_readme_quotes_the_table() -> None:
    assert revocation_table.markdown() in (REPO / "README.md").read_text()


@pytest.mark.parametrize(
    "cache", [cache for cache in CACHES if " " not in cache.where], ids=lambda cache: cache.where
)
def test_each_cache_is_a_ttl_cache_with_the_lifetime_the_table_gives(cache: revocation_table.Cache) -> None:
    found = resolve(cache.where)
    assert isinstance(found, TTLCache)
    if cache.default_seconds is not None:
        assert found.seconds() == cache.default_seconds
        assert f"({cache.default_seconds:g} s)" in cache.lifetime


def test_the_tables_lifetimes_are_the_portals() -> None:
    assert revocation_table.DEFAULTS == {
        revocation_table.NGINX_DECISION_SECONDS: settings.NGINX_DECISION_SECONDS,
        revocation_table.PERMISSION_TTL: permissions.PERMISSION_TTL,
    }


def test_every_cache_in_the_code_is_in_the_table() -> None:
    made = {
        dotted(path): sum(
            isinstance(node, ast.Call) and getattr(node.func, "id", None) == "TTLCache"
            for node in ast.walk(ast.parse(path.read_text()))
        )
        for path in runtime_modules()
    }
    listed = {module: 0 for module in made}
    for cache in CACHES:
        if " " not in cache.where:
            listed[next(module for module in made if cache.where.startswith(module + "."))] += 1
    assert made == listed


def test_memoised_functions_are_only_those_the_table_says_cannot_go_stale() -> None:
    memoised = set()
    for path in runtime_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    target = decorator.func if isinstance(decorator, ast.Call) else decorator
                    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                    if name in MEMO_DECORATORS:
                        memoised.add(f"{dotted(path)}.{node.name}")
    assert memoised == {memo.where for memo in MEMOS}


@functools.cache
def collected(paths: tuple[str, ...]) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *paths],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {line.strip() for line in result.stdout.splitlines() if "::" in line}


def test_each_bound_is_asserted_by_http_tests_that_exist() -> None:
    named = {test for change in CHANGES for test in change.tests}
    assert all(change.tests for change in CHANGES)
    files = tuple(sorted({test.partition("::")[0] for test in named}))
    found = collected(files)
    # A name without a parameter stands for every case of the test.
    missing = {test for test in named if test not in found and not any(f"{test}[" in case for case in found)}
    assert not missing
