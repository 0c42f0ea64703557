"""An upgrade: a database made and used by an older release, migrated by this code, keeps working.

The older release is run from its own checkout (`git archive` of OLD_RELEASE):
its `migrate` makes the database, its pages make a user in a role, a token and a
shared link, and its proxy writes audit rows. This code then migrates the same
database and serves it; everything made before must work as it did.
On the run's database: `make test` runs it on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devstack.orthanc_server import OrthancServer
from tests.conftest import new_portal
from tests.services import REPO, LivePortal, PostgresCluster
from tests.test_live_shares import JSON, STUDY, create_share, visit
from tests.test_live_tokens import bearer, create_token

pytestmark = pytest.mark.live
# The last release whose accounts app was labelled `pacsportal` (issue 30 relabelled it).
OLD_RELEASE = "75dde41ab5521d1b9ff1366e5c8f10b1f3185224"


@dataclass(frozen=True)
class Upgrade:
    portal: LivePortal
    token: str
    share_secret: str
    audit_before: list[dict[str, object]]


def old_checkout(directory: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", OLD_RELEASE], capture_output=True, timeout=60
    )
    if archive.returncode != 0:
        pytest.fail(
            f"the upgrade test runs release {OLD_RELEASE[:7]} from this clone's history, which lacks "
            f"it ({archive.stderr.decode(errors='replace').strip()}): use a full clone, or "
            "`git fetch --unshallow`",
            pytrace=False,
        )
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True, timeout=60)
    # The OHIF bundle and Orthanc's root filesystems, which a checkout does not hold.
    (directory / "var").symlink_to(REPO / "var")
    return directory


def used_by_the_old_release(portal: LivePortal) -> tuple[str, str]:
    """The old release's database in use: a clinician with a token and a shared link, an
    auditor, and audit rows of their logins, creations and a read. (token, share secret)"""
    portal.manage("migrate", "--noinput", "-v0")
    portal.manage("collectstatic", "--noinput", "-v0")
    portal.add_user("alice", "clinician")
    portal.add_user("dave", "auditor")
    portal.start()
    try:
        _, token = create_token(portal, "alice")
        _, share_secret = create_share(portal, "alice")
        read = requests.get(f"{portal.url}/pacs/dicom-web/studies", headers=bearer(token), timeout=30)
        assert read.status_code == 200
        study = f"{portal.url}/pacs/dicom-web/studies/{STUDY}/metadata"
        assert requests.get(study, headers=bearer(token), timeout=30).status_code == 200
    finally:
        portal.stop()
    return token, share_secret


@pytest.fixture(scope="module")
def upgrade(orthanc: OrthancServer, postgres: PostgresCluster | None) -> Iterator[Upgrade]:
    old = dataclasses.replace(
        new_portal("upgrade", orthanc.url, orthanc, postgres),
        repo=old_checkout(Path(tempfile.mkdtemp(prefix="pacsportal-old-release-"))),
    )
    token, share_secret = used_by_the_old_release(old)
    audit_before = old.audit_events()
    portal = dataclasses.replace(old, repo=REPO, process=None)
    portal.manage("migrate", "--noinput", "-v0")
    portal.manage("collectstatic", "--noinput", "-v0")
    portal.start()
    yield Upgrade(portal, token, share_secret, audit_before)
    portal.stop()
    shutil.rmtree(old.repo, ignore_errors=True)
    shutil.rmtree(portal.work_dir, ignore_errors=True)


def test_it_keeps_the_audit_rows_written_before(upgrade: Upgrade) -> None:
    assert {row["action"] for row in upgrade.audit_before} >= {
        "login",
        "token-created",
        "share-created",
        "query",
    }
    after = upgrade.portal.audit_events()
    assert after[: len(upgrade.audit_before)] == upgrade.audit_before


def test_it_shows_reads_made_before_among_the_accesses(upgrade: Upgrade) -> None:
    """The accesses page reads AccessSummary, which the migration filled from the rows kept."""
    page = upgrade.portal.login("dave").get(
        f"{upgrade.portal.url}/audit/accesses/", params={"study_uid": STUDY}, timeout=30
    )
    assert page.status_code == 200
    assert "alice" in page.text and "No accesses match" not in page.text


def test_it_lets_a_token_made_before_read_the_study(upgrade: Upgrade) -> None:
    answer = requests.get(
        f"{upgrade.portal.url}/pacs/dicom-web/studies?StudyInstanceUID={STUDY}",
        headers=bearer(upgrade.token),
        timeout=30,
    )
    assert answer.status_code == 200
    assert [study["0020000D"]["Value"] for study in answer.json()] == [[STUDY]]


def test_it_opens_a_link_shared_before(upgrade: Upgrade) -> None:
    visitor = visit(upgrade.portal, upgrade.share_secret)
    series = visitor.get(
        f"{upgrade.portal.url}/pacs/dicom-web/studies/{STUDY}/series", headers=JSON, timeout=30
    )
    assert series.status_code == 200 and series.json()


def test_it_keeps_what_each_role_allows(upgrade: Upgrade) -> None:
    portal = upgrade.portal
    clinician = portal.login("alice")
    assert clinician.get(f"{portal.url}/pacs/dicom-web/studies", headers=JSON, timeout=30).status_code == 200
    assert clinician.get(f"{portal.url}/shares/new/?study={STUDY}", timeout=10).status_code == 200
    assert clinician.get(f"{portal.url}/accounts/tokens/", timeout=10).status_code == 200
    assert clinician.get(f"{portal.url}/audit/", timeout=10).status_code == 403
    auditor = portal.login("dave")
    assert auditor.get(f"{portal.url}/audit/", timeout=10).status_code == 200
    assert auditor.get(f"{portal.url}/pacs/dicom-web/studies", headers=JSON, timeout=30).status_code == 403


def test_it_lets_the_role_share_a_study_anew(upgrade: Upgrade) -> None:
    _, secret = create_share(upgrade.portal, "alice")
    visit(upgrade.portal, secret)


def test_it_migrates_the_relabelling_back_and_forth_with_the_roles_permissions_held(
    orthanc: OrthancServer, postgres: PostgresCluster | None
) -> None:
    """Back to the old label, post_migrate gives the new one content types of its own; forth
    again, the roles must still hold what they held."""
    portal = new_portal("relabel_back_and_forth", orthanc.url, orthanc, postgres)
    roles = (
        "from django.contrib.auth.models import Group; "
        "print(sorted(f'{g.name} {p}' for g in Group.objects.all() for p in g.permissions.all()))"
    )
    try:
        portal.manage("migrate", "--noinput", "-v0")
        before = portal.manage("shell", "-c", roles)
        portal.manage("migrate", "accounts", "0004", "--noinput", "-v0")
        portal.manage("migrate", "--noinput", "-v0")
        assert portal.manage("shell", "-c", roles) == before
        assert "clinician Accounts and roles | portal permission | Read studies" in before
    finally:
        shutil.rmtree(portal.work_dir, ignore_errors=True)
