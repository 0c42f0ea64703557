"""The subject of an instance read, from Orthanc's index: its series' listing spares a lookup per instance."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from devstack.orthanc_server import OrthancServer
from orthanc import client, demo, lookups
from proxy.subjects import Refused, chain
from tests.dicom import unique_ct_instance
from tests.test_front import sops

# A study's UID is looked up in the study map (orthanc/owners.py) first, in the database.
pytestmark = pytest.mark.django_db

STUDY = demo.DEMO_CT_STUDY_UID
SERIES = demo.DEMO_CT_SERIES_UID


class Asked(list[str]):
    """What the portal asks the real Orthanc, in order (the requests still reach it)."""

    delay = 0.0  # seconds each request waits before it goes: a burst then overlaps for sure


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch, orthanc: OrthancServer) -> Iterator[Asked]:
    lookups.clear()
    paths = Asked()
    real = client.request

    def recording(method: str, path: str, **options: Any) -> Any:
        paths.append(f"{method} {path}")
        time.sleep(paths.delay)
        return real(method, path, **options)

    monkeypatch.setattr(client, "request", recording)
    yield paths
    lookups.clear()


def test_it_finds_the_instances_of_a_listed_series_without_asking_again(
    asked: Asked, orthanc: OrthancServer
) -> None:
    first, *others = sops(orthanc)
    listed = chain({"studies": STUDY, "series": SERIES, "instances": first})
    assert listed is not None and listed.sop_uid == first
    assert any(path.endswith("/instances") and path.startswith("GET /series/") for path in asked), asked
    asked.clear()
    for sop in others[:10]:
        found = chain({"studies": STUDY, "series": SERIES, "instances": sop})
        assert found is not None
        assert (found.sop_uid, found.series_uid, found.study_uid) == (sop, SERIES, STUDY)
        assert found.patient_id == "DEMO-CT-0001"
    assert asked == []


def test_it_still_refuses_an_instance_of_another_series(asked: Asked, orthanc: OrthancServer) -> None:
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


def burst(look_up: Callable[[], list[lookups.Resource]]) -> list[list[lookups.Resource]]:
    """`look_up` in 8 threads at once; their answers."""
    start = threading.Barrier(8)
    answers: list[list[lookups.Resource]] = []

    def run() -> None:
        start.wait()
        answers.append(look_up())

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 8
    return answers


def test_it_asks_orthanc_once_for_a_burst_of_misses(asked: Asked) -> None:
    asked.delay = 0.2
    answers = burst(lambda: lookups.by_uid("series", SERIES))
    assert all(found and found[0].series_uid == SERIES for found in answers)
    assert asked.count("POST /tools/lookup") == 1, asked
    assert sum(path.endswith("/instances") for path in asked) == 1, asked


def test_it_asks_orthanc_once_for_a_burst_asking_for_what_it_does_not_hold(asked: Asked) -> None:
    asked.delay = 0.2
    assert burst(lambda: lookups.by_uid("series", "1.2.826.0.1.3680043.999.1")) == [[]] * 8
    assert asked == ["POST /tools/lookup"]
