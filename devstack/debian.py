"""Where an Orthanc comes from: this machine's Debian packages, or the other release's.

The two Orthanc generations the portal supports are the two Debian releases'
packages: bookworm (Debian 12) ships Orthanc 1.10, trixie (Debian 13) ships 1.12,
the generation production's image runs. The host's own release is installed with
apt; the other release is a debootstrap root filesystem cached under `var/rootfs/`
and run with chroot, so it never mixes its libc with the host's.

This module imports nothing from Django: `make test` runs it before settings
exist (`python -m devstack.debian build other`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RELEASES = {"bookworm": "12", "trixie": "13"}
# The Orthanc generation each release ships (Orthanc's major.minor).
GENERATIONS = {"bookworm": (1, 10), "trixie": (1, 12)}
PACKAGES = ("orthanc", "orthanc-dicomweb", "orthanc-postgresql")
# debootstrap resolves dependencies by package name only, not by what a package
# provides: bookworm's orthanc depends on libboost-regex1.74.0-icu72, a name only
# libboost-regex1.74.0 provides, so it must be named (else orthanc stays unconfigured).
PROVIDERS = {"bookworm": ("libboost-regex1.74.0",), "trixie": ()}
MIRROR = "http://deb.debian.org/debian"
# What a usable root filesystem must hold; the stamp is written last, after checking these.
REQUIRED_FILES = (
    "usr/sbin/Orthanc",
    "usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so",
)
STAMP = ".pacsportal-rootfs.json"
# What the chroot reads to resolve names, kept as the host's. Without etc/hosts the
# host's own name went to DNS: Orthanc 1.12's DICOMweb plugin (DCMTK) looks it up
# while it answers a study or series QIDO, and some of those waited out the
# resolver's timeout (docs/performance-history.md, "A 5 s stall that was the chroot's").
HOST_FILES = ("etc/hosts", "etc/resolv.conf")


class UnsupportedHost(RuntimeError):
    pass


class RootfsMissing(RuntimeError):
    pass


def host_release(os_release: str, debian_version: str) -> str:
    """The codename of the Debian release described by /etc/os-release and /etc/debian_version.

    os-release names it (`VERSION_CODENAME=trixie`); a testing system before its
    release has no VERSION_CODENAME there, and /etc/debian_version says
    `trixie/sid` instead of `13.1`.
    """
    fields = dict(
        line.split("=", 1) for line in os_release.splitlines() if "=" in line and not line.startswith("#")
    )
    fields = {name: value.strip().strip("\"'") for name, value in fields.items()}
    if fields and fields.get("ID") != "debian":
        raise UnsupportedHost(
            f"this machine runs {fields.get('PRETTY_NAME') or fields.get('ID')!r}; "
            f"pacsportal's Orthanc comes from Debian {_supported()}"
        )
    codename = fields.get("VERSION_CODENAME", "")
    if codename not in RELEASES:
        version = debian_version.strip()
        by_number = {number: name for name, number in RELEASES.items()}
        codename = by_number.get(version.split(".")[0], version.split("/")[0])
    if codename not in RELEASES:
        raise UnsupportedHost(
            f"this machine runs Debian {fields.get('VERSION_CODENAME') or debian_version.strip()!r}; "
            f"pacsportal's Orthanc comes from Debian {_supported()}"
        )
    return codename


def _supported() -> str:
    return " or ".join(f"{number} ({name})" for name, number in RELEASES.items())


def this_host(root: Path = Path("/")) -> str:
    def read(name: str) -> str:
        try:
            return (root / "etc" / name).read_text()
        except OSError:
            return ""

    return host_release(read("os-release"), read("debian_version"))


def other_release(host: str) -> str:
    return next(name for name in RELEASES if name != host)


def cache_root() -> Path:
    return Path(os.environ.get("PORTAL_ROOTFS_DIR") or REPO / "var" / "rootfs")


@dataclass(frozen=True)
class Source:
    """The Debian release an Orthanc comes from, and its root filesystem unless it is the host's."""

    release: str
    rootfs: Path | None

    @property
    def debian(self) -> str:
        return f"Debian {RELEASES[self.release]} ({self.release})"

    def describe(self) -> str:
        if self.rootfs is None:
            where = "this machine"
        elif is_complete(self.rootfs):
            where = f"root filesystem {self.rootfs}"
        else:
            return f"{self.debian} packages: no root filesystem in {self.rootfs} yet"
        versions = ", ".join(f"{name} {version}" for name, version in self.package_versions().items())
        return f"{versions or 'Orthanc not installed'}: {self.debian} packages on {where}"

    def package_versions(self) -> dict[str, str]:
        return package_versions(self.rootfs or Path("/"))


def resolve(choice: str, host: str, cache: Path) -> Source:
    """What PORTAL_TEST_ORTHANC asks for: native, other, bookworm or trixie."""
    if choice == "native":
        release = host
    elif choice == "other":
        release = other_release(host)
    elif choice in RELEASES:
        release = choice
    else:
        names = ", ".join(["native", "other", *RELEASES])
        raise ValueError(f"unknown Orthanc source {choice!r}: use one of {names}")
    return Source(release, None if release == host else cache / release)


def require(source: Source) -> None:
    """Fail with how to install it unless the source's Orthanc can run."""
    if source.rootfs is None:
        return
    if not is_complete(source.rootfs):
        raise RootfsMissing(
            f"Orthanc from {source.debian} needs a root filesystem at {source.rootfs}: build it with "
            f"`apt-get install debootstrap && python -m devstack.debian build {source.release}` "
            "(make test does this)"
        )


def package_versions(root: Path) -> dict[str, str]:
    """Installed versions of the Orthanc packages, read from dpkg's status file under root."""
    try:
        status = (root / "var/lib/dpkg/status").read_text(errors="replace")
    except OSError:
        return {}
    found: dict[str, str] = {}
    for stanza in status.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line[:40])
        if fields.get("Package") in PACKAGES and fields.get("Status", "").endswith(" installed"):
            found[fields["Package"]] = fields.get("Version", "?")
    return {name: found[name] for name in PACKAGES if name in found}


def is_complete(root: Path) -> bool:
    return (root / STAMP).is_file() and all((root / name).exists() for name in REQUIRED_FILES)


def debootstrap(release: str, target: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise RootfsMissing("debootstrap is missing: install it with `apt-get install debootstrap`")
    include = ",".join(PACKAGES + PROVIDERS[release])
    # Its hundreds of progress lines go to a log next to the cache, shown only on failure.
    log_path = target.parent / f"{release}.debootstrap.log"
    with open(log_path, "w") as log:
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={include}", release, str(target), MIRROR],
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=1800,
        )
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise RootfsMissing(f"debootstrap {release} failed ({result.returncode}); see {log_path}:\n{tail}")


def ensure_rootfs(
    release: str,
    cache: Path,
    bootstrap: Callable[[str, Path], None] = debootstrap,
    log: Callable[[str], None] = print,
) -> Path:
    """The release's root filesystem under cache, built when missing or incomplete.

    It is built in a temporary directory next to its final place and renamed
    only once complete, so an interrupted build is never taken for a finished
    one; a lock keeps two worktrees sharing var/ from building it twice.
    """
    if release not in RELEASES:
        raise ValueError(f"unknown Debian release {release!r}")
    target = cache / release
    if is_complete(target):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{release}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(target):
            return target
        for leftover in [*cache.glob(f".{release}.build-*"), *([target] if target.exists() else [])]:
            log(f"removing incomplete root filesystem {leftover}")
            remove_tree(leftover)
        build = Path(tempfile.mkdtemp(prefix=f".{release}.build-", dir=cache))
        started = time.monotonic()
        log(f"building a Debian {release} root filesystem with {', '.join(PACKAGES)} in {target}")
        try:
            bootstrap(release, build)
            installed = package_versions(build)
            missing = [name for name in REQUIRED_FILES if not (build / name).exists()]
            missing += [f"package {name}" for name in PACKAGES if name not in installed]
            if missing:
                raise RootfsMissing(f"debootstrap of {release} finished without {', '.join(missing)}")
            # The downloaded .deb files are no use once installed, and take room in var/.
            for deb in (build / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            stamp = {"release": release, "packages": installed, "built": time.time()}
            (build / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
            build.chmod(0o755)  # mkdtemp made it private; it is the chroot's /
            build.rename(target)
        except BaseException:
            remove_tree(build)
            raise
        log(f"built {target} in {time.monotonic() - started:.0f} s")
    return target


def share_host_files(root: Path, host: Path = Path("/")) -> list[str]:
    """Copy the host's HOST_FILES into the root filesystem where they differ; the names copied.

    Each is replaced whole, so an Orthanc starting meanwhile under the same root
    never reads half of one.
    """
    copied = []
    for name in HOST_FILES:
        try:
            wanted = (host / name).read_bytes()
        except FileNotFoundError:
            continue
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if target.read_bytes() == wanted:
                continue
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        partial.write_bytes(wanted)
        partial.chmod(0o644)
        os.replace(partial, target)
        copied.append(name)
    return copied


def remove_tree(path: Path) -> None:
    """Remove a root filesystem, unmounting what an interrupted debootstrap left mounted in it."""
    if not path.exists():
        return
    prefix = str(path.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=True)
    # --one-file-system: never follow a mount that is still there into the host.
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.debian", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["host", "other", "describe", "build"])
    parser.add_argument("source", nargs="?", default="native", help="native, other, bookworm or trixie")
    args = parser.parse_args(argv)
    try:
        host = this_host()
        if args.action == "host":
            print(host)
        elif args.action == "other":
            print(other_release(host))
        else:
            source = resolve(args.source, host, cache_root())
            if args.action == "build" and source.rootfs is not None:
                share_host_files(ensure_rootfs(source.release, cache_root()))
            print(source.describe())
    except (UnsupportedHost, RootfsMissing, ValueError, subprocess.CalledProcessError) as error:
        print(f"devstack.debian: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
