"""Which Orthanc a machine runs natively, and the cached root filesystem of the other one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devstack import debian

DEBIAN_12 = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
)
DEBIAN_13 = (
    'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\nVERSION_CODENAME=trixie\n'
)
TRIXIE_BEFORE_RELEASE = 'PRETTY_NAME="Debian GNU/Linux trixie/sid"\nID=debian\n'
UBUNTU = 'PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n'
DPKG_STATUS = """Package: orthanc
Status: install ok installed
Version: 1.12.7+dfsg-4

Package: orthanc-dicomweb
Status: install ok installed
Version: 1.20+dfsg-1

Package: orthanc-postgresql
Status: deinstall ok config-files
Version: 5.0+dfsg-3+b3
"""


@pytest.mark.parametrize(
    ("os_release", "debian_version", "release"),
    [
        (DEBIAN_12, "12.11\n", "bookworm"),
        (DEBIAN_13, "13.1\n", "trixie"),
        (TRIXIE_BEFORE_RELEASE, "trixie/sid\n", "trixie"),
        ("", "12.4\n", "bookworm"),
        ("", "13.0\n", "trixie"),
    ],
)
def test_it_names_the_hosts_debian_release(os_release: str, debian_version: str, release: str) -> None:
    assert debian.host_release(os_release, debian_version) == release


@pytest.mark.parametrize(
    ("os_release", "debian_version", "named"),
    [
        (UBUNTU, "trixie/sid\n", "Ubuntu 24.04 LTS"),
        ("ID=debian\nVERSION_CODENAME=bullseye\n", "11.9\n", "bullseye"),
        ("ID=debian\n", "forky/sid\n", "forky/sid"),
    ],
)
def test_it_refuses_hosts_it_has_no_orthanc_for(os_release: str, debian_version: str, named: str) -> None:
    with pytest.raises(debian.UnsupportedHost, match="12 \\(bookworm\\) or 13 \\(trixie\\)") as refused:
        debian.host_release(os_release, debian_version)
    assert named in str(refused.value)


def test_it_reads_this_machines_release_from_etc(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text(DEBIAN_13)
    (tmp_path / "etc/debian_version").write_text("13.1\n")
    assert debian.this_host(tmp_path) == "trixie"


@pytest.mark.parametrize(
    ("host", "choice", "release", "chroot"),
    [
        ("bookworm", "native", "bookworm", False),
        ("bookworm", "other", "trixie", True),
        ("bookworm", "trixie", "trixie", True),
        ("bookworm", "bookworm", "bookworm", False),
        ("trixie", "native", "trixie", False),
        ("trixie", "other", "bookworm", True),
        ("trixie", "bookworm", "bookworm", True),
        ("trixie", "trixie", "trixie", False),
    ],
)
def test_it_runs_the_other_release_from_a_root_filesystem(
    host: str, choice: str, release: str, chroot: bool, tmp_path: Path
) -> None:
    source = debian.resolve(choice, host, tmp_path)
    assert source.release == release
    assert source.rootfs == (tmp_path / release if chroot else None)


def test_it_refuses_an_unknown_orthanc_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="native, other, bookworm, trixie"):
        debian.resolve("1.12", "bookworm", tmp_path)


def test_it_says_how_to_build_a_missing_root_filesystem(tmp_path: Path) -> None:
    missing = r"python -m devstack\.debian build trixie.*make test does"
    with pytest.raises(debian.RootfsMissing, match=missing):
        debian.require(debian.resolve("other", "bookworm", tmp_path))


def test_it_reads_installed_package_versions(tmp_path: Path) -> None:
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(DPKG_STATUS)
    assert debian.package_versions(tmp_path) == {
        "orthanc": "1.12.7+dfsg-4",
        "orthanc-dicomweb": "1.20+dfsg-1",
    }


def fake_debootstrap(release: str, target: Path) -> None:
    for name in debian.REQUIRED_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(release)
    (target / "var/lib/dpkg").mkdir(parents=True)
    (target / "var/lib/dpkg/status").write_text(
        "\n".join(f"Package: {name}\nStatus: install ok installed\nVersion: 1\n" for name in debian.PACKAGES)
    )
    (target / "var/cache/apt/archives").mkdir(parents=True)
    (target / "var/cache/apt/archives/orthanc_1.12.7.deb").write_text("deb")


def test_it_builds_a_root_filesystem_once_and_then_uses_the_cache(tmp_path: Path) -> None:
    built = debian.ensure_rootfs("trixie", tmp_path, bootstrap=fake_debootstrap, log=lambda line: None)
    assert built == tmp_path / "trixie"
    assert debian.is_complete(built)
    assert os.stat(built).st_mode & 0o777 == 0o755
    assert not list((built / "var/cache/apt/archives").iterdir())

    def must_not_run(release: str, target: Path) -> None:
        raise AssertionError("rebuilt a complete root filesystem")

    assert debian.ensure_rootfs("trixie", tmp_path, bootstrap=must_not_run, log=lambda line: None) == built


def test_it_refuses_a_build_that_left_a_package_unconfigured(tmp_path: Path) -> None:
    def unconfigured(release: str, target: Path) -> None:
        fake_debootstrap(release, target)
        (target / "var/lib/dpkg/status").write_text(DPKG_STATUS)

    with pytest.raises(debian.RootfsMissing, match="package orthanc-postgresql"):
        debian.ensure_rootfs("bookworm", tmp_path, bootstrap=unconfigured, log=lambda line: None)
    assert not (tmp_path / "bookworm").exists()


def test_it_never_takes_an_interrupted_build_for_a_complete_one(tmp_path: Path) -> None:
    def interrupted(release: str, target: Path) -> None:
        (target / "usr/sbin").mkdir(parents=True)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        debian.ensure_rootfs("trixie", tmp_path, bootstrap=interrupted, log=lambda line: None)
    assert not (tmp_path / "trixie").exists()
    assert not list(tmp_path.glob(".trixie.build-*"))


def test_it_rebuilds_what_a_killed_build_left_behind(tmp_path: Path) -> None:
    # A build killed outright leaves its temporary directory; one half-copied by
    # hand has no stamp. Neither counts, and both are cleared.
    fake_debootstrap("trixie", tmp_path / ".trixie.build-killed")
    fake_debootstrap("trixie", tmp_path / "trixie")
    assert not debian.is_complete(tmp_path / "trixie")
    built = debian.ensure_rootfs("trixie", tmp_path, bootstrap=fake_debootstrap, log=lambda line: None)
    assert debian.is_complete(built)
    assert not (tmp_path / ".trixie.build-killed").exists()


def test_it_gives_a_root_filesystem_the_hosts_name_files_only_where_they_differ(tmp_path: Path) -> None:
    host, root = tmp_path / "host", tmp_path / "root"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "hosts").write_text("127.0.0.1 localhost\n127.0.0.1 vm\n")
    (host / "etc" / "resolv.conf").write_text("nameserver 192.0.2.53\n")
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "resolv.conf").write_text("nameserver 192.0.2.53\n")
    assert debian.share_host_files(root, host) == ["etc/hosts"]
    assert (root / "etc" / "hosts").read_text() == "127.0.0.1 localhost\n127.0.0.1 vm\n"
    assert (root / "etc" / "hosts").stat().st_mode & 0o777 == 0o644
    assert debian.share_host_files(root, host) == []
    (host / "etc" / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 renamed\n")
    assert debian.share_host_files(root, host) == ["etc/hosts"]
    assert "renamed" in (root / "etc" / "hosts").read_text()
    assert sorted(path.name for path in (root / "etc").iterdir()) == ["hosts", "resolv.conf"]
