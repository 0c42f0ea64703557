"""`make bench`'s gauge doors: the nginx with no decision is the portal's read path less
the portal, and the report reads the run's noise and the hop's cost correctly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from bench.bench import NoDecision
from bench.report import gauges
from devstack.nginx import FrontNotInstalled, nginx_binary
from devstack.orthanc_server import OrthancServer
from orthanc import demo
from pacsportal.front import TEMPLATE
from tests.services import free_port


def test_no_decision_serves_what_direct_orthanc_serves(orthanc: OrthancServer, tmp_path: Path) -> None:
    try:
        nginx_binary()
    except FrontNotInstalled as error:
        pytest.fail(str(error), pytrace=False)
    door = NoDecision(tmp_path / "no-decision", free_port(), orthanc)
    door.start()
    try:
        query = f"/dicom-web/studies?StudyInstanceUID={demo.DEMO_CT_STUDY_UID}"
        accept = {"Accept": "application/dicom+json"}
        through = requests.get(f"{door.url}/pacs{query}", headers=accept, timeout=30)
        direct = requests.get(
            f"{orthanc.url}{query}", headers=accept, auth=(orthanc.user, orthanc.password), timeout=30
        )
    finally:
        door.stop()
    assert through.status_code == 200, through.text
    study = through.json()[0]
    assert study["0020000D"]["Value"] == [demo.DEMO_CT_STUDY_UID]
    # Forwarded reaches Orthanc as the portal sends it: links resolve under /pacs.
    assert study["00081190"]["Value"][0].startswith(f"{door.url}/pacs/dicom-web/studies/")
    assert len(through.json()) == len(direct.json())


def test_no_decision_takes_the_portals_buffers_and_keepalive(tmp_path: Path) -> None:
    class Archive:
        url, user, password = "http://127.0.0.1:9", "bench", "secret"

    # A stand-in for the Orthanc server: the three attributes the config reads.
    config = NoDecision(tmp_path, 8080, Archive()).config()  # type: ignore[arg-type]
    template = TEMPLATE.read_text()
    for directive in ("proxy_buffers", "proxy_buffer_size", "proxy_busy_buffers_size", "keepalive_timeout"):
        line = re.search(rf"^\s*({directive} [^;]+;)", template, re.M)
        assert line is not None and line[1] in config, directive
    assert "access_log off;" in config and "auth_request" not in config


def test_gauges_read_the_noise_and_the_hop() -> None:
    results = {
        "QIDO": {
            "direct": {"requests_per_s": 1000.0},
            "nginx, no decision": {"requests_per_s": 850.0, "paired_requests_per_s_vs_direct": 0.86},
            "portal": {"requests_per_s": 800.0, "paired_requests_per_s_vs_no_decision": 0.95},
            "direct, again": {"requests_per_s": 900.0, "paired_requests_per_s_vs_direct": 0.97},
        }
    }
    assert gauges(results) == [
        "QIDO: noise, direct measured twice: 0.90 of requests/s (paired 0.97)",
        "QIDO: nginx with no decision/direct 0.85 (paired 0.86); portal/nginx with no decision"
        " 0.94 (paired 0.95) of requests/s",
    ]
