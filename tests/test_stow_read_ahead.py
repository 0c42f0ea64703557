"""The STOW read-ahead: chunks made in a second thread reach Orthanc's request in order,
its errors reach the request's thread, and stopping early stops the producer."""

from __future__ import annotations

import threading
from collections.abc import Generator

import pytest

from proxy.stow import read_ahead


def numbered(count: int, closed: threading.Event, made: list[int]) -> Generator[bytes, None, None]:
    try:
        for number in range(count):
            made.append(number)
            yield b"%d," % number
    finally:
        closed.set()


def test_it_passes_every_chunk_in_order_from_another_thread() -> None:
    closed, made = threading.Event(), []
    threads: set[str] = set()

    def source() -> Generator[bytes, None, None]:
        for chunk in numbered(500, closed, made):
            threads.add(threading.current_thread().name)
            yield chunk

    assert b"".join(read_ahead(source(), depth=4)) == b"".join(b"%d," % n for n in range(500))
    assert threads == {"stow-read-ahead"}
    assert closed.is_set()


def test_it_raises_the_producers_error_in_the_consumer() -> None:
    def failing() -> Generator[bytes, None, None]:
        yield b"first"
        raise OSError("the client went away")

    chunks = read_ahead(failing())
    assert next(chunks) == b"first"
    with pytest.raises(OSError, match="the client went away"):
        next(chunks)


def test_a_consumer_that_stops_early_stops_the_producer_within_its_bound() -> None:
    closed, made = threading.Event(), []
    chunks = read_ahead(numbered(100_000, closed, made), depth=4)
    assert next(chunks) == b"0,"
    chunks.close()  # Orthanc failed: nothing more is read from the client
    assert closed.is_set()
    assert len(made) <= 1 + 4 + 1  # the one taken, the queue's bound, the one waiting to be put
