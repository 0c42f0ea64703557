"""300 MB through the proxy each way, in bounded memory: the worker's peak RSS is measured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack.orthanc_server import OrthancServer
from tests.dicom import write_large_stow_body
from tests.services import LivePortal

pytestmark = pytest.mark.live
MEGABYTES = 300
LIMIT = 64 * 1024 * 1024


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} missing for {pid}")


class PeakRss:
    """Resets the kernel's peak-RSS mark (clear_refs 5), then reads how far it rose."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        self.start = status_kb(pid, "VmRSS")

    def growth(self) -> int:
        return status_kb(self.pid, "VmHWM") - self.start


@pytest.fixture(scope="module")
def large_series(
    live_portal: LivePortal, orthanc: OrthancServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    body_path = tmp_path_factory.mktemp("stow") / "body.multipart"
    content_type, study_uid, series_uid = write_large_stow_body(body_path, MEGABYTES)
    yield {"path": str(body_path), "content_type": content_type, "study": study_uid, "series": series_uid}
    found = requests.post(
        f"{orthanc.url}/tools/lookup", data=study_uid, auth=(orthanc.user, orthanc.password), timeout=60
    ).json()
    for item in found:
        requests.delete(
            f"{orthanc.url}/studies/{item['ID']}", auth=(orthanc.user, orthanc.password), timeout=120
        )
    body_path.unlink(missing_ok=True)


def test_it_streams_a_300_mb_stow_upload(live_portal: LivePortal, large_series: dict[str, str]) -> None:
    (worker,) = live_portal.worker_pids()
    peak = PeakRss(worker)
    size = Path(large_series["path"]).stat().st_size
    with open(large_series["path"], "rb") as body:
        response = requests.post(
            f"{live_portal.url}/pacs/dicom-web/studies",
            data=body,
            auth=("bob", live_portal.passwords["bob"]),
            headers={"Content-Type": large_series["content_type"], "Accept": "application/dicom+json"},
            timeout=600,
        )
    assert response.status_code == 200, response.text[:500]
    stored = response.json()["00081199"]["Value"]
    assert len(stored) == MEGABYTES * 2
    growth = peak.growth()
    print(f"\nSTOW {size / 1e6:.0f} MB through the portal: worker peak RSS grew {growth / 2**20:.1f} MB")
    assert growth < LIMIT


def test_it_streams_a_300_mb_series_download(live_portal: LivePortal, large_series: dict[str, str]) -> None:
    (worker,) = live_portal.worker_pids()
    peak = PeakRss(worker)
    url = f"{live_portal.url}/pacs/dicom-web/studies/{large_series['study']}/series/{large_series['series']}"
    received = 0
    with requests.get(
        url,
        auth=("alice", live_portal.passwords["alice"]),
        headers={"Accept": "multipart/related; type=application/dicom"},
        stream=True,
        timeout=600,
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_content(1024 * 1024):
            received += len(chunk)
    growth = peak.growth()
    print(f"\nseries retrieve of {received / 1e6:.0f} MB: worker peak RSS grew {growth / 2**20:.1f} MB")
    assert received > MEGABYTES * 1024 * 1024
    assert growth < LIMIT
