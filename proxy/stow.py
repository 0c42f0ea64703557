"""STOW-RS bodies checked part by part before Orthanc sees them.

One small hostile file can take Orthanc down (sequences nested a few dozen
levels overflow a thread stack in its DICOM parser), and a series can be
stored under a study that another patient owns. So each part is spooled (in
memory up to SPOOL_IN_MEMORY, then to a temporary file), its header read up to
the pixel data and checked; only the parts that pass go on to Orthanc, and the
refused ones are listed in the answer's Failed SOP Sequence the way STOW-RS
defines it. The check believes pydicom's reading only of a file that
proxy.dicomscan found has no other: Orthanc stores what DCMTK reads, and the
two part ways on repeated elements, a second file meta group and the like.

Parts go on in batches as soon as each batch is checked, in one chunked request
to Orthanc, so the client's upload, the checks and Orthanc's storing overlap
(spooling the whole body first made STOW 0.36 of direct Orthanc). The archive
is asked once per study and series of a body, and once per batch for its
instances: a lookup per part cost as much as the rest of the checks together.
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.valuerep import VR

from core import uids
from orthanc import client, lookups
from proxy import dicomscan
from proxy.errors import IncompleteBody

READ_BLOCK = 1024 * 1024
MAX_PART_HEADER = 8 * 1024
MAX_PARTS = 20_000
MAX_DEPTH = 16
# A 512x512 CT slice stays in memory; a multi-frame part goes to disk.
SPOOL_IN_MEMORY = 2 * 1024 * 1024
# Checked and forwarded together: at most this many parts, or about this many bytes.
BATCH_PARTS = 32
BATCH_BYTES = 8 * 1024 * 1024
MAYBE_SEQUENCE = frozenset({"SQ", "UN", None})
KNOWN_VRS = frozenset(vr.value for vr in VR)
UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010
# Values longer than this are passed over while the header is read (the pixel data).
DEFER_SIZE = 1024
BOUNDARY = re.compile(r'boundary="?([^";]{1,70})"?', re.IGNORECASE)
# STOW-RS failure reasons (PS3.18 table 10.5.3-1 / PS3.4 C.4.2.1.4).
CANNOT_UNDERSTAND = 0xC000
DOES_NOT_MATCH = 0xA900
PROCESSING_FAILURE = 0x0110
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
REQUIRED = {
    "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E",
    "SOPInstanceUID": "00080018",
    "SOPClassUID": "00080016",
}


class BadBody(ValueError):
    """The body as a whole cannot be read as multipart/related: nothing is stored."""


@dataclass
class Part:
    file: IO[bytes]
    size: int = 0
    content_type: str = ""
    patient_id: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    sop_class_uid: str = ""
    refusal: str = ""
    reason_code: int = 0
    conflict: bool = False


def boundary_of(content_type: str) -> str:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind != "multipart/related":
        raise BadBody("STOW-RS takes multipart/related; type=application/dicom")
    found = BOUNDARY.search(content_type)
    if not found:
        raise BadBody("the multipart Content-Type has no boundary")
    return found.group(1)


def split(body: Any, boundary: str) -> Iterator[Part]:
    """Parts of a multipart body read from `body.read`, each spooled to a temporary file."""
    delimiter = b"\r\n--" + boundary.encode("ascii")
    buffer = b"\r\n"  # the first delimiter may open the body without a preceding CRLF
    while delimiter not in buffer:
        chunk = body.read(READ_BLOCK)
        if not chunk:
            raise BadBody("the body holds no multipart part")
        buffer = (buffer + chunk)[-(len(delimiter) + READ_BLOCK) :]
    buffer = buffer[buffer.index(delimiter) + len(delimiter) :]
    count = 0
    while True:
        buffer = fill(body, buffer, 2)
        if buffer.startswith(b"--"):
            return  # the closing delimiter
        count += 1
        if count > MAX_PARTS:
            raise BadBody(f"more than {MAX_PARTS} parts")
        part, buffer = read_part(body, buffer, delimiter)
        yield part


def fill(body: Any, buffer: bytes, wanted: int) -> bytes:
    while len(buffer) < wanted:
        chunk = body.read(READ_BLOCK)
        if not chunk:
            break
        buffer += chunk
    return buffer


def read_part(body: Any, buffer: bytes, delimiter: bytes) -> tuple[Part, bytes]:
    """One part from just after its delimiter; returns it and what follows its closing delimiter."""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_PART_HEADER:
            raise BadBody("a part's headers are too long")
        more = body.read(READ_BLOCK)
        if not more:
            raise BadBody("the body ends inside a part's headers")
        buffer += more
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    if len(head) > MAX_PART_HEADER:
        raise BadBody("a part's headers are too long")
    part = Part(tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY))  # noqa: SIM115 (closed by Checked)
    part.content_type = part_content_type(head)
    while True:
        at = buffer.find(delimiter)
        if at >= 0:
            part.file.write(buffer[:at])
            part.size += at
            return part, buffer[at + len(delimiter) :]
        keep = len(delimiter)
        if len(buffer) > keep:
            part.file.write(buffer[:-keep])
            part.size += len(buffer) - keep
            buffer = buffer[-keep:]
        more = body.read(READ_BLOCK)
        if not more:
            part.file.close()
            raise BadBody("the body ends inside a part (no closing delimiter)")
        buffer += more


def part_content_type(head: bytes) -> str:
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            return value.strip().split(";", 1)[0].strip().lower()
    return ""


def check(part: Part, study_in_path: str) -> None:
    if part.content_type not in ("application/dicom", ""):
        refuse(part, f"parts must be application/dicom, not {part.content_type}", CANNOT_UNDERSTAND)
        return
    part.file.seek(0)
    preamble = part.file.read(132)
    if len(preamble) < 132 or preamble[128:132] != b"DICM":
        refuse(part, "not a DICOM Part 10 file (no DICM after the 128-byte preamble)", CANNOT_UNDERSTAND)
        return
    # pydicom decides here and DCMTK stores in Orthanc: only a file both read one way may pass.
    reading = dicomscan.read(part.file, part.size, MAX_DEPTH)
    if reading.refusal:
        code = TRANSFER_SYNTAX_NOT_SUPPORTED if reading.unsupported else CANNOT_UNDERSTAND
        refuse(part, reading.refusal, code)
        part.sop_class_uid = valid_uid(reading.sop_class_uid)
        part.sop_uid = valid_uid(reading.sop_uid)
        return
    try:
        part.file.seek(0)
        # The whole file, past the pixel data too: Orthanc parses what follows it. Values
        # longer than DEFER_SIZE (the pixel data) are passed over, not read.
        dataset = pydicom.dcmread(part.file, defer_size=DEFER_SIZE)
        depth = nesting_depth(dataset)
    except RecursionError:
        refuse(part, f"sequences nest deeper than {MAX_DEPTH} levels", CANNOT_UNDERSTAND)
        return
    except UnsafeEncoding as error:
        refuse(part, str(error), CANNOT_UNDERSTAND)
        return
    except (
        InvalidDicomError,
        NotImplementedError,
        ValueError,
        TypeError,
        KeyError,
        OSError,
        EOFError,
        OverflowError,
    ) as error:
        refuse(part, f"the DICOM header cannot be read: {str(error)[:120]}", CANNOT_UNDERSTAND)
        return
    if depth > MAX_DEPTH:
        refuse(part, f"sequences nest {depth} levels deep (at most {MAX_DEPTH})", CANNOT_UNDERSTAND)
        return
    if not read_identifiers(part, dataset):
        return
    if study_in_path and part.study_uid != study_in_path:
        refuse(part, "its StudyInstanceUID is not the study in the path", DOES_NOT_MATCH, conflict=True)


class UnsafeEncoding(ValueError):
    """An element pydicom and Orthanc's parser (DCMTK) would read differently."""


def nesting_depth(dataset: Any) -> int:
    """How deep sequences nest, walked without recursion (hostile files nest thousands deep).

    Raises UnsafeEncoding for what could hide a sequence from this walk but not from
    DCMTK: an unknown VR (pydicom reads a 2-byte length where DCMTK reads 4, and
    DCMTK takes an undefined length as a sequence) or an undefined length on
    anything but a sequence, UN or the pixel data.
    """
    deepest = 0
    pending = [(dataset, 0)]
    while pending:
        current, depth = pending.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        # Only what may be a sequence is converted from its raw bytes: converting every
        # element was most of a slice's check (docs/performance-history.md). pydicom's reader already calls
        # an undefined-length element SQ; a defined-length UN (or an unknown VR in an
        # implicit VR file) may still be one once converted.
        for raw in current.elements():
            if raw.VR is not None and raw.VR not in KNOWN_VRS:
                raise UnsafeEncoding(f"an element has an unknown VR {str(raw.VR)[:8]!r}")
            if undefined_length(raw) and raw.VR not in ("SQ", "UN") and raw.tag != PIXEL_DATA:
                raise UnsafeEncoding(
                    "an element other than a sequence or the pixel data has an undefined length"
                )
            if raw.VR in MAYBE_SEQUENCE and (element := current[raw.tag]).VR == "SQ":
                pending.extend((item, depth + 1) for item in element.value)
    return deepest


def undefined_length(element: Any) -> bool:
    """For pydicom's raw elements (`length`) and converted ones (`is_undefined_length`)."""
    return getattr(element, "length", None) == UNDEFINED_LENGTH or bool(
        getattr(element, "is_undefined_length", False)
    )


def read_identifiers(part: Part, dataset: Any) -> bool:
    """The UIDs and PatientID as Orthanc will store them, or False with the part refused.

    A PatientID Orthanc would store otherwise than read here is refused, not
    normalised: the archive checks and the audit go by what was read.
    """
    # Whatever else is wrong, a refused part is named in the Failed SOP Sequence when it can be.
    part.sop_class_uid = valid_uid(str(dataset.get("SOPClassUID", "") or "").strip("\x00 "))
    part.sop_uid = valid_uid(str(dataset.get("SOPInstanceUID", "") or "").strip("\x00 "))
    uids = {}
    for keyword in REQUIRED:
        value = str(dataset.get(keyword, "") or "").strip("\x00 ")
        if not value:
            refuse(part, f"{keyword} is missing", CANNOT_UNDERSTAND)
            return False
        if not valid_uid(value):
            refuse(part, f"{keyword} is not a valid UID (digits and dots, at most 64)", CANNOT_UNDERSTAND)
            return False
        uids[keyword] = value
    part.study_uid, part.series_uid = uids["StudyInstanceUID"], uids["SeriesInstanceUID"]
    part.sop_uid, part.sop_class_uid = uids["SOPInstanceUID"], uids["SOPClassUID"]
    patient_id = dataset.get("PatientID", "") or ""
    refusal = patient_id_refusal(patient_id)
    if refusal:
        refuse(part, refusal, CANNOT_UNDERSTAND)
        return False
    part.patient_id = str(patient_id).rstrip("\x00 ")
    return True


def patient_id_refusal(value: Any) -> str:
    """Why Orthanc would file the part under another PatientID than `value` reads ("" if it would not).

    Orthanc stores "A\\B" where pydicom reads two values, cuts a value at its
    first NUL, and keeps leading spaces; a value past LO's 64 characters would
    be cut short in the audit.
    """
    if isinstance(value, MultiValue):
        return "PatientID holds more than one value"
    text = str(value).rstrip("\x00 ")
    if len(text) > 64:
        return "PatientID is longer than 64 characters"
    if text.startswith(" "):
        return "PatientID begins with a space"
    if any(ord(character) < 0x20 and character != "\x1b" for character in text):
        return "PatientID holds a control character"
    return ""


def valid_uid(value: str) -> str:
    return value if uids.is_conformant(value) else ""


def refuse(part: Part, reason: str, code: int, conflict: bool = False) -> None:
    part.refusal, part.reason_code, part.conflict = reason, code, conflict


class Upload:
    """One STOW body, read part by part: the parts that pass come out in checked batches.

    A body that breaks off (malformed, or the client stopped sending) ends the
    upload at the last whole part: the parts before it still pass on, and
    `broken` says why the rest was not stored. LookupFailed (the archive could
    not be asked) is raised from `next_batch`; `chunks` ends Orthanc's body
    cleanly on it, since the parts already sent are stored by then.
    """

    def __init__(self, body: Any, boundary: str, study_in_path: str) -> None:
        self.parts = split(body, boundary)
        self.boundary = boundary
        self.study_in_path = study_in_path
        self.refused: list[Part] = []
        self.broken: Part | None = None
        self.unreadable = ""  # why the body could not be read on, when it could not
        self.ended = False
        # Within the body: a study has one patient, a series one study, an instance one series.
        self.patient_of_study: dict[str, str] = {}
        self.study_of_series: dict[str, str] = {}
        self.series_of_instance: dict[str, str] = {}
        # What the archive said, asked once per study and series of the body.
        self.study_refusal: dict[str, str] = {}
        self.series_in_archive: dict[str, tuple[str, frozenset[str]]] = {}

    @property
    def content_type(self) -> str:
        return client.STOW_CONTENT_TYPE.format(boundary=self.boundary)

    @property
    def conflict(self) -> bool:
        return any(part.conflict for part in self.refused)

    def next_batch(self) -> list[Part]:
        """The next parts that passed every check; [] once the body is read to its end."""
        while not self.ended:
            pending: list[Part] = []
            try:
                self.fill(pending)
                passed = self.check_instances(pending)
            except BaseException:
                close_all(pending)
                raise
            if passed:
                return passed
        return []

    def fill(self, pending: list[Part]) -> None:
        size = 0
        while len(pending) < BATCH_PARTS and size < BATCH_BYTES:
            try:
                part = next(self.parts, None)
            except (BadBody, IncompleteBody) as error:
                self.unreadable = str(error)
                self.break_off(
                    f"the body cannot be read past its last whole part: {error}", CANNOT_UNDERSTAND
                )
                return
            if part is None:
                self.ended = True
                return
            check(part, self.study_in_path)
            if not part.refusal:
                self.check_archive(part)
            if not part.refusal:
                self.agree(part)
            if part.refusal:
                part.file.close()
                self.refused.append(part)
            else:
                pending.append(part)
                size += part.size

    def agree(self, part: Part) -> None:
        if self.patient_of_study.setdefault(part.study_uid, part.patient_id) != part.patient_id:
            refuse(part, "another part files this study under another patient", DOES_NOT_MATCH, True)
        elif self.study_of_series.setdefault(part.series_uid, part.study_uid) != part.study_uid:
            refuse(part, "another part files this series under another study", DOES_NOT_MATCH, True)
        elif self.series_of_instance.setdefault(part.sop_uid, part.series_uid) != part.series_uid:
            refuse(part, "another part files this instance under another series", DOES_NOT_MATCH, True)

    def check_archive(self, part: Part) -> None:
        """A study Orthanc holds must stay one patient's, a series one study's."""
        if part.study_uid not in self.study_refusal:
            owners = {study.patient_id for study in lookups.by_uid("studies", part.study_uid)}
            other = owners - {part.patient_id}
            self.study_refusal[part.study_uid] = (
                "its StudyInstanceUID belongs to another patient in the archive" if other else ""
            )
        if self.study_refusal[part.study_uid]:
            refuse(part, self.study_refusal[part.study_uid], DOES_NOT_MATCH, True)
            return
        if part.series_uid not in self.series_in_archive:
            found = lookups.by_uid("series", part.series_uid)
            elsewhere = [s for s in found if (s.study_uid, s.patient_id) != (part.study_uid, part.patient_id)]
            refusal = "its SeriesInstanceUID belongs to another study in the archive" if elsewhere else ""
            self.series_in_archive[part.series_uid] = (refusal, frozenset(s.orthanc_id for s in found))
        refusal, _ = self.series_in_archive[part.series_uid]
        if refusal:
            refuse(part, refusal, DOES_NOT_MATCH, True)

    def check_instances(self, pending: list[Part]) -> list[Part]:
        """An instance Orthanc holds must stay in its series: one lookup for the whole batch."""
        if not pending:
            return []
        parents = lookups.parent_series_of_instances([part.sop_uid for part in pending])
        passed = []
        for part in pending:
            _, own_series = self.series_in_archive[part.series_uid]
            if not parents.get(part.sop_uid, set()) <= own_series:
                elsewhere = "its SOPInstanceUID belongs to another series in the archive"
                refuse(part, elsewhere, DOES_NOT_MATCH, conflict=True)
                part.file.close()
                self.refused.append(part)
            else:
                passed.append(part)
        return passed

    def chunks(self, first: list[Part]) -> Iterator[bytes]:
        """What Orthanc gets: `first`, then each batch as it passes, as multipart/related."""
        batch = first
        try:
            while batch:
                for part in batch:
                    yield client.stow_part_head(self.boundary)
                    part.file.seek(0)
                    while data := part.file.read(READ_BLOCK):
                        yield data
                    yield b"\r\n"
                    part.file.close()
                batch = self.next_batch_or_break()
        finally:
            close_all(batch)
        yield client.stow_body_end(self.boundary)

    def next_batch_or_break(self) -> list[Part]:
        try:
            return self.next_batch()
        except lookups.LookupFailed:
            self.break_off(
                "the archive could not be asked who owns these UIDs: the rest of the body was not stored",
                PROCESSING_FAILURE,
            )
            return []

    def break_off(self, reason: str, code: int) -> None:
        self.broken = Part(io.BytesIO(), refusal=reason, reason_code=code)
        self.ended = True


def close_all(parts: list[Part]) -> None:
    for part in parts:
        part.file.close()


def failed_item(part: Part) -> dict[str, Any]:
    """A Failed SOP Sequence item (0008,1198) for a refused part."""
    item: dict[str, Any] = {"00081197": {"vr": "US", "Value": [part.reason_code]}}
    if part.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [part.sop_class_uid]}
    if part.sop_uid:
        item["00081155"] = {"vr": "UI", "Value": [part.sop_uid]}
    return item
