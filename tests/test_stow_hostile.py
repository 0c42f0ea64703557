"""Hostile uploads through real HTTP: only well-formed data reaches Orthanc, and Orthanc stays up.

Each case is one STOW-RS request as an uploader. Afterwards Orthanc's own
/system answers, Orthanc holds exactly the good instances of the case, the
answer lists every refused part in its Failed SOP Sequence, and every refused
part has its audit row.
"""

from __future__ import annotations

import functools
import io
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydicom
import pytest
import requests
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, generate_uid

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.services import LivePortal

pytestmark = pytest.mark.live
CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary={boundary}'
MARKER_UID = "9.9.9.9.424242"


@dataclass
class Instance:
    """One part to send: its bytes, its UIDs, and whether the portal should let it through."""

    data: bytes
    sop_uid: str = ""
    good: bool = True
    content_type: str | None = "application/dicom"


def dataset(patient_id: str | None = None, study_uid: str | None = None) -> Dataset:
    ds = pydicom.dcmread(demo.sample_paths()[0])
    ds.PatientID = patient_id or f"HOSTILE-{secrets.token_hex(4)}"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def good(patient_id: str | None = None, study_uid: str | None = None) -> Instance:
    ds = dataset(patient_id, study_uid)
    return Instance(encoded(ds), ds.SOPInstanceUID)


SEQUENCE_TAG = b"\x08\x00\x40\x11"  # (0008,1140) Referenced Image Sequence
UNDEFINED_LENGTH = b"\xff\xff\xff\xff"
ITEM, ITEM_END, SEQUENCE_END = b"\xfe\xff\x00\xe0", b"\xfe\xff\x0d\xe0\0\0\0\0", b"\xfe\xff\xdd\xe0\0\0\0\0"


def nesting(tag: bytes, depth: int, vr: bytes = b"SQ", defined_lengths: bool = False) -> bytes:
    """`depth` sequences of one item each, the innermost empty; `vr` empty for implicit VR."""
    element = b""
    header = tag + (vr + b"\0\0" if vr else b"")
    for _ in range(depth):
        if defined_lengths:
            item = ITEM + struct.pack("<I", len(element)) + element
            element = header + struct.pack("<I", len(item)) + item
        else:
            element = header + UNDEFINED_LENGTH + ITEM + UNDEFINED_LENGTH + element + ITEM_END + SEQUENCE_END
    return element


def nested(depth: int, encoding: str = "explicit", defined_lengths: bool = False) -> Instance:
    """Sequences nested `depth` levels deep, written by hand (pydicom itself recurses).

    `encoding`: "explicit" (VR SQ), "implicit" (an implicit VR file: no VR to
    say it is a sequence), or "UN" (an explicit VR file whose outer sequence is
    VR UN of undefined length, its content implicit VR as PS3.5 6.2.2 says);
    "private ..." nests in a private tag, which no dictionary knows.
    """
    ds = dataset()
    marker = Dataset()
    marker.ReferencedSOPInstanceUID = MARKER_UID
    tag = SEQUENCE_TAG
    if encoding.startswith("private "):
        block = ds.private_block(0x0009, "HOSTILE", create=True)
        block.add_new(0x10, "SQ", Sequence([marker]))
        tag = struct.pack("<HH", 0x0009, block.get_tag(0x10).element)
    else:
        ds.ReferencedImageSequence = Sequence([marker])
    implicit = encoding.endswith("implicit")
    if implicit:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    data = encoded(ds)
    start = data.index(tag)
    at = start + (4 if implicit else 8)
    (length,) = struct.unpack("<I", data[at : at + 4])
    end = data.index(SEQUENCE_END, start) + 8 if length == 0xFFFFFFFF else at + 4 + length
    if encoding.endswith("UN"):
        element = tag + b"UN\0\0" + as_sequence_value(nesting(tag, depth - 1, b""))
    else:
        element = nesting(tag, depth, b"SQ" if encoding == "explicit" else b"", defined_lengths)
    return Instance(data[:start] + element + data[end:], ds.SOPInstanceUID, good=depth <= 16)


def as_sequence_value(inner: bytes) -> bytes:
    """An undefined length and one item holding `inner`, closed: what follows a sequence's VR."""
    return UNDEFINED_LENGTH + ITEM + UNDEFINED_LENGTH + inner + ITEM_END + SEQUENCE_END


def un_of_defined_length(depth: int, private: bool) -> Instance:
    """Nesting under an outer VR UN of defined length, its content implicit VR: for a
    tag the dictionary calls SQ, a sequence to both readers; for a private tag, bytes."""
    ds = dataset()
    if private:
        block = ds.private_block(0x0009, "HOSTILE", create=True)
        block.add_new(0x10, "LT", "placeholder")
        tag = struct.pack("<HH", 0x0009, block.get_tag(0x10).element)
    else:
        ds.ReferencedImageSequence = Sequence([Dataset()])
        tag = SEQUENCE_TAG
    data = encoded(ds)
    start = data.index(tag)
    if private:
        (length,) = struct.unpack("<H", data[start + 6 : start + 8])
        end = start + 8 + length
    else:
        (length,) = struct.unpack("<I", data[start + 8 : start + 12])
        end = data.index(SEQUENCE_END, start) + 8 if length == 0xFFFFFFFF else start + 12 + length
    inner = nesting(tag, depth - 1, b"", defined_lengths=True)
    item = ITEM + struct.pack("<I", len(inner)) + inner
    element = tag + b"UN\0\0" + struct.pack("<I", len(item)) + item
    return Instance(data[:start] + element + data[end:], ds.SOPInstanceUID, good=private or depth <= 16)


def after_the_pixel_data(depth: int) -> Instance:
    """A private sequence nested `depth` deep after the pixel data, where a reader that
    stops before the pixel data never looks, and Orthanc's parser reads on."""
    ds = dataset()
    # CT_small ends with (FFFC,FFFC) padding: what follows it would be out of order, refused as such.
    del ds[0xFFFCFFFC]
    creator = b"\xe1\x7f\x10\x00LO" + struct.pack("<H", 8) + b"HOSTILE "
    element = nesting(b"\xe1\x7f\x10\x10", depth)  # (7FE1,1010)
    return Instance(encoded(ds) + creator + element, ds.SOPInstanceUID, good=depth <= 16)


def behind_an_unknown_vr(depth: int) -> Instance:
    """Nesting behind VR "ZZ": pydicom reads a 2-byte length and takes the nesting for
    the value; DCMTK reads 2 reserved bytes and an undefined length: a sequence."""
    ds = dataset()
    block = ds.private_block(0x0009, "HOSTILE", create=True)
    block.add_new(0x10, "LO", "placeholder")
    tag = struct.pack("<HH", 0x0009, block.get_tag(0x10).element)
    data = encoded(ds)
    start = data.index(tag)
    (length,) = struct.unpack("<H", data[start + 6 : start + 8])
    value = as_sequence_value(nesting(tag, depth - 1, b""))
    element = tag + b"ZZ" + struct.pack("<H", len(value)) + value
    return Instance(data[:start] + element + data[start + 8 + length :], ds.SOPInstanceUID, good=False)


def deflated() -> Instance:
    ds = dataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    return Instance(encoded(ds), ds.SOPInstanceUID, good=False)


def edited(change: Callable[[Dataset], None], good_after: bool = False) -> Instance:
    ds = dataset()
    change(ds)
    return Instance(encoded(ds), str(ds.get("SOPInstanceUID", "")), good=good_after)


def bad_bytes(data: bytes) -> Instance:
    return Instance(data, good=False)


def without(keyword: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        delattr(ds, keyword)

    return change


def set_uid(keyword: str, value: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        uid = ds.SOPInstanceUID if keyword != "SOPInstanceUID" else UID(value)
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        setattr(ds, keyword, value)

    return change


def demo_owned(keyword: str) -> Callable[[], Instance]:
    """An instance re-using one of the demo CT's UIDs under another patient or study."""

    def make() -> Instance:
        ds = dataset()
        if keyword == "StudyInstanceUID":
            ds.StudyInstanceUID = demo.DEMO_CT_STUDY_UID
        elif keyword == "SeriesInstanceUID":
            ds.SeriesInstanceUID = demo.DEMO_CT_SERIES_UID
        return Instance(encoded(ds), ds.SOPInstanceUID, good=False)

    return make


@dataclass
class Case:
    parts: Callable[[], list[Instance]]
    status: int
    raw: Callable[[list[Instance], str], bytes] | None = None  # builds a malformed body instead
    content_type: str | None = None
    study_in_path: Callable[[list[Instance]], str] | None = None
    failed: int | None = None  # Failed SOP Sequence items expected (None: count the bad parts)
    notes: list[str] = field(default_factory=list)


def body_of(parts: list[Instance], boundary: str) -> bytes:
    chunks = []
    for part in parts:
        head = f"--{boundary}\r\n"
        if part.content_type is not None:
            head += f"Content-Type: {part.content_type}\r\n"
        chunks.append(head.encode() + b"\r\n" + part.data + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


def one(make: Callable[[], Instance]) -> Callable[[], list[Instance]]:
    return lambda: [make()]


def truncated(size: int) -> Instance:
    return bad_bytes(good().data[:size])


def wrong_magic() -> Instance:
    data = bytearray(good().data)
    data[128:132] = b"DICN"
    return bad_bytes(bytes(data))


def no_preamble() -> Instance:
    return bad_bytes(good().data[128:])


def same_study_two_patients() -> list[Instance]:
    study = generate_uid()
    return [good("PATIENT-ONE-" + secrets.token_hex(3), study), bad_copy(good("PATIENT-TWO", study))]


def two_of_one_study() -> list[Instance]:
    study = generate_uid()
    return [good("TWO-GOOD", study), good("TWO-GOOD", study)]


def bad_copy(instance: Instance) -> Instance:
    instance.good = False
    return instance


def same_series_two_studies() -> list[Instance]:
    first = dataset()
    second = dataset(patient_id=first.PatientID)
    second.SeriesInstanceUID = first.SeriesInstanceUID
    return [
        Instance(encoded(first), first.SOPInstanceUID),
        Instance(encoded(second), second.SOPInstanceUID, False),
    ]


def demo_instance_elsewhere() -> Instance:
    response = requests.get(
        f"{ORTHANC['url']}/dicom-web/studies/{demo.DEMO_CT_STUDY_UID}/series/{demo.DEMO_CT_SERIES_UID}/instances",
        auth=ORTHANC["auth"],
        timeout=30,
    )
    sop = response.json()[0]["00080018"]["Value"][0]
    ds = dataset()
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    return Instance(encoded(ds), sop, good=False)


def with_part_type(content_type: str | None, good_part: bool) -> Callable[[], list[Instance]]:
    def make() -> list[Instance]:
        instance = good()
        instance.content_type, instance.good = content_type, good_part
        return [instance]

    return make


def huge_part_header(parts: list[Instance], boundary: str) -> bytes:
    return (
        f"--{boundary}\r\nX-Padding: {'a' * 20000}\r\n\r\n".encode()
        + parts[0].data
        + f"\r\n--{boundary}--\r\n".encode()
    )


def no_closing_delimiter(parts: list[Instance], boundary: str) -> bytes:
    return f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + parts[0].data


def breaks_off_after(parts: list[Instance], boundary: str) -> bytes:
    """Whole parts, then a part whose headers never end: the whole ones are stored."""
    whole = body_of(parts, boundary)[: -len(f"--{boundary}--\r\n")]
    return whole + f"--{boundary}\r\nX-Padding: {'a' * 20000}".encode()


def many(count: int, last: Callable[[], Instance] | None = None) -> Callable[[], list[Instance]]:
    """More parts than one checked batch (proxy.stow.BATCH_PARTS), and maybe a bad one last."""
    return lambda: [good() for _ in range(count)] + ([last()] if last else [])


def no_parts(parts: list[Instance], boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()


def other_boundary(parts: list[Instance], boundary: str) -> bytes:
    return body_of(parts, "not-the-announced-boundary")


ORTHANC: dict[str, Any] = {}
CASES: dict[str, Case] = {
    "one good instance": Case(one(good), 200),
    "two good instances of one study": Case(two_of_one_study, 200),
    "a part without a Content-Type": Case(with_part_type(None, True), 200),
    **{
        f"nesting {depth} levels (allowed)": Case(one(functools.partial(nested, depth)), 200)
        for depth in (1, 4, 8, 16)
    },
    **{
        f"nesting {depth} levels": Case(one(functools.partial(nested, depth)), 400)
        for depth in (17, 24, 40, 60, 200, 1000, 3000)
    },
    **{
        f"nesting {depth} levels, {encoding} VR": Case(
            one(functools.partial(nested, depth, encoding)), status
        )
        for encoding in ("implicit", "UN", "private implicit", "private UN")
        for depth, status in ((8, 200), (40, 400), (1000, 400))
    },
    "nesting 8 levels, implicit VR, defined lengths": Case(one(lambda: nested(8, "implicit", True)), 200),
    "nesting 40 levels, implicit VR, defined lengths": Case(one(lambda: nested(40, "implicit", True)), 400),
    "nesting 8 levels, UN of defined length": Case(one(lambda: un_of_defined_length(8, False)), 200),
    "nesting 40 levels, UN of defined length": Case(one(lambda: un_of_defined_length(40, False)), 400),
    "40 levels of bytes in a private UN of defined length": Case(
        one(lambda: un_of_defined_length(40, True)), 200
    ),
    "nesting 2 levels after the pixel data": Case(one(lambda: after_the_pixel_data(2)), 200),
    "nesting 40 levels after the pixel data": Case(one(lambda: after_the_pixel_data(40)), 400),
    "nesting 40 levels behind an unknown VR": Case(one(lambda: behind_an_unknown_vr(40)), 400),
    "a deflated body": Case(one(deflated), 400),
    "truncated after the preamble": Case(one(lambda: truncated(140)), 400),
    "truncated in the header": Case(one(lambda: truncated(400)), 400),
    "no preamble": Case(one(no_preamble), 400),
    "wrong magic": Case(one(wrong_magic), 400),
    "empty part": Case(one(lambda: bad_bytes(b"")), 400),
    "random bytes": Case(one(lambda: bad_bytes(secrets.token_bytes(2048))), 400),
    "DICOM JSON part": Case(with_part_type("application/dicom+json", False), 400),
    "text part": Case(with_part_type("text/plain", False), 400),
    "missing StudyInstanceUID": Case(one(lambda: edited(without("StudyInstanceUID"))), 400),
    "missing SeriesInstanceUID": Case(one(lambda: edited(without("SeriesInstanceUID"))), 400),
    "missing SOPInstanceUID": Case(one(lambda: edited(without("SOPInstanceUID"))), 400),
    "missing SOPClassUID": Case(one(lambda: edited(without("SOPClassUID"))), 400),
    "study UID with letters": Case(one(lambda: edited(set_uid("StudyInstanceUID", "1.2.abc"))), 400),
    "study UID of 65 characters": Case(
        one(lambda: edited(set_uid("StudyInstanceUID", "1." + "2" * 63))), 400
    ),
    "study UID with a leading zero": Case(one(lambda: edited(set_uid("StudyInstanceUID", "1.02.3"))), 400),
    "study UID with an empty component": Case(one(lambda: edited(set_uid("StudyInstanceUID", "1..2"))), 400),
    "series UID with a space": Case(one(lambda: edited(set_uid("SeriesInstanceUID", "1.2 3"))), 400),
    "SOP UID with a slash": Case(one(lambda: edited(set_uid("SOPInstanceUID", "1.2/3"))), 400),
    "demo study under another patient": Case(one(demo_owned("StudyInstanceUID")), 409),
    "demo series under another study": Case(one(demo_owned("SeriesInstanceUID")), 409),
    "demo instance under another series": Case(one(demo_instance_elsewhere), 409),
    "one study, two patients, in one body": Case(same_study_two_patients, 202),
    "one series, two studies, in one body": Case(same_series_two_studies, 202),
    "good, 3000 levels, good": Case(lambda: [good(), nested(3000), good()], 202),
    "good and truncated": Case(lambda: [good(), truncated(300)], 202),
    "good and missing UID": Case(lambda: [good(), edited(without("SOPInstanceUID"))], 202),
    "40 good parts, two batches": Case(many(40), 200),
    "40 good parts, then a demo instance under another series": Case(many(40, demo_instance_elsewhere), 202),
    "34 good parts, then the body breaks off": Case(many(34), 202, raw=breaks_off_after, failed=1),
    "two bad parts": Case(lambda: [nested(100), no_preamble()], 400),
    "study in the path, another in the part": Case(
        one(lambda: bad_copy(good())), 409, study_in_path=lambda parts: generate_uid()
    ),
    "study in the path matches": Case(
        lambda: [good("PATH-MATCH")], 200, study_in_path=lambda parts: parts_study(parts)
    ),
    "part headers over 8 KB": Case(one(lambda: bad_copy(good())), 400, raw=huge_part_header, failed=0),
    "no closing delimiter": Case(one(lambda: bad_copy(good())), 400, raw=no_closing_delimiter, failed=0),
    "no parts": Case(lambda: [], 400, raw=no_parts, failed=0),
    "other boundary than announced": Case(one(lambda: bad_copy(good())), 400, raw=other_boundary, failed=0),
    "not multipart": Case(one(lambda: bad_copy(good())), 415, content_type="application/dicom", failed=0),
    "multipart without boundary": Case(
        one(lambda: bad_copy(good())), 415, content_type="multipart/related; type=application/dicom", failed=0
    ),
}


def parts_study(parts: list[Instance]) -> str:
    return str(pydicom.dcmread(io.BytesIO(parts[0].data), stop_before_pixels=True).StudyInstanceUID)


def orthanc_holds(orthanc: OrthancServer, sop_uid: str) -> bool:
    found = requests.post(
        f"{orthanc.url}/tools/lookup", data=sop_uid, auth=(orthanc.user, orthanc.password), timeout=30
    ).json()
    return any(item["Type"] == "Instance" for item in found)


@pytest.mark.parametrize("name", list(CASES))
def test_it_stores_only_the_good_parts_and_orthanc_stays_up(
    name: str, live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    ORTHANC.update(url=orthanc.url, auth=(orthanc.user, orthanc.password))
    case = CASES[name]
    parts = case.parts()
    boundary = secrets.token_hex(12)
    body = case.raw(parts, boundary) if case.raw else body_of(parts, boundary)
    path = "/pacs/dicom-web/studies"
    if case.study_in_path:
        path += "/" + case.study_in_path(parts)
    start = live_portal.last_audit_id()
    response = requests.post(
        f"{live_portal.url}{path}",
        data=body,
        headers={
            "Content-Type": case.content_type or CONTENT_TYPE.format(boundary=boundary),
            "Accept": "application/dicom+json",
        },
        auth=("bob", live_portal.passwords["bob"]),
        timeout=120,
    )
    assert response.status_code == case.status, (name, response.status_code, response.text[:300])
    system = requests.get(f"{orthanc.url}/system", auth=(orthanc.user, orthanc.password), timeout=10)
    assert system.status_code == 200, "Orthanc is down after this case"
    bad = [part for part in parts if not part.good]
    for part in parts:
        if part.sop_uid and part.good:
            assert orthanc_holds(orthanc, part.sop_uid), f"{name}: a good part was not stored"
        elif part.sop_uid and not part.good and "demo instance" not in name:
            assert not orthanc_holds(orthanc, part.sop_uid), f"{name}: a refused part reached Orthanc"
    expected_failed = len(bad) if case.failed is None else case.failed
    if expected_failed:
        failed = response.json()["00081198"]["Value"]
        assert len(failed) == expected_failed
        assert all("00081197" in item for item in failed)
    rows = live_portal.audit_events(start)
    refused_rows = [row for row in rows if str(row["detail"]).startswith("STOW part refused")]
    assert len(refused_rows) == expected_failed
    assert all(row["success"] in (0, False) and row["username"] == "bob" for row in refused_rows)
    store_rows = [
        row for row in rows if row["action"] == "store" and not str(row["detail"]).startswith("STOW part")
    ]
    assert len(store_rows) == 1 and store_rows[0]["status"] == case.status


def test_the_corpus_has_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
