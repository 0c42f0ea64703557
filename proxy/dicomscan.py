"""One reading of a DICOM Part 10 file, or the reason two parsers could read it two ways.

The portal decides with pydicom and Orthanc stores with DCMTK, and the two
differ wherever the encoding leaves room: of two equal tags pydicom keeps the
last and DCMTK the first; pydicom guesses a data set's VR encoding from its
first element and reads past an item's stated length; a second file meta
group, a group length that ends the meta early, a delimiter where an element
belongs are each met differently. DICOM leaves none of that room (PS3.5 7.1:
tags ascend, each once; PS3.10 7.1: one file meta group, explicit VR little
endian), so a file is walked here byte by byte and refused at the first thing
that is not so.

The walk reads element headers only and steps over values by offset (a part
may be hundreds of MB), and keeps its own stack of open sequences and items,
never deeper than `max_depth` sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from struct import Struct
from typing import IO

from pydicom.datadict import DicomDictionary, dictionary_VR, keyword_for_tag
from pydicom.uid import AllTransferSyntaxes

PREAMBLE = 132  # 128 bytes, then "DICM"
# Headers are read a window at a time: a CT slice's whole header fits in one.
WINDOW = 16 * 1024
UNDEFINED_LENGTH = 0xFFFFFFFF
OPEN = -1  # the end of a sequence or item of undefined length, until its delimiter
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
META_GROUP_LENGTH, TRANSFER_SYNTAX = 0x00020000, 0x00020010
IMPLICIT_LITTLE, EXPLICIT_BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"
# Their data set is deflated: pydicom would inflate it whole, unbounded (a few MB can become GBs),
# it cannot be walked without inflating it, and pydicom reads the JPIP ones uninflated.
DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205"})
# Any other UID DCMTK and pydicom each guess an encoding for, from the first bytes or not at all.
KNOWN_SYNTAXES = frozenset(str(uid) for uid in AllTransferSyntaxes) | DEFLATED
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())
MAYBE_SEQUENCE = frozenset({b"SQ", b"UN", b""})  # b"": implicit VR, where the dictionary says
SEQUENCE_TAGS = frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "SQ")
# What the portal decides on, read by pydicom at the top level: in another VR, pydicom converts
# the value back to text (UN) or reads a sequence where DCMTK reads bytes, or the reverse.
DECIDING_VRS = {
    0x00080005: b"CS",  # Specific Character Set
    0x00080016: b"UI",  # SOP Class UID
    0x00080018: b"UI",  # SOP Instance UID
    0x00100020: b"LO",  # Patient ID
    0x0020000D: b"UI",  # Study Instance UID
    0x0020000E: b"UI",  # Series Instance UID
}
SOP_CLASS, SOP_INSTANCE = 0x00080016, 0x00080018
DATA_SET, SEQUENCE, FRAGMENTS = "data set", "sequence", "fragments"


class TwoReadings(ValueError):
    """Why the file could be read two ways; its text is the refusal reason."""


@dataclass(frozen=True)
class Reading:
    """Why the file was refused ("" when it was not).

    `unsupported` says the refusal is the transfer syntax itself (STOW's 0xC122).
    `sop_class_uid` and `sop_uid` are the values the walk passed once at the top
    level (what DCMTK would store), to name a refused file in STOW's answer.
    """

    refusal: str = ""
    unsupported: bool = False
    sop_class_uid: str = ""
    sop_uid: str = ""


@dataclass(frozen=True)
class Codec:
    tag: Struct
    tag_and_length: Struct  # implicit VR elements, items and delimiters
    explicit: Struct  # tag, VR, 2-byte length
    long_length: Struct


LITTLE = Codec(Struct("<HH"), Struct("<HHI"), Struct("<HH2sH"), Struct("<I"))
BIG = Codec(Struct(">HH"), Struct(">HHI"), Struct(">HH2sH"), Struct(">I"))


@dataclass(slots=True)
class Frame:
    """An open data set, sequence or run of pixel data fragments.

    `limit` is the end of the nearest container of defined length around it (or
    the file's): nothing inside may run past it. `guessed` marks a data set
    whose VR encoding pydicom guesses from its first element.
    """

    kind: str
    end: int
    limit: int
    implicit: bool
    depth: int
    last: int = -1
    guessed: bool = False


class Source:
    """The file's bytes a window at a time; what lies between headers is never read."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self.file, self.size = file, size
        self.window, self.start = b"", 0
        self.names: dict[int, str] = {}  # SOP UIDs met at the top level ("" once met twice)

    def remember(self, tag: int, value: int, length: int) -> None:
        if length <= 64 and value + length <= self.size:
            at = self.at(value, length, self.size)
            text = self.window[at : at + length].decode("latin-1").rstrip("\x00 ")
            self.names[tag] = "" if tag in self.names else text

    def reading(self, refusal: str = "", unsupported: bool = False) -> Reading:
        return Reading(refusal, unsupported, self.names.get(SOP_CLASS, ""), self.names.get(SOP_INSTANCE, ""))

    def at(self, offset: int, count: int, limit: int) -> int:
        """Where the `count` bytes at `offset` are in `self.window`; none may lie past `limit`."""
        if offset + count > limit:
            where = "the file" if limit == self.size else "its sequence or item"
            raise TwoReadings(f"an element runs past the end of {where} (at byte {offset})")
        start = offset - self.start
        if start < 0 or start + count > len(self.window):
            self.file.seek(offset)
            self.window, self.start, start = self.file.read(max(count, WINDOW)), offset, 0
            if len(self.window) < count:
                raise TwoReadings(f"the file is shorter than its size says (at byte {offset})")
        return start


def read(file: IO[bytes], size: int, max_depth: int) -> Reading:
    """Walk the Part 10 file in `file` (`size` bytes, its preamble and DICM already checked)."""
    source = Source(file, size)
    try:
        syntax, start = read_meta(source)
        if syntax in DEFLATED:
            return source.reading("the deflated transfer syntax is not accepted", unsupported=True)
        if syntax not in KNOWN_SYNTAXES:
            return source.reading(f"the transfer syntax {syntax!r} is not known", unsupported=True)
        walk(source, start, syntax, max_depth)
    except TwoReadings as error:
        return source.reading(str(error))
    return source.reading()


def read_meta(source: Source) -> tuple[str, int]:
    """The file meta's transfer syntax and where the data set starts.

    The meta ends where its group length says, or at the first element of
    another group when it has none; DCMTK follows the group length and pydicom
    the group, so the two must agree.
    """
    offset, last, end, syntax = PREAMBLE, -1, OPEN, None
    while offset != end and offset + 8 <= source.size:
        at = source.at(offset, 8, source.size)
        group, element = LITTLE.tag.unpack_from(source.window, at)
        tag = group << 16 | element
        if group != 0x0002:
            if end != OPEN:
                raise TwoReadings(f"the file meta ends before its group length says ({tag_name(tag)})")
            break
        check_order(tag, last, "in the file meta")
        last = tag
        vr, value, length = explicit_header(source, offset, at, LITTLE, source.size)
        if length == UNDEFINED_LENGTH:
            raise TwoReadings(f"{tag_name(tag)} in the file meta has an undefined length")
        if value + length > source.size:
            raise TwoReadings(f"{tag_name(tag)} in the file meta runs past the end of the file")
        if tag == META_GROUP_LENGTH:
            end = value + 4 + group_length(source, value, vr, length)
        elif tag == TRANSFER_SYNTAX:
            syntax = uid_value(source, value, vr, length)
        offset = value + length
        if end != OPEN and offset > end:
            raise TwoReadings(f"{tag_name(tag)} runs past the end its group length gives the file meta")
    if last == -1:
        raise TwoReadings("the file has no file meta group")
    if end not in (OPEN, offset):
        raise TwoReadings("the file meta's group length runs past its elements")
    if syntax is None:
        raise TwoReadings("the file meta has no Transfer Syntax UID")
    return syntax, offset


def group_length(source: Source, value: int, vr: bytes, length: int) -> int:
    if vr != b"UL" or length != 4:
        raise TwoReadings("the file meta's group length is not one UL")
    at = source.at(value, 4, source.size)
    (found,) = LITTLE.long_length.unpack_from(source.window, at)
    return int(found)


def uid_value(source: Source, value: int, vr: bytes, length: int) -> str:
    if vr != b"UI" or length > 64:
        raise TwoReadings("the file meta's Transfer Syntax UID is not one UID")
    at = source.at(value, length, source.size)
    return source.window[at : at + length].decode("latin-1").rstrip("\x00 ")


def walk(source: Source, offset: int, syntax: str, max_depth: int) -> None:
    """Walk the data set from `offset` to the end of the file, or raise TwoReadings."""
    codec = BIG if syntax == EXPLICIT_BIG else LITTLE
    implicit = syntax == IMPLICIT_LITTLE
    # pydicom guesses the top level's encoding from its first element, and trusts the guess.
    stack = [Frame(DATA_SET, source.size, source.size, implicit, 0, guessed=implicit)]
    while stack:
        frame = stack[-1]
        if offset == frame.end:
            stack.pop()
        elif frame.kind == DATA_SET:
            offset = element(source, offset, frame, stack, codec, max_depth)
        elif frame.kind == SEQUENCE:
            offset = item(source, offset, frame, stack, codec)
        else:
            offset = fragment(source, offset, frame, stack, codec)


def element(
    source: Source, offset: int, frame: Frame, stack: list[Frame], codec: Codec, max_depth: int
) -> int:
    """Check the data element at `offset`; returns where the next one starts."""
    at = source.at(offset, 8, frame.limit)
    group, number = codec.tag.unpack_from(source.window, at)
    tag = group << 16 | number
    if tag == ITEM_END and frame.end == OPEN and frame.depth:
        return close(source, offset, at, stack, codec, "item")
    if group == 0xFFFE:
        raise TwoReadings(f"{tag_name(tag)} stands where an element belongs, {place(frame)}")
    if group == 0x0002:
        raise TwoReadings(f"a second file meta group: {tag_name(tag)} {place(frame)}")
    if tag <= frame.last:
        if frame.depth == 0 and tag in source.names:
            source.names[tag] = ""  # met twice: neither value names the file
        check_order(tag, frame.last, place(frame))
    if frame.guessed and frame.last == -1 and looks_explicit(source.window, at):
        where = place(frame)
        raise TwoReadings(f"the data set is implicit VR, but its first element {where} reads as explicit VR")
    frame.last = tag
    if frame.implicit:
        vr, value, length = b"", offset + 8, codec.tag_and_length.unpack_from(source.window, at)[2]
    else:
        vr, value, length = explicit_header(source, offset, at, codec, frame.limit)
        if frame.depth == 0 and DECIDING_VRS.get(tag, vr) != vr:
            raise TwoReadings(f"{tag_name(tag)} has VR {vr.decode('latin-1')}, not its own")
    if length == UNDEFINED_LENGTH:
        return open_value(tag, vr, value, frame, stack, codec, max_depth)
    if value + length > frame.limit:
        raise TwoReadings(f"{tag_name(tag)} runs past the end of {outer(frame, source)}")
    if frame.depth == 0 and tag in (SOP_CLASS, SOP_INSTANCE):
        source.remember(tag, value, length)
    content = sequence_content(tag, vr, frame, codec) if vr in MAYBE_SEQUENCE else None
    if content is not None:
        stack.append(sequence(value + length, value + length, content, frame, max_depth))
        return value
    return value + length


def explicit_header(source: Source, offset: int, at: int, codec: Codec, limit: int) -> tuple[bytes, int, int]:
    """An explicit VR element's VR, where its value starts, and its length."""
    _, _, vr, length = codec.explicit.unpack_from(source.window, at)
    if vr in SHORT_VRS:
        return vr, offset + 8, int(length)
    if vr not in LONG_VRS:
        # pydicom reads an unknown VR's length in 2 bytes (or takes the bytes as implicit VR), DCMTK in 4.
        raise TwoReadings(f"an element at byte {offset} has no valid VR ({vr!r})")
    at = source.at(offset, 12, limit)
    return vr, offset + 12, int(codec.long_length.unpack_from(source.window, at + 8)[0])


def open_value(
    tag: int, vr: bytes, value: int, frame: Frame, stack: list[Frame], codec: Codec, max_depth: int
) -> int:
    """An element of undefined length: a sequence, or encapsulated pixel data; nothing else."""
    if tag == PIXEL_DATA and vr in (b"", b"OB", b"OW"):
        stack.append(Frame(FRAGMENTS, OPEN, frame.limit, frame.implicit, frame.depth))
        return value
    content = sequence_content(tag, vr, frame, codec, undefined=True)
    if content is None:
        raise TwoReadings(f"{tag_name(tag)} has an undefined length but is no sequence")
    stack.append(sequence(OPEN, frame.limit, content, frame, max_depth))
    return value


def sequence_content(tag: int, vr: bytes, frame: Frame, codec: Codec, undefined: bool = False) -> bool | None:
    """Whether the items of `tag` are implicit VR, or None when its value is not parsed as items.

    UN holds implicit VR little endian (PS3.5 6.2.2). pydicom reads it as the
    file's byte order, so in a big endian file it has two readings.
    """
    if vr == b"SQ":
        return frame.implicit
    if vr == b"UN" and (undefined or dictionary_sequence(tag)):
        if codec is BIG:
            raise TwoReadings(f"{tag_name(tag)} is a UN sequence in a big endian file")
        return True
    if vr == b"" and (dictionary_sequence(tag) or (undefined and not in_dictionary(tag))):
        return True
    return None


def sequence(end: int, limit: int, implicit: bool, parent: Frame, max_depth: int) -> Frame:
    if parent.depth + 1 > max_depth:
        raise TwoReadings(f"sequences nest deeper than {max_depth} levels")
    # pydicom reads the items of a UN sequence in an explicit VR file as explicit VR
    # unless their first element's VR is not two capitals.
    return Frame(SEQUENCE, end, limit, implicit, parent.depth + 1, guessed=implicit and not parent.implicit)


def item(source: Source, offset: int, frame: Frame, stack: list[Frame], codec: Codec) -> int:
    at = source.at(offset, 8, frame.limit)
    group, number, length = codec.tag_and_length.unpack_from(source.window, at)
    tag = group << 16 | number
    if tag == SEQUENCE_END and frame.end == OPEN:
        return close(source, offset, at, stack, codec, "sequence")
    if tag != ITEM:
        raise TwoReadings(f"{tag_name(tag)} stands where a sequence item belongs, {place(frame)}")
    value = offset + 8
    if length == UNDEFINED_LENGTH:
        stack.append(Frame(DATA_SET, OPEN, frame.limit, frame.implicit, frame.depth, guessed=frame.guessed))
    elif value + length > frame.limit:
        raise TwoReadings(f"an item runs past the end of {outer(frame, source)}")
    else:
        end = value + length
        stack.append(Frame(DATA_SET, end, end, frame.implicit, frame.depth, guessed=frame.guessed))
    return value


def fragment(source: Source, offset: int, frame: Frame, stack: list[Frame], codec: Codec) -> int:
    """Pixel data fragments are stepped over: both readers take them as bytes, by their lengths."""
    at = source.at(offset, 8, frame.limit)
    group, number, length = codec.tag_and_length.unpack_from(source.window, at)
    tag = group << 16 | number
    if tag == SEQUENCE_END:
        return close(source, offset, at, stack, codec, "pixel data")
    if tag != ITEM or length == UNDEFINED_LENGTH:
        raise TwoReadings(f"encapsulated pixel data holds {tag_name(tag)}, not a fragment of defined length")
    if offset + 8 + length > frame.limit:
        raise TwoReadings(f"a pixel data fragment runs past the end of {outer(frame, source)}")
    return offset + 8 + length


def close(source: Source, offset: int, at: int, stack: list[Frame], codec: Codec, what: str) -> int:
    # pydicom passes over a delimiter's length; DCMTK may not.
    if codec.tag_and_length.unpack_from(source.window, at)[2] != 0:
        raise TwoReadings(f"the delimiter closing a {what} at byte {offset} has a length")
    stack.pop()
    return offset + 8


def check_order(tag: int, last: int, where: str) -> None:
    if tag == last:
        raise TwoReadings(f"{tag_name(tag)} appears twice {where}")
    if tag < last:
        raise TwoReadings(f"{tag_name(tag)} follows {tag_name(last)} {where}: elements must ascend")


def looks_explicit(window: bytes, at: int) -> bool:
    """pydicom's test: the two bytes after the tag are capital letters, so a VR."""
    return 0x40 < window[at + 4] < 0x5B and 0x40 < window[at + 5] < 0x5B


def dictionary_sequence(tag: int) -> bool:
    if tag in SEQUENCE_TAGS:
        return True
    if tag in DicomDictionary or tag >> 16 & 1:
        return False
    try:  # the repeating groups (50xx,2600 is a sequence)
        return bool(dictionary_VR(tag) == "SQ")
    except KeyError:
        return False


def in_dictionary(tag: int) -> bool:
    if tag in DicomDictionary:
        return True
    try:
        dictionary_VR(tag)
    except KeyError:
        return False
    return True


def place(frame: Frame) -> str:
    if frame.depth == 0:
        return "in the data set"
    return f"in a sequence item {frame.depth} level{'s' if frame.depth > 1 else ''} deep"


def outer(frame: Frame, source: Source) -> str:
    return "the file" if frame.limit == source.size else "its sequence or item"


def tag_name(tag: int) -> str:
    name = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    keyword = keyword_for_tag(tag) if tag >> 16 != 0xFFFE else ""
    return f"{name} {keyword}" if keyword else name
