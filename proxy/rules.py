"""Role rules: what each mount lets a user do, as pure functions of method, path and permissions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core import roles
from proxy import paths
from proxy.origin import SAFE_METHODS

# Audit actions, by name (audit.models.Action holds the same values).
QUERY, RETRIEVE, STORE, ADMIN_READ, ADMIN_WRITE = "query", "retrieve", "store", "admin-read", "admin-write"
PACS, PACS_ADMIN = "pacs", "pacs-admin"


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    allow: str = ""


def action(mount: str, method: str, path: str) -> str:
    if mount == PACS_ADMIN:
        # An export is a read of what it takes out, recorded before it starts.
        return ADMIN_READ if method in SAFE_METHODS or paths.is_export(path) else ADMIN_WRITE
    if method not in SAFE_METHODS:
        return STORE
    return QUERY if paths.is_qido(path) else RETRIEVE


def pacs(method: str, path: str, can: Callable[[str], bool]) -> Refusal | None:
    """/pacs: DICOMweb and WADO-URI only; reads for clinicians, STOW for uploaders."""
    if method in SAFE_METHODS and paths.is_pacs_read(path):
        return None if can(roles.READ_STUDIES) else forbidden()
    if method == "POST" and paths.is_stow(path):
        return None if can(roles.STORE_STUDIES) else forbidden()
    if paths.is_pacs_read(path):
        allowed = "GET, HEAD, POST" if paths.is_stow(path) else "GET, HEAD"
        return Refusal(405, f"{method} is not allowed here", allow=allowed)
    return Refusal(404, "not a DICOMweb or WADO-URI resource")


def pacs_admin(method: str, path: str, can: Callable[[str], bool]) -> Refusal | None:
    """/pacs-admin: Orthanc Explorer and the whole REST API, for PACS admins."""
    return None if can(roles.ADMINISTER_PACS) else forbidden()


def forbidden() -> Refusal:
    return Refusal(403, "your account may not do this")


BY_MOUNT = {PACS: pacs, PACS_ADMIN: pacs_admin}
