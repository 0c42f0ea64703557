"""One pattern for DICOM UIDs, with its two readings: new data conforms, stored data may not."""

from __future__ import annotations

import pytest

from core.uids import is_conformant, is_stored_uid


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2", "0", "1.0.3", "9" * 64])
def test_it_accepts_conformant_uids_both_ways(uid: str) -> None:
    assert is_conformant(uid) and is_stored_uid(uid)


@pytest.mark.parametrize("uid", ["1.02.3", "01.2", "1.2.00"])
def test_it_reads_stored_uids_with_leading_zeros_but_refuses_them_for_new_data(uid: str) -> None:
    assert is_stored_uid(uid) and not is_conformant(uid)


@pytest.mark.parametrize("uid", ["", "1..2", ".1", "1.", "1.2a", "1 2", "9" * 65, "1.2\n"])
def test_it_refuses_what_is_no_uid_at_all(uid: str) -> None:
    assert not is_stored_uid(uid) and not is_conformant(uid)
