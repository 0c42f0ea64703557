"""With its database stopped, the portal refuses patient data (503) and recovers by itself."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
import requests

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.conftest import start_portal
from tests.services import LivePortal, PostgresCluster

pytestmark = pytest.mark.live
FRAME_PATH = f"/pacs/dicom-web/studies/{demo.DEMO_CT_STUDY_UID}/series/{demo.DEMO_CT_SERIES_UID}/metadata"


@pytest.fixture(scope="module")
def outage_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()  # its own: stopping it must not touch Orthanc's index
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def outage_portal(outage_cluster: PostgresCluster, orthanc: OrthancServer) -> Iterator[LivePortal]:
    portal = start_portal("outage_portal", orthanc.url, orthanc, outage_cluster)
    yield portal
    portal.stop()


def read(portal: LivePortal, session: requests.Session | None = None) -> requests.Response:
    if session is not None:
        return session.get(f"{portal.url}{FRAME_PATH}", timeout=30)
    return requests.get(f"{portal.url}{FRAME_PATH}", auth=("alice", portal.passwords["alice"]), timeout=30)


def test_it_refuses_reads_while_the_database_is_down_and_recovers(
    outage_portal: LivePortal, outage_cluster: PostgresCluster
) -> None:
    session = outage_portal.login("alice")
    assert read(outage_portal, session).status_code == 200
    outage_cluster.run("pg_ctl", "-D", str(outage_cluster.dir / "data"), "-m", "immediate", "-w", "stop")
    try:
        for attempt in (read(outage_portal, session), read(outage_portal)):
            assert attempt.status_code == 503
            assert b"DICM" not in attempt.content and b"00080018" not in attempt.content
        home = session.get(f"{outage_portal.url}/portal/", timeout=30)
        assert home.status_code == 503
        assert requests.get(f"{outage_portal.url}/healthz", timeout=30).json()["database"] == "down"
    finally:
        options = f"-p {outage_cluster.port} -k {outage_cluster.dir} -c listen_addresses=127.0.0.1"
        outage_cluster.run(
            "pg_ctl",
            "-D",
            str(outage_cluster.dir / "data"),
            "-o",
            options,
            "-l",
            str(outage_cluster.dir / "log"),
            "-w",
            "start",
        )
    deadline = time.monotonic() + 30
    statuses = []
    while time.monotonic() < deadline:
        statuses = [read(outage_portal, session).status_code, read(outage_portal).status_code]
        if statuses == [200, 200]:
            break
        time.sleep(0.5)
    assert statuses == [200, 200]
    # The session's read was recorded before the outage (this bucket's row covers it);
    # the Basic read was refused throughout, so its row is written on recovery.
    reads = [event for event in outage_portal.audit_events() if event["action"] == "retrieve"]
    assert {(event["username"], event["credential"]) for event in reads} == {
        ("alice", "session"),
        ("alice", "basic"),
    }


def test_it_refuses_a_read_it_cannot_record_while_the_database_is_up(
    outage_portal: LivePortal, outage_cluster: PostgresCluster
) -> None:
    outage_portal.add_user("ursula", "clinician")
    database = outage_cluster.url("outage_portal").replace("postgres://", "postgresql://")
    with psycopg.connect(database, autocommit=True) as db:
        db.execute(REFUSE_INSERTS)
    try:
        refused = requests.get(
            f"{outage_portal.url}{FRAME_PATH}", auth=("ursula", outage_portal.passwords["ursula"]), timeout=30
        )
        assert refused.status_code == 503
        assert refused.json()["error"] == "the access could not be audited, so it was refused"
        assert b"00080018" not in refused.content and b"DEMO-CT" not in refused.content
    finally:
        with psycopg.connect(database, autocommit=True) as db:
            db.execute("DROP TRIGGER audit_refuse_inserts ON audit_auditevent")
    served = requests.get(
        f"{outage_portal.url}{FRAME_PATH}", auth=("ursula", outage_portal.passwords["ursula"]), timeout=30
    )
    assert served.status_code == 200
    (row,) = [event for event in outage_portal.audit_events() if event["username"] == "ursula"]
    assert (row["action"], row["study_uid"], row["patient_id"]) == (
        "retrieve",
        demo.DEMO_CT_STUDY_UID,
        "DEMO-CT-0001",
    )


# The audit table refuses new rows while everything else (sessions, users) works.
REFUSE_INSERTS = """
CREATE OR REPLACE FUNCTION audit_refuse_inserts() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit table not writable (test)';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_refuse_inserts BEFORE INSERT ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_inserts();
"""
