"""`make run`'s last step: Orthanc, the demo, gunicorn, and Ctrl-C stopping both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from devstack.orthanc_server import _is_orthanc
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
        assert health.headers["Server"] == "nginx"  # the only listener; gunicorn is on a socket
        orthanc_pid = int((tmp_path / "orthanc" / "orthanc.pid").read_text())
        assert _is_orthanc(orthanc_pid)
        # The defaults nginx runs with: reads go plain (NGINX_GZIP), no site proxy is believed.
        rendered = (tmp_path / "nginx" / "pacsportal.conf").read_text()
        gzip_map = rendered.split("map $request_uri $pacs_gzip {", 1)[1].split("}", 1)[0]
        assert 'default "";' in gzip_map
        assert "set_real_ip_from" not in rendered
    finally:
        serve.send_signal(signal.SIGINT)
        output, _ = serve.communicate(timeout=60)
    assert serve.returncode == 0, output
    assert "Loaded 10 demo instances" in output
    assert "Orthanc stopped." in output
    assert "nginx is the front on port" in output
    assert not _is_orthanc(orthanc_pid)

    again = subprocess.run([*manage, "ensure_admin"], cwd=REPO, env=env, text=True, capture_output=True)
    assert "exists; password unchanged" in again.stdout


def children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def serve_env(tmp_path: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "PORTAL_VAR_DIR": str(tmp_path),
        "PORT": str(free_port()),
        "ORTHANC_HTTP_PORT": str(free_port()),
        "DEMO_CT_SLICES": "5",
    }
    subprocess.run([sys.executable, "-m", "pacsportal.localenv"], cwd=REPO, env=env, check=True, timeout=60)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True, timeout=120
    )
    return env


def test_it_restarts_orthanc_killed_under_serve_and_the_portal_stays_up(tmp_path: Path) -> None:
    env = serve_env(tmp_path)
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    health_url = f"http://127.0.0.1:{env['PORT']}/healthz"
    try:
        assert wait_for(health_url, serve).json()["orthanc"] == "ok"
        pid_file = tmp_path / "orthanc" / "orthanc.pid"
        killed = int(pid_file.read_text())
        nginx = int((tmp_path / "nginx" / "nginx.pid").read_text())
        gunicorn = children(serve.pid) - {killed, nginx}
        assert len(gunicorn) == 1
        os.kill(killed, signal.SIGKILL)
        killed_at = time.monotonic()
        states = []
        while time.monotonic() - killed_at < 10:
            response = requests.get(health_url, timeout=5)
            states.append(response.status_code)
            if response.status_code == 200 and int(pid_file.read_text()) != killed:
                break
            time.sleep(0.2)
        back_after = time.monotonic() - killed_at
        assert states[-1] == 200, states
        assert back_after < 10
        assert serve.poll() is None
        # The same gunicorn master serves on: only Orthanc was restarted.
        assert children(serve.pid) - {int(pid_file.read_text()), nginx} == gunicorn
        print(f"\nOrthanc back {back_after:.1f} s after SIGKILL; /healthz answers: {states}")
    finally:
        serve.send_signal(signal.SIGINT)
        output, _ = serve.communicate(timeout=60)
    assert "Orthanc exited with -9; restarting it in 1 s" in output
    assert "Orthanc is up again" in output
    assert serve.returncode == 0, output


def test_orthanc_stop_tells_the_truth(tmp_path: Path) -> None:
    env = serve_env(tmp_path)
    manage = [sys.executable, "manage.py", "orthanc"]
    nothing = subprocess.run([*manage, "stop"], cwd=REPO, env=env, text=True, capture_output=True, timeout=60)
    assert (nothing.returncode, nothing.stdout.strip()) == (0, "Orthanc was not running")
    subprocess.run([*manage, "start"], cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
    pid_file = tmp_path / "orthanc" / "orthanc.pid"
    pid = int(pid_file.read_text())
    pid_file.unlink()  # as if another checkout, or a hand-started Orthanc, held the port
    try:
        foreign = subprocess.run(
            [*manage, "stop"], cwd=REPO, env=env, text=True, capture_output=True, timeout=60
        )
        assert foreign.returncode != 0
        assert "not one this checkout started" in foreign.stderr
        assert _is_orthanc(pid)
    finally:
        pid_file.write_text(str(pid))
    stopped = subprocess.run([*manage, "stop"], cwd=REPO, env=env, text=True, capture_output=True, timeout=60)
    assert (stopped.returncode, stopped.stdout.strip()) == (0, f"Orthanc stopped (pid {pid})")
    assert not _is_orthanc(pid)
