"""Passes of `make test` that run side by side draw ports from slices that never meet."""

from __future__ import annotations

import pytest

from tests import services


def test_slices_split_the_range_below_the_ephemeral_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_TEST_PORT_SLOT", "0/2")
    first = services.port_range()
    monkeypatch.setenv("PORTAL_TEST_PORT_SLOT", "1/2")
    second = services.port_range()
    assert first[1] == second[0]
    assert 1024 <= first[0] < first[1] <= second[1] <= services.ephemeral_range()[0]


def test_a_port_handed_out_lies_in_the_process_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_TEST_PORT_SLOT", "1/2")
    low, high = services.port_range()
    assert all(low <= services.free_port() < high for _ in range(20))
