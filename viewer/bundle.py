"""The pinned OHIF release: fetched with npm, checked against a committed hash,
unpacked and pre-compressed once into a cache directory.

`@ohif/app` on the npm registry ships `dist/`, a complete production build, so
no Node build is needed. The cache lives outside PORTAL_VAR_DIR (default
`var/ohif/`) so that `make run`, the tests and the Docker build share one copy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from whitenoise.compress import Compressor

# The checkout this module lives in (the default cache sits in its var/).
REPOSITORY = Path(__file__).resolve().parent.parent


# The pin, shared with the Dockerfile: package, version, and npm's dist.integrity
# for the release (the tarball must match it byte for byte).
PIN = json.loads((Path(__file__).with_name("ohif.json")).read_text())
PACKAGE: str = PIN["package"]
VERSION: str = PIN["version"]
INTEGRITY: str = PIN["integrity"]
# Not pre-compressed: onnxruntime for the optional AI tools (136 MB, rarely
# loaded) and source maps; formats that are compressed already.
SKIP_DIRS = ("ort",)
SKIP_SUFFIXES = (".map", ".png", ".jpg", ".jpeg", ".gif", ".ico", ".woff", ".woff2", ".gz", ".br", ".zip")
INSTALLED_MARKER = ".pacsportal-installed"

Progress = Callable[[str], None]


class BundleError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("OHIF_CACHE_DIR") or REPOSITORY / "var" / "ohif").resolve()


def dist_dir() -> Path:
    return cache_dir() / f"app-{VERSION}" / "dist"


def is_installed() -> bool:
    return (dist_dir() / INSTALLED_MARKER).is_file()


def install(progress: Progress) -> Path:
    """Fetch, verify, unpack and compress the release unless that is done already."""
    dist = dist_dir()
    if is_installed():
        progress(f"OHIF {VERSION} already installed in {dist}")
        return dist
    tarball = fetch(progress)
    verify(tarball)
    progress(f"verified {tarball.name} against its committed sha512")
    unpack(tarball, dist, progress)
    compress(dist, progress)
    (dist / INSTALLED_MARKER).write_text(VERSION + "\n")
    progress(f"OHIF {VERSION} installed in {dist}")
    return dist


def fetch(progress: Progress) -> Path:
    cache = cache_dir()
    tarball = cache / f"ohif-app-{VERSION}.tgz"
    if tarball.is_file():
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise BundleError("npm is missing: install it with `apt-get install npm` (make run does this)")
    cache.mkdir(parents=True, exist_ok=True)
    progress(f"downloading {PACKAGE}@{VERSION} with npm pack (about 50 MB)...")
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        result = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", scratch, "--silent"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0:
            raise BundleError(f"npm pack {PACKAGE}@{VERSION} failed: {result.stderr.strip()[-500:]}")
        (Path(scratch) / tarball.name).rename(tarball)
    return tarball


def verify(tarball: Path) -> None:
    algorithm, _, expected = INTEGRITY.partition("-")
    digest = hashlib.new(algorithm)
    with tarball.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    if base64.b64encode(digest.digest()).decode() != expected:
        tarball.unlink()
        raise BundleError(f"{tarball.name} does not match the committed integrity hash; deleted it")


def unpack(tarball: Path, dist: Path, progress: Progress) -> None:
    progress(f"unpacking {tarball.name}...")
    shutil.rmtree(dist, ignore_errors=True)
    staging = dist.parent / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(tarball) as archive:
        members = [member for member in archive.getmembers() if member.name.startswith("package/dist/")]
        archive.extractall(staging, members=members, filter="data")
    (staging / "package" / "dist").rename(dist)
    shutil.rmtree(staging)


def compressible(dist: Path) -> list[Path]:
    files = []
    for path in sorted(dist.rglob("*")):
        relative = path.relative_to(dist)
        if not path.is_file() or relative.parts[0] in SKIP_DIRS or path.suffix.lower() in SKIP_SUFFIXES:
            continue
        files.append(path)
    return files


def _compress_one(path: str) -> int:
    for _ in Compressor(quiet=True).compress(path):
        pass
    return os.path.getsize(path)


def compress(dist: Path, progress: Progress) -> None:
    """Brotli and gzip copies beside each file, once: whitenoise serves them by Accept-Encoding."""
    files = compressible(dist)
    total = sum(path.stat().st_size for path in files)
    done = 0
    progress(f"pre-compressing {len(files)} files ({total / 1e6:.0f} MB) with brotli and gzip...")
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        # Largest first, so the long brotli runs overlap instead of trailing.
        ordered = sorted(files, key=lambda path: path.stat().st_size, reverse=True)
        for count, size in enumerate(pool.map(_compress_one, map(str, ordered)), start=1):
            done += size
            if count % 20 == 0 or count == len(files):
                progress(f"  compressed {count}/{len(files)} files ({done / 1e6:.0f}/{total / 1e6:.0f} MB)")


if __name__ == "__main__":
    try:
        install(lambda line: print(line, flush=True))
    except BundleError as error:
        raise SystemExit(f"error: {error}") from None
