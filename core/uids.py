"""DICOM UIDs: one place for what a UID looks like, with its two readings named.

PS3.5 9.1: digits and dots, at most 64 characters, no component with a leading
zero ("0" alone is one). Archives hold UIDs that break the last rule (some
modalities write them), and those studies must stay readable: reads and links
to stored data accept them; new data stored through the portal must conform.
"""

from __future__ import annotations

import re

MAX_LENGTH = 64
CONFORMANT = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
AS_STORED = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def is_conformant(value: str) -> bool:
    """A UID new data may carry."""
    return len(value) <= MAX_LENGTH and CONFORMANT.fullmatch(value) is not None


def is_stored_uid(value: str) -> bool:
    """A UID an archive may already hold: leading zeros allowed."""
    return len(value) <= MAX_LENGTH and AS_STORED.fullmatch(value) is not None
