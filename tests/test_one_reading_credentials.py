"""One reading of credentials: what nginx caches a decision under is what Django read.

nginx's `$cookie_sessionid` is the first `sessionid` in the Cookie header, any
case, split at "," too; Django reads the last one, split at ";" only. A
decision cached under nginx's reading could be reused by a request Django
would never authenticate. These tests send credential headers as clients
(and attackers) can, through real HTTP, nginx and gunicorn, against a real
Orthanc; `make test` runs them through both doors.
"""

from __future__ import annotations

import base64
import http.client
import random
from dataclasses import dataclass

import pytest
from django.http.cookie import parse_cookie

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.services import LivePortal
from tests.test_front import sops

pytestmark = pytest.mark.live
STUDY = demo.DEMO_CT_STUDY_UID
SERIES = demo.DEMO_CT_SERIES_UID
VARIANTS = 300
SEED = 29


@dataclass(frozen=True)
class Credentials:
    """Credential headers as sent: each Cookie and each Authorization header, in order."""

    cookies: tuple[str, ...] = ()
    authorizations: tuple[str, ...] = ()

    def headers(self) -> list[tuple[str, str]]:
        return [("Cookie", value) for value in self.cookies] + [
            ("Authorization", value) for value in self.authorizations
        ]


def get(portal: LivePortal, path: str, credentials: Credentials) -> tuple[int, bytes]:
    """One GET with exactly these headers (repeated ones too, which `requests` cannot send)."""
    connection = http.client.HTTPConnection("127.0.0.1", portal.port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.putheader("Accept", "application/dicom+json")
        for name, value in credentials.headers():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def metadata_path(orthanc: OrthancServer) -> str:
    # A WADO-RS retrieve: nginx caches its decision per study, the widest reuse there is.
    sop = sops(orthanc)[0]
    return f"/pacs/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{sop}/metadata"


def basic(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def django_authenticates(credentials: Credentials, session_key: str, basic_value: str) -> bool:
    """Whether Django, reading these headers as gunicorn hands them over, would find the user.

    gunicorn joins repeated headers with ","; Django's cookie parser splits at ";"
    and keeps the last of a name. This model is the test's own, not the portal's.
    """
    cookies = parse_cookie(",".join(credentials.cookies))
    if cookies.get("sessionid") == session_key:
        return True
    joined = ",".join(credentials.authorizations)
    scheme, _, value = joined.partition(" ")
    return scheme.lower() == "basic" and value.strip() == basic_value


def without_secret(credentials: Credentials, session_key: str, basic_value: str) -> Credentials:
    """The same headers as another client could send them, knowing no secret."""
    return Credentials(
        tuple(value.replace(session_key, "stolen-nothing") for value in credentials.cookies),
        # An unknown token, not a wrong password: django-axes would lock alice out.
        tuple(
            "Bearer pacs_" + "B" * 43 if basic_value in value else value
            for value in credentials.authorizations
        ),
    )


def test_it_never_serves_an_anonymous_read_from_a_decision_made_for_a_padded_cookie(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    session_key = live_portal.login("alice").cookies["sessionid"]
    path = metadata_path(orthanc)
    for padded in (
        f"sessionid=; sessionid={session_key}",
        f"sessionid=chosen; sessionid={session_key}",
        f"SESSIONID=x; sessionid={session_key}",
        f"a=b,sessionid=x; sessionid={session_key}",
    ):
        start = live_portal.last_audit_id()
        status, _ = get(live_portal, path, Credentials((padded,)))
        for stranger in (Credentials(), Credentials(("sessionid=",)), Credentials(("sessionid=chosen",))):
            assert get(live_portal, path, stranger)[0] == 401, (padded, stranger)
        assert status == 400, padded
        refusals = [row for row in live_portal.audit_events(start) if row["status"] == 400]
        assert refusals and refusals[0]["username"] == "", padded


def test_it_serves_one_plain_session_cookie_among_others(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    session = live_portal.login("alice")
    cookie = f"csrftoken={session.cookies['csrftoken']}; sessionid={session.cookies['sessionid']}"
    assert get(live_portal, metadata_path(orthanc), Credentials((cookie,)))[0] == 200


def test_it_refuses_two_authorization_headers(live_portal: LivePortal, orthanc: OrthancServer) -> None:
    value = "Basic " + basic("alice", live_portal.passwords["alice"])
    status, _ = get(live_portal, metadata_path(orthanc), Credentials(authorizations=(value, "Bearer pacs_x")))
    assert status == 400


class Generator:
    """Seeded Cookie/Authorization variants: duplicates, case, separators, empty values,
    whitespace, quoting, repeated headers; the real session or password among decoys."""

    NAMES = ("sessionid", "SESSIONID", "SessionId", " sessionid", "sessionid ", '"sessionid"', "sessionid2")
    SEPARATORS = ("; ", ";", ",", " , ", ";;", "; ,", ",\t")

    def __init__(self, rng: random.Random, session_key: str, basic_value: str) -> None:
        self.rng, self.session_key, self.basic_value = rng, session_key, basic_value

    def cookie_value(self) -> str:
        return self.rng.choice(
            (self.session_key, self.session_key, "", "x", "chosen" * 6, f'"{self.session_key}"', " ")
        )

    def cookie(self) -> str:
        rng = self.rng
        chunks = []
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            if kind < 0.6:
                chunks.append(f"{rng.choice(self.NAMES)}={self.cookie_value()}")
            elif kind < 0.8:
                chunks.append(f"csrftoken={rng.choice(('abc', ''))}")
            elif kind < 0.9:
                chunks.append(rng.choice(("a=b", "sessionid", "=", "a=sessionid=x")))
            else:
                chunks.append(f"sessionid={self.session_key}x")
        text = chunks[0]
        for chunk in chunks[1:]:
            text += rng.choice(self.SEPARATORS) + chunk
        return text

    def authorization(self) -> str:
        rng = self.rng
        return rng.choice(
            (
                f"Basic {self.basic_value}",
                f"basic {self.basic_value}",
                f"BASIC  {self.basic_value} ",
                f"Basic {self.basic_value}, Basic {basic('bob', 'x')}",
                "Bearer pacs_" + "A" * 43,
                "Bearer ",
                "Basic",
                "Digest x",
            )
        )

    def credentials(self) -> Credentials:
        rng = self.rng
        cookies = tuple(self.cookie() for _ in range(rng.choice((0, 1, 1, 1, 2))))
        authorizations = tuple(self.authorization() for _ in range(rng.choice((0, 0, 0, 1, 2))))
        return Credentials(cookies, authorizations)


def test_it_serves_only_what_django_would_authenticate_over_300_generated_variants(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    session_key = live_portal.login("alice").cookies["sessionid"]
    basic_value = basic("alice", live_portal.passwords["alice"])
    path = metadata_path(orthanc)
    generator = Generator(random.Random(SEED), session_key, basic_value)
    seen: set[Credentials] = set()
    served = wrongly_served = 0
    while len(seen) < VARIANTS:
        variant = generator.credentials()
        if variant in seen or not variant.headers():
            continue
        seen.add(variant)
        status, _ = get(live_portal, path, variant)
        served += status == 200
        assert status != 200 or django_authenticates(variant, session_key, basic_value), variant
        # Right after, while nginx holds that decision: the same shape with no secret.
        stranger = without_secret(variant, session_key, basic_value)
        if not django_authenticates(stranger, session_key, basic_value):
            wrongly_served += get(live_portal, path, stranger)[0] == 200
        wrongly_served += get(live_portal, path, Credentials())[0] == 200
    assert wrongly_served == 0
    # The variants reach both sides of the line: some are served, most are not.
    assert 0 < served < VARIANTS
