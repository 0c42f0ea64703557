"""The project's own Orthanc: loopback only, credential required, DICOMweb on, demo loaded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from devstack import debian
from devstack.orthanc_server import OrthancNotInstalled, OrthancServer, OrthancStartError, Version
from orthanc import demo
from tests.conftest import DEMO_SLICES, TEST_DATABASE, new_orthanc
from tests.services import REPO


def test_it_configures_orthanc_closed_by_default(orthanc: OrthancServer) -> None:
    config = json.loads(orthanc.config_path.read_text())
    assert config["RemoteAccessAllowed"] is False
    assert config["AuthenticationEnabled"] is True
    assert config["DicomServerEnabled"] is False
    assert config["ExecuteLuaEnabled"] is False
    assert orthanc.config_path.stat().st_mode & 0o077 == 0


def test_it_refuses_requests_without_the_service_credential(orthanc: OrthancServer) -> None:
    assert requests.get(f"{orthanc.url}/system", timeout=10).status_code == 401
    wrong = requests.get(f"{orthanc.url}/system", auth=(orthanc.user, "wrong"), timeout=10)
    assert wrong.status_code == 401


def test_it_has_the_demo_ct_through_dicomweb(orthanc: OrthancServer) -> None:
    response = requests.get(
        f"{orthanc.url}/dicom-web/studies/{demo.DEMO_CT_STUDY_UID}/series/{demo.DEMO_CT_SERIES_UID}/instances",
        auth=(orthanc.user, orthanc.password),
        timeout=30,
    )
    assert response.status_code == 200
    assert len(response.json()) == DEMO_SLICES


def test_it_uses_the_index_of_the_configured_database(orthanc: OrthancServer) -> None:
    system = requests.get(f"{orthanc.url}/system", auth=(orthanc.user, orthanc.password), timeout=10).json()
    if TEST_DATABASE == "postgresql":
        assert "libOrthancPostgreSQLIndex.so" in system["DatabaseBackendPlugin"]
    else:
        assert system["DatabaseBackendPlugin"] is None


def test_it_reports_the_versions_of_the_generation_it_runs(
    orthanc: OrthancServer, orthanc_source: debian.Source
) -> None:
    versions = orthanc.versions
    assert versions is not None
    assert versions.orthanc[:2] == debian.GENERATIONS[orthanc_source.release]
    packages = orthanc_source.package_versions()
    assert versions.orthanc == Version(packages["orthanc"])
    assert versions.dicomweb == Version(packages["orthanc-dicomweb"])
    if TEST_DATABASE == "postgresql":
        assert versions.postgresql == Version(packages["orthanc-postgresql"])
    else:
        assert versions.postgresql is None
    assert versions.api >= 16


def test_it_compares_versions_as_numbers() -> None:
    assert Version("1.12.7") > (1, 10, 1)
    assert Version("1.20+dfsg-1") >= (1, 14)
    assert Version("1.7") < (1, 14)
    assert str(Version("1.12.7")) == "1.12.7"
    assert Version("mainline") == ()


def orthanc_processes(work_dir: Path) -> list[int]:
    """Processes whose command line names a file under work_dir: the Orthanc started there."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and f"{work_dir.name}/orthanc.json".encode() in cmdline:
            found.append(int(entry.name))
    return found


def wait_until_gone(work_dir: Path, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := orthanc_processes(work_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.orthanc
def test_it_leaves_no_orthanc_behind_when_stopped(orthanc_source: debian.Source) -> None:
    server = new_orthanc(orthanc_source)
    try:
        server.start()
        assert server.process is not None
        assert orthanc_processes(server.work_dir) == [server.process.pid]
    finally:
        server.stop()
    assert orthanc_processes(server.work_dir) == []
    shutil.rmtree(server.work_dir)


@pytest.mark.orthanc
def test_it_leaves_no_orthanc_behind_when_the_test_process_is_killed(orthanc_source: debian.Source) -> None:
    server = new_orthanc(orthanc_source)
    child = """
import pathlib, sys
from devstack.orthanc_server import OrthancServer
work_dir, port, rootfs = sys.argv[1:]
server = OrthancServer(
    pathlib.Path(work_dir), int(port), "u", "p", rootfs=pathlib.Path(rootfs) if rootfs else None,
    die_with_parent=True,
)
server.start()
print(server.process.pid, flush=True)
sys.stdin.read()
"""
    rootfs = str(orthanc_source.rootfs or "")
    parent = subprocess.Popen(
        [sys.executable, "-c", child, str(server.work_dir), str(server.http_port), rootfs],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert orthanc_processes(server.work_dir) == [pid]
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert wait_until_gone(server.work_dir) == []
    shutil.rmtree(server.work_dir)


def fake_rootfs(root: Path) -> Path:
    for name in debian.REQUIRED_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()
    (root / "tmp").mkdir()
    return root


@pytest.mark.parametrize(("euid", "prefix"), [(0, []), (1000, ["unshare", "--map-root-user"])])
def test_it_runs_a_root_filesystems_orthanc_under_chroot_as_root_or_in_a_user_namespace(
    euid: int, prefix: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    root = fake_rootfs(tmp_path / "trixie")
    server = OrthancServer(root / "tmp" / "o", 8042, "u", "p", rootfs=root, die_with_parent=True)
    assert server.command() == [
        *prefix,
        *["setpriv", "--pdeathsig", "TERM"],
        *["chroot", str(root), "/usr/sbin/Orthanc", "/tmp/o/orthanc.json"],
    ]
    assert server.config()["StorageDirectory"] == "/tmp/o/storage"


def test_it_refuses_files_outside_the_root_filesystem(tmp_path: Path) -> None:
    root = fake_rootfs(tmp_path / "trixie")
    server = OrthancServer(tmp_path / "elsewhere", 8042, "u", "p", rootfs=root)
    with pytest.raises(OrthancStartError, match="outside Orthanc's root filesystem"):
        server.command()


def test_it_says_how_to_rebuild_an_incomplete_root_filesystem(tmp_path: Path) -> None:
    root = fake_rootfs(tmp_path / "trixie")
    (root / "usr/share/orthanc/plugins/libOrthancDicomWeb.so").unlink()
    server = OrthancServer(root / "tmp" / "o", 8042, "u", "p", rootfs=root)
    with pytest.raises(OrthancNotInstalled, match=r"python -m devstack\.debian build trixie"):
        server.command()


def test_orthanc_under_chroot_resolves_the_hosts_own_name_as_the_host_does() -> None:
    """A root filesystem without the host's etc/hosts sent the host's name to DNS, where
    Orthanc 1.12's QIDO waited out 5 s timeouts; starting its Orthanc brings the file in."""
    source = debian.resolve("other", debian.this_host(), debian.cache_root())
    try:
        debian.require(source)
    except debian.RootfsMissing as error:
        pytest.fail(str(error), pytrace=False)
    assert source.rootfs is not None
    (source.rootfs / "etc" / "hosts").write_text("# as a root filesystem built before it was copied\n")
    server = new_orthanc(source)
    try:
        server.start()
    finally:
        server.stop()
        shutil.rmtree(server.work_dir, ignore_errors=True)
    chroot = ["chroot", str(source.rootfs)]
    if os.geteuid() != 0:
        chroot = ["unshare", "--map-root-user", *chroot]
    name = os.uname().nodename
    outside = subprocess.run(["getent", "hosts", name], capture_output=True, text=True, timeout=30)
    inside = subprocess.run([*chroot, "getent", "hosts", name], capture_output=True, text=True, timeout=30)
    assert inside.returncode == outside.returncode == 0, (inside, outside)
    assert inside.stdout.split()[0] == outside.stdout.split()[0]
