"""Every variable the portal reads is documented in .env.example."""

from __future__ import annotations

import re

from tests.services import REPO

READERS = re.compile(
    r"""(?:env_(?:str|int|bool|list|secret)|os\.environ\.get)\(\s*["']([A-Z_][A-Z0-9_]*)["']"""
)


def variables_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for path in REPO.glob("*.py"):
        names |= set(READERS.findall(path.read_text()))
    for package in ("pacsportal", "proxy", "viewer", "audit"):
        for path in (REPO / package).rglob("*.py"):
            names |= set(READERS.findall(path.read_text()))
    return names


def test_it_documents_every_variable_in_env_example() -> None:
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.MULTILINE))
    read = variables_read_by_the_code()
    assert read >= {"SECRET_KEY", "DATABASE_URL", "ORTHANC_PASSWORD"}
    assert read - documented == set()
