"""STOW-RS bodies checked part by part before Orthanc sees them.

One small hostile file can take Orthanc down (sequences nested a few dozen
levels overflow a thread stack in its DICOM parser), and a series can be
stored under a study that another patient owns. So each part is spooled to a
temporary file (memory stays flat for studies of hundreds of MB), its header
read up to the pixel data and checked; only the parts that pass are streamed
on to Orthanc, and the refused ones are listed in the answer's Failed SOP
Sequence the way STOW-RS defines it.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import pydicom
from pydicom.errors import InvalidDicomError

from orthanc import lookups

READ_BLOCK = 1024 * 1024
MAX_PART_HEADER = 8 * 1024
MAX_PARTS = 20_000
MAX_DEPTH = 16
SPOOL_IN_MEMORY = 256 * 1024
UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
BOUNDARY = re.compile(r'boundary="?([^";]{1,70})"?', re.IGNORECASE)
# STOW-RS failure reasons (PS3.18 table 10.5.3-1 / PS3.4 C.4.2.1.4).
CANNOT_UNDERSTAND = 0xC000
DOES_NOT_MATCH = 0xA900
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


@dataclass
class Checked:
    parts: list[Part] = field(default_factory=list)

    @property
    def passed(self) -> list[Part]:
        return [part for part in self.parts if not part.refusal]

    @property
    def refused(self) -> list[Part]:
        return [part for part in self.parts if part.refusal]

    def close(self) -> None:
        for part in self.parts:
            part.file.close()


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


def check_all(parts: Iterator[Part], study_in_path: str) -> Checked:
    """Check every part; parts of one body must also agree with each other."""
    checked = Checked()
    seen_studies: dict[str, str] = {}
    seen_series: dict[str, str] = {}
    try:
        for part in parts:
            checked.parts.append(part)
            check(part, study_in_path)
            if not part.refusal:
                agree(part, seen_studies, seen_series)
    except BaseException:
        checked.close()
        raise
    return checked


def check(part: Part, study_in_path: str) -> None:
    if part.content_type not in ("application/dicom", ""):
        refuse(part, f"parts must be application/dicom, not {part.content_type}", CANNOT_UNDERSTAND)
        return
    part.file.seek(0)
    preamble = part.file.read(132)
    if len(preamble) < 132 or preamble[128:132] != b"DICM":
        refuse(part, "not a DICOM Part 10 file (no DICM after the 128-byte preamble)", CANNOT_UNDERSTAND)
        return
    part.file.seek(0)
    try:
        dataset = pydicom.dcmread(part.file, stop_before_pixels=True)
        depth = nesting_depth(dataset)
    except RecursionError:
        refuse(part, f"sequences nest deeper than {MAX_DEPTH} levels", CANNOT_UNDERSTAND)
        return
    except (InvalidDicomError, ValueError, TypeError, KeyError, OSError, EOFError, OverflowError) as error:
        refuse(part, f"the DICOM header cannot be read: {str(error)[:120]}", CANNOT_UNDERSTAND)
        return
    if depth > MAX_DEPTH:
        refuse(part, f"sequences nest {depth} levels deep (at most {MAX_DEPTH})", CANNOT_UNDERSTAND)
        return
    if not read_identifiers(part, dataset):
        return
    if study_in_path and part.study_uid != study_in_path:
        refuse(part, "its StudyInstanceUID is not the study in the path", DOES_NOT_MATCH, conflict=True)
        return
    check_archive(part)


def nesting_depth(dataset: Any) -> int:
    """How deep sequences nest, walked without recursion (hostile files nest thousands deep)."""
    deepest = 0
    pending = [(dataset, 0)]
    while pending:
        current, depth = pending.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        for element in current:
            if element.VR == "SQ":
                pending.extend((item, depth + 1) for item in element.value)
    return deepest


def read_identifiers(part: Part, dataset: Any) -> bool:
    for keyword in REQUIRED:
        value = str(dataset.get(keyword, "") or "").strip("\x00 ")
        if not value:
            refuse(part, f"{keyword} is missing", CANNOT_UNDERSTAND)
            return False
        if len(value) > 64 or not UID.fullmatch(value):
            refuse(part, f"{keyword} is not a valid UID (digits and dots, at most 64)", CANNOT_UNDERSTAND)
            return False
    part.study_uid = str(dataset.StudyInstanceUID).strip("\x00 ")
    part.series_uid = str(dataset.SeriesInstanceUID).strip("\x00 ")
    part.sop_uid = str(dataset.SOPInstanceUID).strip("\x00 ")
    part.sop_class_uid = str(dataset.SOPClassUID).strip("\x00 ")
    part.patient_id = str(dataset.get("PatientID", "") or "").strip("\x00 ")[:64]
    return True


def check_archive(part: Part) -> None:
    """A study Orthanc holds must stay one patient's, a series one study's."""
    for study in lookups.by_uid("studies", part.study_uid):
        if study.patient_id != part.patient_id:
            refuse(
                part, "its StudyInstanceUID belongs to another patient in the archive", DOES_NOT_MATCH, True
            )
            return
    for series in lookups.by_uid("series", part.series_uid):
        if series.study_uid != part.study_uid or series.patient_id != part.patient_id:
            refuse(
                part, "its SeriesInstanceUID belongs to another study in the archive", DOES_NOT_MATCH, True
            )
            return
    for instance in lookups.by_uid("instances", part.sop_uid):
        if instance.series_uid != part.series_uid or instance.patient_id != part.patient_id:
            refuse(part, "its SOPInstanceUID belongs to another series in the archive", DOES_NOT_MATCH, True)
            return


def agree(part: Part, studies: dict[str, str], series: dict[str, str]) -> None:
    """Within one body too: a study has one patient, a series one study."""
    if studies.setdefault(part.study_uid, part.patient_id) != part.patient_id:
        refuse(part, "another part files this study under another patient", DOES_NOT_MATCH, conflict=True)
    elif series.setdefault(part.series_uid, part.study_uid) != part.study_uid:
        refuse(part, "another part files this series under another study", DOES_NOT_MATCH, conflict=True)


def refuse(part: Part, reason: str, code: int, conflict: bool = False) -> None:
    part.refusal, part.reason_code, part.conflict = reason, code, conflict


class PartsBody:
    """The parts that passed, as a multipart/related body of known length, read from disk."""

    def __init__(self, parts: list[Part], boundary: str) -> None:
        self.boundary = boundary
        self.pieces: list[bytes | Part] = []
        for part in parts:
            self.pieces.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            self.pieces.append(part)
            self.pieces.append(b"\r\n")
        self.pieces.append(f"--{boundary}--\r\n".encode())
        self.length = sum(len(piece) if isinstance(piece, bytes) else piece.size for piece in self.pieces)
        self.index = 0
        self.started = False

    def read(self, size: int = -1) -> bytes:
        while self.index < len(self.pieces):
            piece = self.pieces[self.index]
            if isinstance(piece, bytes):
                self.index += 1
                return piece
            if not self.started:
                piece.file.seek(0)
                self.started = True
            data = piece.file.read(READ_BLOCK if size < 0 else min(size, READ_BLOCK))
            if data:
                return data
            self.index += 1
            self.started = False
        return b""

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="application/dicom"; boundary={self.boundary}'


def failed_item(part: Part) -> dict[str, Any]:
    """A Failed SOP Sequence item (0008,1198) for a refused part."""
    item: dict[str, Any] = {"00081197": {"vr": "US", "Value": [part.reason_code]}}
    if part.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [part.sop_class_uid]}
    if part.sop_uid:
        item["00081155"] = {"vr": "UI", "Value": [part.sop_uid]}
    return item
