"""`make run`'s last step: Orthanc, the demo, gunicorn, and Ctrl-C stopping both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from orthanc.server import _is_orthanc
from tests.services import REPO, free_port


def wait_for(url: str, process: subprocess.Popen[str], timeout: float = 120) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "manage.py serve exited early"
        try:
            return requests.get(url, timeout=5)
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def test_it_serves_the_portal_with_orthanc_and_stops_both_on_ctrl_c(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "PORTAL_VAR_DIR": str(tmp_path),
        "PORT": str(free_port()),
        "ORTHANC_HTTP_PORT": str(free_port()),
        "DEMO_CT_SLICES": "5",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([sys.executable, "-m", "pacsportal.localenv"], cwd=REPO, env=env, check=True, timeout=60)
    subprocess.run([*manage, "migrate", "-v0"], cwd=REPO, env=env, check=True, timeout=120)
    subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], cwd=REPO, env=env, check=True, timeout=120)
    admin = subprocess.run(
        [*manage, "ensure_admin"], cwd=REPO, env=env, check=True, text=True, capture_output=True
    )
    assert "Admin account: admin  password: " in admin.stdout

    serve = subprocess.Popen(
        [*manage, "serve"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        health = wait_for(f"http://127.0.0.1:{env['PORT']}/healthz", serve)
        assert health.json()["orthanc"] == "ok"
        orthanc_pid = int((tmp_path / "orthanc" / "orthanc.pid").read_text())
        assert _is_orthanc(orthanc_pid)
    finally:
        serve.send_signal(signal.SIGINT)
        output, _ = serve.communicate(timeout=60)
    assert serve.returncode == 0, output
    assert "Loaded 10 demo instances" in output
    assert "Orthanc stopped." in output
    assert not _is_orthanc(orthanc_pid)

    again = subprocess.run([*manage, "ensure_admin"], cwd=REPO, env=env, text=True, capture_output=True)
    assert "exists; password unchanged" in again.stdout
