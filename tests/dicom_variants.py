"""DICOM files encoded by hand, and seeded hostile variants of them.

pydicom writes only what it would read back one way; these files are written
the way a hostile uploader might: elements repeated or out of order at any
nesting level, a second file meta group, a data set in another encoding than
its file meta says, in implicit VR, explicit VR and big endian, with sequences
and items of defined or undefined length, and sequences hidden in UN.

A file is a list of elements written in the order given, so a variant is a
small change to that list; every length is computed on writing, so a change
never leaves a stale length behind.
"""

from __future__ import annotations

import copy
import itertools
import random
import secrets
import struct
from dataclasses import dataclass

from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, SecondaryCaptureImageStorage, generate_uid

IMPLICIT, EXPLICIT, BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
SYNTAXES = {IMPLICIT: "implicit VR", EXPLICIT: "explicit VR", BIG: "big endian"}
LONG_VRS = frozenset(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"])
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
PATIENT_ID, STUDY_UID, SOP_UID = 0x00100020, 0x0020000D, 0x00080018
TRANSFER_SYNTAX = 0x00020010
# The sequence opening each nesting level; all sort after the elements of the item around them.
NESTING = (0x00081140, 0x00082112, 0x00089215)  # Referenced Image, Source Image, Derivation Code
MAX_LEVEL = len(NESTING)


@dataclass
class Item:
    elements: list[Element]
    undefined: bool = False


@dataclass
class Element:
    """A data element: `value` is text, an int (US, UL), bytes, or items (a sequence)."""

    tag: int
    vr: str
    value: str | int | bytes | list[Item]
    undefined: bool = False  # an undefined length (bytes: they hold their own items and delimiter)
    as_un: bool = False  # a sequence written as UN of undefined length, its items implicit VR LE


@dataclass(frozen=True)
class Encoding:
    syntax: str = EXPLICIT
    sequences_undefined: bool = False
    items_undefined: bool = False
    un: bool = False  # the outermost sequence as UN of undefined length (explicit VR LE only)

    @property
    def name(self) -> str:
        lengths = f"sequences {'undefined' if self.sequences_undefined else 'defined'}"
        lengths += f", items {'undefined' if self.items_undefined else 'defined'}"
        return f"{SYNTAXES.get(self.syntax, self.syntax)}{', outer UN' if self.un else ''}, {lengths}"


@dataclass
class Instance:
    """A file's parts before encoding, and the identifiers its first elements hold."""

    meta: list[Element]
    dataset: list[Element]
    syntax: str
    sop_uid: str
    patient_id: str
    study_uid: str
    group_length_change: int = 0
    body_syntax: str = ""  # the encoding the data set is written in, when not the meta's

    def encode(self) -> bytes:
        meta = encode(self.meta, implicit=False, little=True)
        length = Element(0x00020000, "UL", len(meta) + self.group_length_change)
        body = self.body_syntax or self.syntax
        data = encode(self.dataset, implicit=body == IMPLICIT, little=body != BIG)
        return b"\0" * 128 + b"DICM" + encode([length], False, True) + meta + data


@dataclass(frozen=True)
class Variant:
    """A generated file; `reason` is a part of the refusal the portal must give ("" for any)."""

    name: str
    data: bytes
    sop_uid: str
    patient_id: str
    study_uid: str
    reason: str = ""


def encode(elements: list[Element], implicit: bool, little: bool) -> bytes:
    return b"".join(encode_element(element, implicit, little) for element in elements)


def encode_element(element: Element, implicit: bool, little: bool) -> bytes:
    order = "<" if little else ">"
    if isinstance(element.value, list):
        if element.as_un:
            items = b"".join(encode_item(item, True, True) for item in element.value)
            head = tag_bytes(element.tag, "<") + b"UN\0\0" + struct.pack("<I", UNDEFINED)
            return head + items + delimiter(SEQUENCE_END, "<")
        items = b"".join(encode_item(item, implicit, little) for item in element.value)
        if element.undefined:
            return (
                header(element.tag, "SQ", UNDEFINED, implicit, order) + items + delimiter(SEQUENCE_END, order)
            )
        return header(element.tag, "SQ", len(items), implicit, order) + items
    value = value_bytes(element, order)
    length = UNDEFINED if element.undefined else len(value)
    return header(element.tag, element.vr, length, implicit, order) + value


def encode_item(item: Item, implicit: bool, little: bool) -> bytes:
    order = "<" if little else ">"
    content = encode(item.elements, implicit, little)
    if item.undefined:
        return (
            tag_bytes(ITEM, order)
            + struct.pack(order + "I", UNDEFINED)
            + content
            + delimiter(ITEM_END, order)
        )
    return tag_bytes(ITEM, order) + struct.pack(order + "I", len(content)) + content


def header(tag: int, vr: str, length: int, implicit: bool, order: str) -> bytes:
    if implicit:
        return tag_bytes(tag, order) + struct.pack(order + "I", length)
    if vr in LONG_VRS:
        return tag_bytes(tag, order) + vr.encode() + b"\0\0" + struct.pack(order + "I", length)
    return tag_bytes(tag, order) + vr.encode() + struct.pack(order + "H", length)


def tag_bytes(tag: int, order: str) -> bytes:
    return struct.pack(order + "HH", tag >> 16, tag & 0xFFFF)


def delimiter(tag: int, order: str) -> bytes:
    return tag_bytes(tag, order) + b"\0\0\0\0"


def value_bytes(element: Element, order: str) -> bytes:
    if isinstance(element.value, bytes):
        raw = element.value
    elif isinstance(element.value, int):
        raw = struct.pack(order + {"US": "H", "UL": "I"}[element.vr], element.value)
    else:
        raw = str(element.value).encode("ascii")
    if len(raw) % 2:
        raw += b"\0" if element.vr in ("UI", "OB") else b" "
    return raw


def instance(
    encoding: Encoding,
    depth: int = MAX_LEVEL,
    patient_id: str = "",
    study_uid: str = "",
) -> Instance:
    """A small valid secondary capture image whose items nest `depth` sequences deep."""
    sop_uid = generate_uid()
    patient_id = patient_id or f"ONE-READING-{secrets.token_hex(4)}"
    study_uid = study_uid or generate_uid()
    meta = [
        Element(0x00020001, "OB", b"\0\1"),
        Element(0x00020002, "UI", SecondaryCaptureImageStorage),
        Element(0x00020003, "UI", sop_uid),
        Element(TRANSFER_SYNTAX, "UI", encoding.syntax),
        Element(0x00020012, "UI", PYDICOM_IMPLEMENTATION_UID),
    ]
    dataset = [
        Element(0x00080005, "CS", "ISO_IR 100"),
        Element(0x00080016, "UI", SecondaryCaptureImageStorage),
        Element(SOP_UID, "UI", sop_uid),
        Element(0x00080060, "CS", "OT"),
        *nesting(encoding, depth, 1),
        Element(0x00100010, "PN", "One^Reading"),
        Element(PATIENT_ID, "LO", patient_id),
        Element(STUDY_UID, "UI", study_uid),
        Element(0x0020000E, "UI", generate_uid()),
        Element(0x00200013, "IS", "1"),
        Element(0x00280002, "US", 1),
        Element(0x00280004, "CS", "MONOCHROME2"),
        Element(0x00280010, "US", 2),
        Element(0x00280011, "US", 2),
        Element(0x00280100, "US", 16),
        Element(0x00280101, "US", 12),
        Element(0x00280102, "US", 11),
        Element(0x00280103, "US", 0),
        Element(0x7FE00010, "OW", b"\x10\x00\x20\x00\x30\x00\x40\x00"),
    ]
    return Instance(meta, dataset, encoding.syntax, sop_uid, patient_id, study_uid)


def nesting(encoding: Encoding, depth: int, level: int) -> list[Element]:
    """The sequence opening `level` and all below it, down to `depth`."""
    if level > depth:
        return []
    elements = [
        Element(0x00081150, "UI", SecondaryCaptureImageStorage),
        Element(0x00081155, "UI", generate_uid()),
        *nesting(encoding, depth, level + 1),
    ]
    sequence = Element(
        NESTING[level - 1],
        "SQ",
        [Item(elements, encoding.items_undefined)],
        undefined=encoding.sequences_undefined,
        as_un=encoding.un and level == 1,
    )
    return [sequence]


def data_set_at(dataset: list[Element], level: int) -> list[Element]:
    """The elements of the item `level` sequences deep (0: the top level)."""
    for tag in NESTING[:level]:
        sequence = next(element for element in dataset if element.tag == tag)
        assert isinstance(sequence.value, list)
        dataset = sequence.value[0].elements
    return dataset


def where(level: int) -> str:
    """How the walker names the place of a refused element."""
    return (
        "in the data set"
        if level == 0
        else f"in a sequence item {level} level{'s' if level > 1 else ''} deep"
    )


def tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def other_value(element: Element, rng: random.Random) -> Element:
    """A copy of a leaf element with a different value of the same kind."""
    twin = copy.copy(element)
    if isinstance(element.value, int):
        twin.value = element.value + 1
    elif isinstance(element.value, bytes):
        twin.value = bytes(rng.randrange(256) for _ in element.value)
    elif element.vr == "UI":
        twin.value = generate_uid()
    else:
        twin.value = f"DECOY{rng.randrange(1000)}"
    return twin


def repeated(encoding: Encoding, level: int, rng: random.Random) -> Variant:
    """One element of the data set `level` deep twice, the second with another value."""
    made = instance(encoding)
    elements = data_set_at(made.dataset, level)
    leaves = [i for i, element in enumerate(elements) if not isinstance(element.value, list)]
    index = rng.choice(leaves)
    elements.insert(index + 1, other_value(elements[index], rng))
    name = f"{tag_text(elements[index].tag)} twice {where(level)}, {encoding.name}"
    return finished(made, name, f"appears twice {where(level)}")


def swapped(encoding: Encoding, level: int, rng: random.Random) -> Variant:
    """Two neighbouring elements of the data set `level` deep in descending order."""
    made = instance(encoding)
    elements = data_set_at(made.dataset, level)
    index = rng.randrange(len(elements) - 1)
    elements[index], elements[index + 1] = elements[index + 1], elements[index]
    name = f"element {index + 1} before {index} {where(level)}, {encoding.name}"
    return finished(made, name, "elements must ascend")


def victim_first(victim_patient: str, victim_study: str, encoding: Encoding | None = None) -> Variant:
    """The finding of issue 29: the victim's PatientID and StudyInstanceUID, then a decoy's.

    pydicom reads the decoy (the last), DCMTK stores the victim's (the first).
    """
    encoding = encoding or Encoding()
    made = instance(encoding)
    decoy_patient, decoy_study = made.patient_id, made.study_uid
    made.patient_id, made.study_uid = victim_patient, victim_study
    for tag, first, second in (
        (PATIENT_ID, victim_patient, decoy_patient),
        (STUDY_UID, victim_study, decoy_study),
    ):
        index = next(i for i, element in enumerate(made.dataset) if element.tag == tag)
        made.dataset[index].value = first
        made.dataset.insert(index + 1, Element(tag, made.dataset[index].vr, second))
    return finished(
        made, f"victim first, decoy second, {encoding.name}", "(0010,0020) PatientID appears twice"
    )


def meta_variants(encoding: Encoding) -> list[Variant]:
    """A second file meta group, in the meta itself or in the data set, and group lengths that lie."""
    other = IMPLICIT if encoding.syntax != IMPLICIT else EXPLICIT
    variants = []

    made = instance(encoding)
    made.meta.insert(4, Element(TRANSFER_SYNTAX, "UI", other))
    variants.append(
        finished(made, f"transfer syntax twice in the meta, {encoding.name}", "twice in the file meta")
    )

    made = instance(encoding)
    made.meta[1], made.meta[2] = made.meta[2], made.meta[1]
    variants.append(finished(made, f"meta out of order, {encoding.name}", "elements must ascend"))

    made = instance(encoding)
    made.dataset.insert(0, Element(TRANSFER_SYNTAX, "UI", other))
    variants.append(finished(made, f"meta element opening the data set, {encoding.name}", "second file meta"))

    made = instance(encoding)
    index = next(i for i, element in enumerate(made.dataset) if element.tag == PATIENT_ID)
    made.dataset.insert(index + 1, Element(0x00020003, "UI", generate_uid()))
    variants.append(finished(made, f"meta element after PatientID, {encoding.name}", "second file meta"))

    made = instance(encoding)
    made.group_length_change = -len(encode(made.meta[-1:], False, True))
    # The meta element left over is little endian: in a big endian data set it is no group 0002.
    left_over = "second file meta" if encoding.syntax != BIG else ""
    variants.append(finished(made, f"group length one element short, {encoding.name}", left_over))

    made = instance(encoding)
    made.group_length_change = 10
    variants.append(finished(made, f"group length 10 bytes long, {encoding.name}", "group length"))
    return variants


def mismatched(meta_syntax: str, body_syntax: str) -> Variant:
    """The file meta names one transfer syntax, the data set is written in another."""
    made = instance(Encoding(meta_syntax))
    made.body_syntax = body_syntax
    reason = {(EXPLICIT, IMPLICIT): "no valid VR", (IMPLICIT, EXPLICIT): "reads as explicit VR"}
    name = f"meta says {SYNTAXES[meta_syntax]}, data set is {SYNTAXES[body_syntax]}"
    return finished(made, name, reason.get((meta_syntax, body_syntax), ""))


def finished(made: Instance, name: str, reason: str) -> Variant:
    return Variant(name, made.encode(), made.sop_uid, made.patient_id, made.study_uid, reason)


def encodings() -> list[Encoding]:
    """Every encoding the variants come in: each syntax and length, and UN in explicit VR LE."""
    found = [
        Encoding(syntax, sequences, items)
        for syntax, sequences, items in itertools.product(SYNTAXES, (False, True), (False, True))
    ]
    return found + [Encoding(EXPLICIT, True, items, un=True) for items in (False, True)]


def hostile(seed: int, count: int = 64) -> list[Variant]:
    """`count` repeated or out-of-order elements at levels 0-3 in every encoding, drawn by `seed`,
    then the meta and encoding variants: each a distinct file two parsers could read two ways."""
    rng = random.Random(seed)
    grid = list(itertools.product((repeated, swapped), range(MAX_LEVEL + 1), encodings()))
    rng.shuffle(grid)
    found: dict[str, Variant] = {}
    for make, level, encoding in grid:
        variant = make(encoding, level, rng)
        found.setdefault(variant.name, variant)
        if len(found) == count:
            break
    for syntax in SYNTAXES:
        for variant in meta_variants(Encoding(syntax)):
            found[variant.name] = variant
    for meta_syntax, body_syntax in (
        (EXPLICIT, IMPLICIT),
        (IMPLICIT, EXPLICIT),
        (EXPLICIT, BIG),
        (BIG, EXPLICIT),
    ):
        variant = mismatched(meta_syntax, body_syntax)
        found[variant.name] = variant
    return list(found.values())


def valid() -> list[Variant]:
    """One valid file in each encoding, nested as deep as the variants: the variants' controls."""
    return [finished(instance(encoding), f"valid, {encoding.name}", "") for encoding in encodings()]


def with_identifiers(name: str, patient_id: bytes, study_uid: str = "", reason: str = "") -> Variant:
    """A valid explicit VR file whose PatientID value is written as the bytes given."""
    made = instance(Encoding(), depth=1, study_uid=study_uid)
    next(element for element in made.dataset if element.tag == PATIENT_ID).value = patient_id
    made.patient_id = patient_id.decode("latin-1").rstrip("\0 ")
    return finished(made, name, reason)


def hostile_identifiers(victim_patient: str, victim_study: str) -> list[Variant]:
    """PatientIDs Orthanc stores otherwise than pydicom reads them, on the victim's study or a new one.

    Orthanc keeps a leading space (a second patient for the victim's study),
    stores "A\\B" as written where pydicom reads two values, and cuts at a NUL.
    """
    victim = victim_patient.encode()
    return [
        with_identifiers(
            "the victim's PatientID after a space", b" " + victim, victim_study, "begins with a space"
        ),
        with_identifiers(
            "the victim's PatientID and another", victim + b"\\DECOY", victim_study, "more than one"
        ),
        with_identifiers(
            "the victim's PatientID, a NUL, a decoy", victim + b"\0DECOY", "", "control character"
        ),
        with_identifiers(
            "a PatientID of 65 characters", victim + b"X" * (65 - len(victim)), "", "longer than 64"
        ),
    ]


def plain_identifiers() -> list[Variant]:
    """PatientIDs both readers read alike, though not plain ASCII: padding and ISO_IR 100 letters."""
    return [
        with_identifiers("a PatientID padded with spaces", b"ONE-READING-PADDED   "),
        with_identifiers("a PatientID in ISO_IR 100", b"ONE-READING-\xc4\xd6\xdf"),
    ]
