"""One reading: a STOW part is stored only if the portal's check and Orthanc read it alike.

Issue 29, finding 2: a part holding PatientID and StudyInstanceUID twice, the
victim's values first and a decoy's second, was read by the check (pydicom:
the last) as the decoy's new study and stored by Orthanc (DCMTK: the first)
in the victim's. The walker in proxy.dicomscan refuses every file whose
encoding leaves such room. The unit tests drive it on bytes; the live ones
send generated files through real HTTP to the real Orthanc, and compare what
the check read with what Orthanc stored.
"""

from __future__ import annotations

import io
import secrets
import struct
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from proxy import dicomscan, stow
from tests import dicom_variants as variants
from tests.dicom import stow_body, unique_ct_instance
from tests.dicom_variants import BIG, EXPLICIT, IMPLICIT, Element, Encoding, Item
from tests.services import LivePortal

SEED = 20261207
HOSTILE = {variant.name: variant for variant in variants.hostile(SEED)}
VALID = {variant.name: variant for variant in variants.valid()}
DEMO_PATIENT = "DEMO-CT-0001"
IDENTIFIERS = {
    variant.name: variant for variant in variants.hostile_identifiers(DEMO_PATIENT, demo.DEMO_CT_STUDY_UID)
}
PLAIN = {variant.name: variant for variant in variants.plain_identifiers()}
# The finding as reported (explicit VR, defined lengths) first, then in the other encodings.
VICTIM_FIRST = {
    variant.name: variant
    for variant in (
        variants.victim_first(DEMO_PATIENT, demo.DEMO_CT_STUDY_UID, encoding)
        for encoding in (Encoding(), Encoding(IMPLICIT, True, True), Encoding(BIG, True, False))
    )
}
# Files pydicom ships in the encodings the demo's files do not use.
MORE_ENCODINGS = [
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "rtplan.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
]
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
ITEM_OPEN = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
ITEM_CLOSE = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
SEQUENCE_CLOSE = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
live = pytest.mark.live


def reading_of(data: bytes, max_depth: int = stow.MAX_DEPTH) -> dicomscan.Reading:
    return dicomscan.read(io.BytesIO(data), len(data), max_depth)


def with_elements(encoding: Encoding, edit: Callable[[list[Element]], object]) -> bytes:
    """A valid file nested one level deep, in `encoding`, after `edit` changed its top-level elements."""
    made = variants.instance(encoding, depth=1)
    edit(made.dataset)
    return made.encode()


def replaced(dataset: list[Element], tag: int, *elements: Element) -> None:
    index = next(i for i, element in enumerate(dataset) if element.tag == tag)
    dataset[index : index + 1] = list(elements)


def inserted_before(dataset: list[Element], tag: int, *elements: Element) -> None:
    index = next(i for i, element in enumerate(dataset) if element.tag == tag)
    dataset[index:index] = list(elements)


def shipped(name: str | Path) -> Path:
    """One of the files pydicom ships, by name or path."""
    return Path(name) if Path(name).is_absolute() else Path(str(get_testdata_file(str(name), download=False)))


def nested_items(levels: int) -> bytes:
    """The value of a sequence of undefined length nesting `levels` deep, written without recursion."""
    value = b""
    for _ in range(levels - 1):
        head = struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF)
        value = head + ITEM_OPEN + value + ITEM_CLOSE + SEQUENCE_CLOSE
    return ITEM_OPEN + value + ITEM_CLOSE + SEQUENCE_CLOSE


def fragments(*chunks: bytes) -> bytes:
    items = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(chunk)) + chunk for chunk in chunks)
    return items + SEQUENCE_CLOSE


# The walker on bytes.


def test_it_generates_at_least_sixty_distinct_hostile_encodings_from_one_seed() -> None:
    assert len(HOSTILE) >= 60
    assert len({variant.data for variant in HOSTILE.values()}) == len(HOSTILE)
    assert [v.name for v in variants.hostile(SEED)] == list(HOSTILE), "the same seed draws the same variants"


@pytest.mark.parametrize("name", list(HOSTILE))
def test_it_refuses_each_generated_encoding_with_its_reason(name: str) -> None:
    variant = HOSTILE[name]
    reading = reading_of(variant.data)
    assert reading.refusal, f"{name}: passed"
    assert variant.reason in reading.refusal


@pytest.mark.parametrize("name", list(VALID))
def test_it_passes_the_same_files_without_the_change(name: str) -> None:
    assert reading_of(VALID[name].data).refusal == ""


@pytest.mark.parametrize("path", [*demo.sample_paths(), *MORE_ENCODINGS], ids=lambda path: Path(path).name)
def test_it_passes_the_valid_files_pydicom_ships(path: str | Path) -> None:
    assert reading_of(shipped(path).read_bytes()).refusal == ""


def test_it_passes_a_slice_of_the_demo_ct() -> None:
    assert reading_of(next(demo.synthetic_ct(1))).refusal == ""


@pytest.mark.parametrize("name", list(VICTIM_FIRST))
def test_it_refuses_the_victim_first_file_that_pydicom_reads_as_the_decoy(name: str) -> None:
    variant = VICTIM_FIRST[name]
    dataset = pydicom.dcmread(io.BytesIO(variant.data))
    assert dataset.PatientID != DEMO_PATIENT, "pydicom keeps the last value"
    assert dataset.StudyInstanceUID != demo.DEMO_CT_STUDY_UID
    assert "(0010,0020) PatientID appears twice in the data set" in reading_of(variant.data).refusal


def test_it_refuses_a_transfer_syntax_given_twice_of_which_pydicom_takes_the_last() -> None:
    made = variants.instance(Encoding(EXPLICIT))
    made.meta.insert(4, Element(0x00020010, "UI", IMPLICIT))
    data = made.encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == IMPLICIT
    assert "(0002,0010) TransferSyntaxUID appears twice in the file meta" in reading_of(data).refusal


def test_it_steps_over_encapsulated_fragments_without_parsing_them() -> None:
    # Fragment bytes that parse as a second PatientID and as delimiters, were anyone to parse them.
    decoy = struct.pack("<HH2sH", 0x0010, 0x0020, b"LO", 6) + b"DECOY "
    closing = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0) + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    pixels = Element(0x7FE00010, "OB", fragments(b"", decoy + closing, b"\xff\xd8\xff\xd9"), undefined=True)
    data = with_elements(Encoding(JPEG_BASELINE), lambda ds: replaced(ds, 0x7FE00010, pixels))
    assert reading_of(data).refusal == ""
    assert pydicom.dcmread(io.BytesIO(data)).PatientID.startswith("ONE-READING-")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (fragments(b"ab")[:-8] + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF), "not a fragment"),
        (fragments(b"ab")[:-8] + struct.pack("<HHI", 0x0010, 0x0020, 0), "not a fragment"),
        (fragments(b"ab")[:-8] + struct.pack("<HHI", 0xFFFE, 0xE0DD, 4), "has a length"),
        (fragments(b"ab")[:-8], "runs past the end of the file"),
    ],
    ids=["a fragment of undefined length", "an element among fragments", "a long delimiter", "no delimiter"],
)
def test_it_refuses_encapsulated_pixel_data_that_is_not_fragments_then_a_delimiter(
    content: bytes, reason: str
) -> None:
    pixels = Element(0x7FE00010, "OB", content, undefined=True)
    data = with_elements(Encoding(JPEG_BASELINE), lambda ds: replaced(ds, 0x7FE00010, pixels))
    assert reason in reading_of(data).refusal


@pytest.mark.parametrize(("syntax", "vr"), [(IMPLICIT, "PN"), (EXPLICIT, "UT"), (BIG, "OB")])
def test_it_refuses_an_undefined_length_on_an_element_that_is_no_sequence(syntax: str, vr: str) -> None:
    name = Element(0x00100010, vr, b"A^B\0" + SEQUENCE_CLOSE, undefined=True)
    data = with_elements(Encoding(syntax), lambda ds: replaced(ds, 0x00100010, name))
    assert "(0010,0010) PatientName has an undefined length but is no sequence" in reading_of(data).refusal


def test_it_refuses_a_length_that_runs_past_the_end_of_its_item() -> None:
    data = VALID["valid, explicit VR, sequences defined, items defined"].data
    # The last element of the innermost item, (0008,1155), claims 2 bytes more than it has.
    at = data.rindex(struct.pack("<HH2s", 0x0008, 0x1155, b"UI"))
    (length,) = struct.unpack_from("<H", data, at + 6)
    data = data[: at + 6] + struct.pack("<H", length + 2) + data[at + 8 :]
    assert "runs past the end of its sequence or item" in reading_of(data).refusal


def test_it_refuses_a_file_that_ends_inside_an_element() -> None:
    data = VALID["valid, explicit VR, sequences defined, items defined"].data
    assert "runs past the end of the file" in reading_of(data[:-3]).refusal


def test_it_refuses_a_sequence_delimiter_inside_a_sequence_of_defined_length() -> None:
    made = variants.instance(Encoding(EXPLICIT), depth=1)
    sequence = made.dataset[4]
    assert isinstance(sequence.value, list)
    sequence.value.append(Item([]))
    data = made.encode()
    empty_item = struct.pack("<HHI", 0xFFFE, 0xE000, 0)
    data = data.replace(empty_item, struct.pack("<HHI", 0xFFFE, 0xE0DD, 0), 1)
    assert "stands where a sequence item belongs" in reading_of(data).refusal


def test_it_refuses_nesting_deeper_than_the_limit_without_recursing() -> None:
    deep = Element(0x00081140, "SQ", nested_items(20_000), undefined=True)
    data = with_elements(Encoding(EXPLICIT), lambda ds: replaced(ds, 0x00081140, deep))
    assert reading_of(data).refusal == "sequences nest deeper than 16 levels"
    assert reading_of(data, max_depth=30_000).refusal == ""


def test_it_reads_an_implicit_vr_element_the_dictionary_calls_a_sequence_as_one() -> None:
    twice = Item([Element(0x00081150, "UI", "1.2.3"), Element(0x00081150, "UI", "1.2.4")])
    sequence = Element(0x00081140, "SQ", [twice])
    data = with_elements(Encoding(IMPLICIT), lambda ds: replaced(ds, 0x00081140, sequence))
    assert "appears twice in a sequence item 1 level deep" in reading_of(data).refusal


def test_it_reads_a_private_implicit_vr_element_of_defined_length_as_bytes_like_pydicom() -> None:
    twice = Item([Element(0x00081150, "UI", "1.2.3"), Element(0x00081150, "UI", "1.2.4")])
    private = [Element(0x00090010, "LO", "ONE READING"), Element(0x00091010, "SQ", [twice])]
    data = with_elements(Encoding(IMPLICIT), lambda ds: inserted_before(ds, 0x00100010, *private))
    assert reading_of(data).refusal == ""


def test_it_reads_a_un_sequence_of_undefined_length_as_implicit_vr_little_endian() -> None:
    data = VALID["valid, explicit VR, outer UN, sequences undefined, items undefined"].data
    assert reading_of(data).refusal == ""
    assert pydicom.dcmread(io.BytesIO(data)).ReferencedImageSequence[0].SourceImageSequence


def test_it_refuses_a_un_item_whose_first_element_pydicom_would_read_as_explicit_vr() -> None:
    # pydicom takes an item of a UN sequence for explicit VR when the two bytes after its
    # first tag are capitals: here the low bytes of the length 0x4C4C, "LL".
    made = variants.instance(Encoding(EXPLICIT, un=True), depth=1)
    variants.data_set_at(made.dataset, 1)[0] = Element(0x00081150, "UI", "1" * 0x4C4C)
    assert "reads as explicit VR" in reading_of(made.encode()).refusal


def test_it_refuses_a_un_sequence_in_a_big_endian_file() -> None:
    data = with_elements(Encoding(BIG), lambda ds: setattr(ds[4], "as_un", True))
    assert "UN sequence in a big endian file" in reading_of(data).refusal


@pytest.mark.parametrize("vr", [b"ZZ", b"\x00\x01", b"sq"])
def test_it_refuses_an_element_without_a_valid_vr(vr: bytes) -> None:
    data = VALID["valid, explicit VR, sequences defined, items defined"].data
    at = data.index(struct.pack("<HH2s", 0x0008, 0x0060, b"CS"))
    assert "has no valid VR" in reading_of(data[: at + 4] + vr + data[at + 6 :]).refusal


@pytest.mark.parametrize(("tag", "vr"), [(0x00100020, "UN"), (0x0020000D, "LO"), (0x00080018, "OB")])
def test_it_refuses_a_deciding_element_in_another_vr_than_its_own(tag: int, vr: str) -> None:
    data = with_elements(
        Encoding(EXPLICIT), lambda ds: setattr(next(e for e in ds if e.tag == tag), "vr", vr)
    )
    assert f"has VR {vr}, not its own" in reading_of(data).refusal


@pytest.mark.parametrize(
    ("syntax", "reason"),
    [
        ("1.2.840.10008.1.2.1.99", "deflated"),
        ("1.2.840.10008.1.2.4.95", "deflated"),
        ("1.2.840.10008.1.2.1\\1.2.840.10008.1.2", "not known"),
        ("1.2.3.4", "not known"),
    ],
)
def test_it_refuses_a_transfer_syntax_it_cannot_walk_as_unsupported(syntax: str, reason: str) -> None:
    reading = reading_of(variants.instance(Encoding(syntax)).encode())
    assert reason in reading.refusal and reading.unsupported


def test_it_refuses_a_delimiter_with_a_length() -> None:
    data = VALID["valid, explicit VR, sequences undefined, items undefined"].data
    end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    data = data.replace(end, struct.pack("<HHI", 0xFFFE, 0xE00D, 2), 1)
    assert "has a length" in reading_of(data).refusal


def test_it_refuses_a_file_without_file_meta() -> None:
    data = VALID["valid, explicit VR, sequences defined, items defined"].data
    at = data.index(struct.pack("<HH", 0x0008, 0x0005))
    assert reading_of(data[:132] + data[at:]).refusal == "the file has no file meta group"


class CountingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_it_passes_over_values_without_reading_them() -> None:
    pixels = Element(0x7FE00010, "OW", bytes(16 * 1024 * 1024))
    data = with_elements(Encoding(EXPLICIT), lambda ds: replaced(ds, 0x7FE00010, pixels))
    file = CountingFile(data)
    assert dicomscan.read(file, len(data), 16).refusal == ""
    assert file.bytes_read < 2 * dicomscan.WINDOW


def test_it_names_the_sop_instance_of_a_refused_file_only_when_it_met_it_once() -> None:
    variant = HOSTILE[next(name for name in HOSTILE if name.startswith("meta element after PatientID"))]
    assert reading_of(variant.data).sop_uid == variant.sop_uid
    twice = variants.instance(Encoding(EXPLICIT))
    twice.dataset.insert(3, Element(0x00080018, "UI", generate_uid()))
    assert reading_of(twice.encode()).sop_uid == ""


def part_of(data: bytes) -> stow.Part:
    file = tempfile.SpooledTemporaryFile(max_size=stow.SPOOL_IN_MEMORY)  # noqa: SIM115 (closed by the test)
    file.write(data)
    return stow.Part(file, size=len(data))


def test_it_makes_the_check_refuse_a_part_with_two_readings_as_cannot_understand_naming_its_sop() -> None:
    variant = variants.victim_first(DEMO_PATIENT, demo.DEMO_CT_STUDY_UID)
    part = part_of(variant.data)
    stow.check(part, "")
    part.file.close()
    assert "PatientID appears twice" in part.refusal
    assert part.reason_code == stow.CANNOT_UNDERSTAND
    assert (part.sop_uid, part.patient_id, part.study_uid) == (variant.sop_uid, "", "")
    assert stow.failed_item(part)["00081155"] == {"vr": "UI", "Value": [variant.sop_uid]}


@pytest.mark.filterwarnings("ignore:The value length:UserWarning")  # pydicom on the 65 characters
@pytest.mark.parametrize("name", list(IDENTIFIERS))
def test_it_makes_the_check_refuse_patient_ids_orthanc_would_store_otherwise(name: str) -> None:
    variant = IDENTIFIERS[name]
    assert reading_of(variant.data).refusal == "", "the encoding itself is sound"
    part = part_of(variant.data)
    stow.check(part, "")
    part.file.close()
    assert variant.reason in part.refusal and part.reason_code == stow.CANNOT_UNDERSTAND


@pytest.mark.parametrize("name", list(PLAIN))
def test_it_lets_the_check_read_padded_and_latin_1_patient_ids_as_orthanc_does(name: str) -> None:
    part = part_of(PLAIN[name].data)
    stow.check(part, "")
    part.file.close()
    assert (part.refusal, part.patient_id) == ("", PLAIN[name].patient_id)


def test_it_leaves_the_check_refusing_a_deflated_part_as_unsupported() -> None:
    part = part_of(variants.instance(Encoding("1.2.840.10008.1.2.1.99")).encode())
    stow.check(part, "")
    part.file.close()
    assert part.reason_code == stow.TRANSFER_SYNTAX_NOT_SUPPORTED


# Through real HTTP, against the real Orthanc.


def orthanc_get(orthanc: OrthancServer, path: str) -> object:
    response = requests.get(f"{orthanc.url}{path}", auth=(orthanc.user, orthanc.password), timeout=30)
    response.raise_for_status()
    return response.json()


def orthanc_counts(orthanc: OrthancServer) -> dict[str, int]:
    statistics = orthanc_get(orthanc, "/statistics")
    assert isinstance(statistics, dict)
    return {
        key: statistics[key] for key in ("CountPatients", "CountStudies", "CountSeries", "CountInstances")
    }


def orthanc_instance(orthanc: OrthancServer, sop_uid: str) -> str | None:
    found = requests.post(
        f"{orthanc.url}/tools/lookup", data=sop_uid, auth=(orthanc.user, orthanc.password), timeout=30
    ).json()
    return next((item["ID"] for item in found if item["Type"] == "Instance"), None)


def patients_of_study(orthanc: OrthancServer, study_uid: str) -> list[str]:
    """The PatientID of every study Orthanc files under this StudyInstanceUID."""
    query = {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}
    found = requests.post(
        f"{orthanc.url}/tools/find", json=query, auth=(orthanc.user, orthanc.password), timeout=30
    ).json()
    return sorted(study["PatientMainDicomTags"]["PatientID"] for study in found)


def send(live_portal: LivePortal, *instances: bytes) -> requests.Response:
    body, content_type = stow_body(instances)
    return requests.post(
        f"{live_portal.url}/pacs/dicom-web/studies",
        data=body,
        headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        auth=("bob", live_portal.passwords["bob"]),
        timeout=120,
    )


def refused_rows(live_portal: LivePortal, after: int) -> list[dict[str, object]]:
    rows = live_portal.audit_events(after)
    return [row for row in rows if str(row["detail"]).startswith("STOW part refused")]


def assert_refused(
    response: requests.Response, variant: variants.Variant, rows: list[dict[str, object]]
) -> None:
    assert response.status_code == 400, (variant.name, response.status_code, response.text[:300])
    (failed,) = response.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [stow.CANNOT_UNDERSTAND]
    if "00081155" in failed:
        assert failed["00081155"]["Value"] == [variant.sop_uid]
    (row,) = rows
    assert variant.reason in str(row["detail"]), row["detail"]
    assert row["username"] == "bob" and row["success"] in (0, False)


@live
@pytest.mark.parametrize("name", list(VICTIM_FIRST))
def test_it_refuses_the_demo_patient_first_and_a_decoy_second(
    name: str, live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    variant = VICTIM_FIRST[name]
    before, start = orthanc_counts(orthanc), live_portal.last_audit_id()
    response = send(live_portal, variant.data)
    rows = refused_rows(live_portal, start)
    assert_refused(response, variant, rows)
    assert orthanc_counts(orthanc) == before
    assert orthanc_instance(orthanc, variant.sop_uid) is None
    assert patients_of_study(orthanc, demo.DEMO_CT_STUDY_UID) == [DEMO_PATIENT]
    assert rows[0]["patient_id"] in ("", DEMO_PATIENT), "the audit names the decoy"
    read = requests.get(
        f"{live_portal.url}/pacs/dicom-web/studies/{demo.DEMO_CT_STUDY_UID}/series",
        headers={"Accept": "application/dicom+json"},
        auth=("alice", live_portal.passwords["alice"]),
        timeout=30,
    )
    assert read.status_code == 200, read.text[:300]


@live
@pytest.mark.parametrize("name", list(IDENTIFIERS))
def test_it_refuses_identifiers_orthanc_would_file_under_another_patient(
    name: str, live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    variant = IDENTIFIERS[name]
    before, start = orthanc_counts(orthanc), live_portal.last_audit_id()
    response = send(live_portal, variant.data)
    assert_refused(response, variant, refused_rows(live_portal, start))
    assert orthanc_counts(orthanc) == before
    assert patients_of_study(orthanc, demo.DEMO_CT_STUDY_UID) == [DEMO_PATIENT]


@live
@pytest.mark.parametrize("name", list(HOSTILE))
def test_it_refuses_each_generated_encoding_and_orthanc_gains_nothing(
    name: str, live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    variant = HOSTILE[name]
    before, start = orthanc_counts(orthanc), live_portal.last_audit_id()
    response = send(live_portal, variant.data)
    assert_refused(response, variant, refused_rows(live_portal, start))
    assert orthanc_counts(orthanc) == before
    assert orthanc_instance(orthanc, variant.sop_uid) is None


def reidentified(data: bytes) -> bytes:
    """The same file in the same encoding, with UIDs and a PatientID of its own."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.PatientID = f"ONE-READING-{secrets.token_hex(4)}"
    # Not the demo's name or description: other tests count "Demo*" patients and open the
    # demo CT by its description in the study list.
    dataset.PatientName, dataset.StudyDescription = "One^Reading", "One reading (test)"
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def corpus() -> Iterator[tuple[str, bytes]]:
    """The project's valid instances, pydicom's in more encodings, and the generator's controls."""
    paths: list[str | Path] = [*demo.sample_paths(), *MORE_ENCODINGS]
    for path in paths:
        yield shipped(path).name, shipped(path).read_bytes()
    yield "a slice of the demo CT", next(demo.synthetic_ct(1))
    yield "tests.dicom.unique_ct_instance", unique_ct_instance(label="one-reading")[0]
    for name, variant in {**VALID, **PLAIN}.items():
        yield name, variant.data


CORPUS = dict(corpus())


@live
@pytest.mark.parametrize("name", list(CORPUS))
def test_it_stores_what_the_check_read(name: str, live_portal: LivePortal, orthanc: OrthancServer) -> None:
    data = CORPUS[name] if name in VALID or name in PLAIN else reidentified(CORPUS[name])
    part = part_of(data)
    stow.check(part, "")
    part.file.close()
    assert part.refusal == "", part.refusal
    response = send(live_portal, data)
    assert response.status_code == 200, (name, response.status_code, response.text[:300])
    instance = orthanc_instance(orthanc, part.sop_uid)
    assert instance is not None
    stored = orthanc_get(orthanc, f"/instances/{instance}/simplified-tags")
    patient = orthanc_get(orthanc, f"/instances/{instance}/patient")
    study = orthanc_get(orthanc, f"/instances/{instance}/study")
    assert isinstance(stored, dict) and isinstance(patient, dict) and isinstance(study, dict)
    read = (part.patient_id, part.study_uid)
    assert (stored["PatientID"], stored["StudyInstanceUID"]) == read, "the file Orthanc stored"
    assert (patient["MainDicomTags"]["PatientID"], study["MainDicomTags"]["StudyInstanceUID"]) == read, (
        "Orthanc's index"
    )
