"""The front's TLS: Mozilla's intermediate profile (guideline 5.7, as sslyze 6.3 ships it)
checked by sslyze against a running front, HSTS once on every answer nginx sends over TLS,
and plain HTTP sent to HTTPS. Issue 29's findings, on the real nginx, gunicorn and Orthanc."""

from __future__ import annotations

import dataclasses
import datetime
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sslyze import (
    CertificateInfoExtraArgument,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanResult,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)

from devstack.nginx import NativeFront, nginx_binary
from devstack.orthanc_server import OrthancServer
from orthanc import demo
from pacsportal import front
from pacsportal.front import ContainerFront, FrontStartError
from tests.conftest import start_portal
from tests.rawhttp import basic
from tests.services import LivePortal, PostgresCluster, free_port, require_binary
from tests.test_settings import COMPLETE, run_check

STUDY = demo.DEMO_CT_STUDY_UID
SERIES = demo.DEMO_CT_SERIES_UID
FRAME_ACCEPT = "multipart/related; type=application/octet-stream"
# Mozilla's intermediate HSTS: two years, this host only unless SECURE_HSTS_INCLUDE_SUBDOMAINS asks.
HSTS = "max-age=63072000"
INTERMEDIATE = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
# The profile allows DHE only with a dhparam file of 2048 bits or more; the front sets none.
ECDHE_ONLY = {name for name in INTERMEDIATE.ciphers.iana if name.startswith("TLS_ECDHE_")}


@dataclasses.dataclass(frozen=True)
class PrivateCA:
    """A site's private CA, as a hospital would run one, and the front's certificate from it."""

    directory: Path
    openssl: str

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def key(self) -> Path:
        return self.directory / "key.pem"

    @property
    def chain(self) -> Path:
        """The front's certificate, then the CA's: what TLS_CERT_FILE holds."""
        return self.directory / "chain.pem"

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [self.openssl, *args],
            stdin=subprocess.DEVNULL,  # s_client: close the connection once the handshake is done
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.directory,
        )
        return done.stdout

    def issue(self, name: str, extensions: str) -> Path:
        """A certificate for the front's key (`name`.pem), and the chain of it and the CA's."""
        (self.directory / f"{name}.ext").write_text(extensions)
        self.run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "1",
                 "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem")  # fmt: skip
        chain = self.directory / f"{name}-chain.pem"
        chain.write_text((self.directory / f"{name}.pem").read_text() + self.ca.read_text())
        return chain


LEAF_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    # Not a self-signed certificate: sslyze verifies with cryptography's verifier, which
    # (as browsers do) refuses a CA certificate as the server's own.
    authority = PrivateCA(
        tmp_path_factory.mktemp("private-ca"), require_binary("openssl", "apt-get install openssl")
    )
    authority.run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-sha256",
                  "-subj", "/CN=pacsportal test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", "ca.key",
                  "-out", "ca.pem")  # fmt: skip
    authority.run("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                  "-keyout", "key.pem", "-out", "leaf.csr")  # fmt: skip
    authority.issue("leaf", LEAF_EXTENSIONS).rename(authority.chain)
    return authority


@pytest.fixture(scope="module")
def tls_front(
    private_ca: PrivateCA, orthanc: OrthancServer, postgres: PostgresCluster | None
) -> Iterator[LivePortal]:
    """The portal behind its TLS front, Django sending its own HSTS too (PORTAL_HTTPS)."""
    portal = start_portal(
        "tls_profile",
        orthanc.url,
        orthanc,
        postgres,
        front=True,
        TLS_CERT_FILE=str(private_ca.chain),
        TLS_KEY_FILE=str(private_ca.key),
        PORTAL_HTTPS="true",
    )
    yield portal
    portal.stop()
    shutil.rmtree(portal.work_dir, ignore_errors=True)


def scan(port: int, cafile: Path) -> ServerScanResult:
    """What sslyze needs for the Mozilla check, the certificate verified against `cafile`."""
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname="localhost", port=port, ip_address="127.0.0.1"),
        scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=cafile)
        ),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = scanner.get_results()
    return result


# sslyze loads its bundled trust stores (Mozilla, Apple...), which hold roots whose serial
# numbers cryptography 46 warns of; nothing of ours.
@pytest.mark.filterwarnings("ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning")
def test_its_tls_meets_mozillas_intermediate_profile(tls_front: LivePortal, private_ca: PrivateCA) -> None:
    result = scan(tls_front.port, private_ca.ca)
    assert result.scan_result is not None, result.connectivity_error_trace
    attempt = result.scan_result.tls_1_2_cipher_suites
    assert attempt.result is not None, attempt.error_trace
    accepted = sorted(suite.cipher_suite.name for suite in attempt.result.accepted_cipher_suites)
    print(f"\nTLS 1.2 cipher suites accepted: {len(accepted)}: {', '.join(accepted)}")
    # No check is set aside: with the private CA as its trust store, sslyze validates the
    # certificate (RSA 2048, SHA-256, a day's lifespan) as the profile asks.
    try:
        check_server_against_tls_configuration(result, INTERMEDIATE)
    except ServerNotCompliantWithTlsConfiguration as error:
        pytest.fail(f"not Mozilla intermediate: {error.issues}", pytrace=False)
    assert set(accepted) <= ECDHE_ONLY
    # Both certificate kinds' suites are listed; an RSA certificate can use only the RSA ones.
    assert set(accepted) == {name for name in ECDHE_ONLY if "_RSA_" in name}


def hsts_headers(response: requests.Response) -> list[str]:
    """Every Strict-Transport-Security header as sent (requests folds repeated ones into one)."""
    return list(response.raw.headers.getlist("Strict-Transport-Security"))


def raw_tls(port: int, cafile: str, request: bytes) -> tuple[int, list[tuple[str, str]]]:
    """A hand-written request over TLS: the status and every header line of the answer."""
    context = ssl.create_default_context(cafile=cafile)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=20) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = tls.recv(4096)
            if not chunk:
                break
            received += chunk
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = [(name.strip(), value.strip()) for name, value in (line.split(":", 1) for line in head[1:])]
    return int(head[0].split(" ", 2)[1]), headers


def sop(portal: LivePortal) -> str:
    found = requests.get(
        f"{portal.url}/pacs/dicom-web/studies/{STUDY}/series/{SERIES}/instances",
        auth=("alice", portal.passwords["alice"]),
        verify=portal.verify,
        timeout=30,
    )
    return str(found.json()[0]["00080018"]["Value"][0])


Answer = Callable[[LivePortal], requests.Response]


def django_page(portal: LivePortal) -> requests.Response:
    return requests.get(f"{portal.url}/accounts/login/", verify=portal.verify, timeout=30)


def django_redirect(portal: LivePortal) -> requests.Response:
    return requests.get(f"{portal.url}/portal/", verify=portal.verify, allow_redirects=False, timeout=30)


def streamed_frame(portal: LivePortal) -> requests.Response:
    url = f"{portal.url}/pacs/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{sop(portal)}/frames/1"
    alice = ("alice", portal.passwords["alice"])
    return requests.get(url, auth=alice, headers={"Accept": FRAME_ACCEPT}, verify=portal.verify, timeout=30)


def archive_error_page(portal: LivePortal) -> requests.Response:
    """Orthanc's own 400 or 404 for a frame the instance lacks, worded by nginx (/_front/archive/)."""
    url = f"{portal.url}/pacs/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{sop(portal)}/frames/999"
    alice = ("alice", portal.passwords["alice"])
    return requests.get(url, auth=alice, headers={"Accept": FRAME_ACCEPT}, verify=portal.verify, timeout=30)


def read_with_a_body(portal: LivePortal) -> requests.Response:
    """The /pacs location's own `return 400`: a read has no body."""
    alice = ("alice", portal.passwords["alice"])
    url = f"{portal.url}/pacs/dicom-web/studies"
    return requests.get(url, auth=alice, data=b"body", verify=portal.verify, timeout=30)


def refusal(portal: LivePortal) -> requests.Response:
    """An anonymous read: refused and worded by the decision, answered by nginx (/_front/refused/)."""
    return requests.get(f"{portal.url}/pacs/dicom-web/studies", verify=portal.verify, timeout=30)


def decision_endpoint(portal: LivePortal) -> requests.Response:
    return requests.get(f"{portal.url}/_front/decide/pacs", verify=portal.verify, timeout=30)


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (django_page, {200}),
        (django_redirect, {302}),
        (streamed_frame, {200}),
        (archive_error_page, {400, 404}),
        (read_with_a_body, {400}),
        (refusal, {401}),
        (decision_endpoint, {404}),
    ],
    ids=[
        "django-page",
        "django-redirect",
        "streamed-frame",
        "archive-error",
        "read-with-a-body",
        "refusal",
        "front-only",
    ],
)
def test_every_answer_over_tls_carries_one_hsts_header(
    tls_front: LivePortal, answer: Answer, status: set[int]
) -> None:
    response = answer(tls_front)
    assert response.status_code in status, response.text[:300]
    assert hsts_headers(response) == [HSTS]


def test_nginx_own_refusal_of_a_request_carries_one_hsts_header(tls_front: LivePortal) -> None:
    # Two Authorization headers: nginx refuses the request itself, before any location.
    password = tls_front.passwords["alice"]
    request = (
        "GET /pacs/dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Authorization: {basic('alice', password)}\r\nAuthorization: {basic('alice', password)}\r\n\r\n"
    ).encode()
    status, headers = raw_tls(tls_front.port, tls_front.env["TLS_CERT_FILE"], request)
    assert status == 400
    assert [value for name, value in headers if name.lower() == "strict-transport-security"] == [HSTS]


def test_plain_http_to_the_tls_port_is_redirected_to_https(tls_front: LivePortal) -> None:
    plain = requests.get(
        f"http://127.0.0.1:{tls_front.port}/portal/?next=%2Faudit%2F", allow_redirects=False, timeout=30
    )
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://127.0.0.1:{tls_front.port}/portal/?next=%2Faudit%2F"
    # HSTS over plain HTTP means nothing to a browser (RFC 6797, 8.1) and is not sent.
    assert hsts_headers(plain) == []


@pytest.fixture(scope="module")
def redirecting_front(tls_front: LivePortal) -> Iterator[NativeFront]:
    """A second front for the same portal, with the plain-HTTP listener (HTTP_REDIRECT_PORT)."""
    fronted: NativeFront = tls_front.front  # type: ignore[attr-defined]  # set by tests/front.py
    second = dataclasses.replace(
        fronted,
        work_dir=Path(tempfile.mkdtemp(prefix="pacsportal-redirect-nginx-")),
        port=free_port(),
        http_redirect_port=free_port(),
        process=None,
    )
    second.start()
    yield second
    second.stop()
    shutil.rmtree(second.work_dir, ignore_errors=True)


def test_the_redirect_listener_sends_every_request_to_https_and_serves_nothing(
    redirecting_front: NativeFront, tls_front: LivePortal
) -> None:
    plain = f"http://127.0.0.1:{redirecting_front.http_redirect_port}"
    secure = f"https://127.0.0.1:{redirecting_front.port}"
    for method, path in [
        ("GET", "/healthz"),
        ("GET", "/pacs/dicom-web/studies?PatientID=DEMO-CT-0001"),
        ("POST", "/accounts/login/"),
        ("GET", "/_front/decide/pacs"),
        ("GET", "/admin/login/?next=/admin/"),
    ]:
        answer = requests.request(
            method,
            f"{plain}{path}",
            auth=("alice", tls_front.passwords["alice"]),
            allow_redirects=False,
            timeout=30,
        )
        assert answer.status_code == 301, (method, path)
        assert answer.headers["Location"] == f"{secure}{path}"
        assert hsts_headers(answer) == [] and "Set-Cookie" not in answer.headers
    health = requests.get(f"{plain}/healthz", verify=tls_front.verify, timeout=30)
    assert health.url == f"{secure}/healthz" and health.json()["status"] == "ok"
    assert hsts_headers(health) == [HSTS]


def a_front(work_dir: Path, port: int = 8443, **options: Any) -> NativeFront:
    return NativeFront(
        work_dir=work_dir,
        port=port,
        portal_upstream="unix:/nonexistent/gunicorn.sock",
        orthanc_upstream="127.0.0.1:8042",
        orthanc_user="orthanc",
        orthanc_password="secret",
        **options,
    )


def nginx_t(config: NativeFront) -> subprocess.CompletedProcess[str]:
    try:
        path = config.write_config()
        return subprocess.run(
            [nginx_binary(), "-t", "-c", str(path), "-p", str(config.work_dir)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        shutil.rmtree(config.decision_cache, ignore_errors=True)


def stapled(authority: PrivateCA, port: int) -> str:
    """What `openssl s_client -status` says of the OCSP answer the front staples."""
    hello = authority.run("s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                          "-status", "-CAfile", str(authority.ca))  # fmt: skip
    return "\n".join(line.strip() for line in hello.splitlines() if "OCSP" in line or "Cert Status" in line)


def test_ocsp_stapling_staples_the_cas_answer_verified_against_the_trusted_ca_file(
    tmp_path: Path, private_ca: PrivateCA
) -> None:
    # The CA's responder runs here (openssl ocsp on a free port), named by the
    # certificate: a public CA's would need the network, which these machines lack.
    responder_port = free_port()
    chain = private_ca.issue(
        "stapled", LEAF_EXTENSIONS + f"authorityInfoAccess = OCSP;URI:http://127.0.0.1:{responder_port}/\n"
    )
    serial = private_ca.run("x509", "-in", "stapled.pem", "-noout", "-serial").strip().split("=", 1)[1]
    expiry = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)).strftime("%y%m%d%H%M%SZ")
    (private_ca.directory / "index.txt").write_text(f"V\t{expiry}\t\t{serial}\tunknown\t/CN=localhost\n")
    responder = subprocess.Popen(
        [private_ca.openssl, "ocsp", "-index", "index.txt", "-port", str(responder_port), "-CA", "ca.pem",
         "-rsigner", "ca.pem", "-rkey", "ca.key", "-nmin", "5"],
        cwd=private_ca.directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    options: dict[str, Any] = {"tls_cert": str(chain), "tls_key": str(private_ca.key), "port": free_port()}
    front_with = a_front(
        tmp_path / "stapling", **options, ocsp_stapling=True, trusted_ca_file=str(private_ca.ca)
    )
    front_without = a_front(tmp_path / "default", **{**options, "port": free_port()})
    try:
        front_with.start()
        front_without.start()
        # nginx asks the responder at the first handshake and staples from the next ones on.
        deadline = time.monotonic() + 20
        while "Cert Status: good" not in (answer := stapled(private_ca, front_with.port)):
            assert time.monotonic() < deadline, (
                f"nothing stapled: {answer}\n{front_with.log_path.read_text()}"
            )
            time.sleep(0.2)
        assert "OCSP Response Status: successful" in answer
        assert stapled(private_ca, front_without.port) == "OCSP response: no response sent"
    finally:
        front_with.stop()
        front_without.stop()
        responder.terminate()
        responder.wait(10)
    rendered = (tmp_path / "stapling" / "pacsportal.conf").read_text()
    assert "ssl_stapling on;" in rendered and "ssl_stapling_verify on;" in rendered
    assert f"ssl_trusted_certificate {private_ca.ca};" in rendered


def test_a_plain_http_front_sends_no_hsts_and_has_no_tls(tmp_path: Path) -> None:
    plain = a_front(tmp_path).values()
    assert plain["NGINX_TLS"] == "" and plain["NGINX_HSTS"] == ""
    assert nginx_t(a_front(tmp_path)).returncode == 0


def test_hsts_covers_subdomains_and_preload_only_when_asked(tmp_path: Path) -> None:
    tls: dict[str, Any] = {"tls_cert": "/certs/cert.pem", "tls_key": "/certs/key.pem", "version": (1, 30)}
    assert a_front(tmp_path, **tls).values()["NGINX_HSTS"] == HSTS
    asked = a_front(tmp_path, **tls, hsts_include_subdomains=True, hsts_preload=True).values()
    assert asked["NGINX_HSTS"] == f"{HSTS}; includeSubDomains; preload"
    assert a_front(tmp_path, **tls, hsts_seconds=300).values()["NGINX_HSTS"] == "max-age=300"


def a_container_front(memory: Path, **options: Any) -> ContainerFront:
    """compose.yaml's front with TLS, its configuration written into `memory` (a tmpfs)."""
    return ContainerFront(
        work_dir=memory,
        port=front.CONTAINER_PORT,
        portal_upstream="web:8000",
        orthanc_upstream="orthanc:8042",
        orthanc_user="pacsportal",
        orthanc_password="secret",
        tls_cert="/certs/cert.pem",
        tls_key="/certs/key.pem",
        version=front.COMPOSE_FRONT_VERSION,
        **options,
    )


def test_the_compose_front_gets_the_same_tls_profile(tmp_path: Path) -> None:
    memory = Path(tempfile.mkdtemp(prefix="pacsportal-tls-profile-", dir="/dev/shm"))
    try:
        a_container_front(memory).write_config()
        rendered = (memory / "pacsportal.conf").read_text()
    finally:
        shutil.rmtree(memory, ignore_errors=True)
    native = a_front(tmp_path, tls_cert="/certs/cert.pem", tls_key="/certs/key.pem", version=(1, 30)).values()
    assert native["NGINX_TLS"] in rendered
    for directive in front.TLS_PROFILE:
        assert directive in rendered
    assert f'on "{HSTS}";' in rendered
    assert "error_page 497 =301 https://" in rendered


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        ({"http_redirect_port": 8080}, "HTTP_REDIRECT_PORT"),
        ({"ocsp_stapling": True}, "TLS_OCSP_STAPLING"),
        ({"tls_cert": "/c.pem", "tls_key": "/k.pem", "http_redirect_port": 8443}, "HTTP_REDIRECT_PORT"),
        ({"tls_cert": "/c.pem", "tls_key": "/k.pem", "trusted_ca_file": "/ca.pem"}, "TLS_TRUSTED_CA_FILE"),
    ],
    ids=["redirect-without-tls", "stapling-without-tls", "redirect-on-the-tls-port", "ca-without-stapling"],
)
def test_it_refuses_tls_options_that_do_nothing(
    tmp_path: Path, options: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(FrontStartError, match=refusal):
        a_front(tmp_path, version=(1, 30), **options).values()


def test_the_compose_front_refuses_a_redirect_listener_compose_does_not_publish() -> None:
    memory = Path(tempfile.mkdtemp(prefix="pacsportal-tls-profile-", dir="/dev/shm"))
    try:
        with pytest.raises(FrontStartError, match="HTTP_REDIRECT_PORT"):
            a_container_front(memory, http_redirect_port=8080).write_config()
    finally:
        shutil.rmtree(memory, ignore_errors=True)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TLS_OCSP_STAPLING", "maybe", "TLS_OCSP_STAPLING='maybe' is not a boolean"),
        ("HTTP_REDIRECT_PORT", "70000", "HTTP_REDIRECT_PORT=70000 is out of range"),
        ("TLS_HSTS_SECONDS", "two years", "TLS_HSTS_SECONDS='two years' is not an integer"),
    ],
)
def test_it_refuses_a_malformed_tls_setting(tmp_path: Path, name: str, value: str, message: str) -> None:
    result = run_check({**COMPLETE, name: value}, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
