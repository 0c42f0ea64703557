"""The subject of an instance read, from Orthanc's index: its series' listing spares a lookup per instance."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from orthanc import client, demo, lookups
from orthanc.server import OrthancServer
from proxy.subjects import Refused, chain
from tests.dicom import unique_ct_instance

STUDY = demo.DEMO_CT_STUDY_UID
SERIES = demo.DEMO_CT_SERIES_UID


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch, orthanc: OrthancServer) -> Iterator[list[str]]:
    """What the portal asks the real Orthanc, in order (the requests still reach it)."""
    lookups.clear()
    paths: list[str] = []
    real = client.request

    def recording(method: str, path: str, **options: Any) -> Any:
        paths.append(f"{method} {path}")
        return real(method, path, **options)

    monkeypatch.setattr(client, "request", recording)
    yield paths
    lookups.clear()


def sops(orthanc: OrthancServer) -> list[str]:
    instances = requests.get(
        f"{orthanc.url}/dicom-web/studies/{STUDY}/series/{SERIES}/instances",
        auth=(orthanc.user, orthanc.password),
        timeout=30,
    ).json()
    return [item["00080018"]["Value"][0] for item in instances]


def test_instances_of_a_series_it_has_listed_cost_no_further_request(
    asked: list[str], orthanc: OrthancServer
) -> None:
    first, *others = sops(orthanc)
    assert chain({"studies": STUDY, "series": SERIES, "instances": first}).sop_uid == first
    assert any(path.endswith("/instances") and path.startswith("GET /series/") for path in asked), asked
    asked.clear()
    for sop in others[:10]:
        found = chain({"studies": STUDY, "series": SERIES, "instances": sop})
        assert (found.sop_uid, found.series_uid, found.study_uid) == (sop, SERIES, STUDY)
        assert found.patient_id == "DEMO-CT-0001"
    assert asked == []


def test_an_instance_of_another_series_is_still_refused(asked: list[str], orthanc: OrthancServer) -> None:
    data, _, other_sop = unique_ct_instance(label="lookups")
    stored = requests.post(
        f"{orthanc.url}/instances", data=data, auth=(orthanc.user, orthanc.password), timeout=30
    )
    assert stored.ok
    chain({"studies": STUDY, "series": SERIES, "instances": sops(orthanc)[0]})  # the series is listed
    with pytest.raises(Refused) as refused:
        chain({"studies": STUDY, "series": SERIES, "instances": other_sop})
    assert refused.value.status == 404
    assert any(path == "POST /tools/lookup" for path in asked)  # not in the listing: Orthanc is asked


def test_a_burst_of_misses_asks_orthanc_once(asked: list[str]) -> None:
    start = threading.Barrier(8)
    answers: list[list[lookups.Resource]] = []

    def look_up() -> None:
        start.wait()
        answers.append(lookups.by_uid("series", SERIES))

    threads = [threading.Thread(target=look_up) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 8
    assert all(found and found[0].series_uid == SERIES for found in answers)
    assert asked.count("POST /tools/lookup") == 1, asked
    assert sum(path.endswith("/instances") for path in asked) == 1, asked
