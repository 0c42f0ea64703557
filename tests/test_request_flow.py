"""How a frame read flows through the portal's code, traced, against what docs/request-flow.md says.

The trace follows one WADO-RS frame read through nginx's decision endpoint, from
Django's first middleware to the audit row: every function of the portal's own
packages that runs, in the order it first runs. The document lists the same
functions; when the code changes the path, this test fails and prints the new
list to put there. See it with:

    .venv/bin/python -m pytest -q -s tests/test_request_flow.py
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from pydicom.uid import generate_uid

from audit.models import AuditEvent
from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.services import REPO

pytestmark = [pytest.mark.orthanc, pytest.mark.django_db]

DOCUMENT = REPO / "docs" / "request-flow.md"
RUNTIME = ("accounts", "audit", "core", "orthanc", "pacsportal", "proxy", "shares", "viewer")
FRAME = (
    f"/pacs/dicom-web/studies/{demo.DEMO_CT_STUDY_UID}/series/{demo.DEMO_CT_SERIES_UID}"
    f"/instances/{generate_uid(entropy_srcs=[demo.DEMO_SEED, 'instance', '3'])}/frames/1"
)
LISTED = re.compile(r"^\| (\d+) \| `([\w/.]+)` \| `([\w<>]+)` \|", re.MULTILINE)


def traced(call: Callable[[], Any]) -> list[tuple[str, str]]:
    """The portal's own functions that run during `call`, each once, in the order they first run."""
    seen: list[tuple[str, str]] = []

    def profile(frame: FrameType, event: str, _: Any) -> None:
        if event != "call":
            return
        path = Path(frame.f_code.co_filename)
        if not path.is_relative_to(REPO) or path.relative_to(REPO).parts[0] not in RUNTIME:
            return
        name = frame.f_code.co_name
        if name.startswith("<"):  # comprehensions are part of the function they are in
            return
        key = (str(path.relative_to(REPO)), name)
        if key not in seen:
            seen.append(key)

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return seen


def documented() -> list[tuple[str, str]]:
    return [(path, function) for _, path, function in LISTED.findall(DOCUMENT.read_text())]


def table(flow: list[tuple[str, str]]) -> str:
    return "\n".join(f"| {number} | `{path}` | `{name}` |" for number, (path, name) in enumerate(flow, 1))


def test_it_follows_a_frame_read_as_the_document_says(orthanc: OrthancServer, django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("reader")
    user.groups.set(Group.objects.filter(name="clinician"))
    client = Client()
    client.force_login(user)
    headers = {"X-Original-URI": FRAME, "X-Original-Method": "GET"}
    # The viewer's first request looked the study up in Orthanc; the traced one is a
    # frame of it from another workstation, so its audit row is still to be written.
    client.get("/_front/decide/pacs", headers=headers, REMOTE_ADDR="127.0.0.2")
    rows = AuditEvent.objects.count()

    flow = traced(lambda: client.get("/_front/decide/pacs", headers=headers, REMOTE_ADDR="127.0.0.3"))

    assert AuditEvent.objects.count() == rows + 1, "the traced read must reach its audit row"
    print(f"\n{len({path for path, _ in flow})} files, {len(flow)} functions:\n{table(flow)}")
    assert flow == documented(), f"the frame read's path changed; put this in {DOCUMENT}:\n{table(flow)}"
