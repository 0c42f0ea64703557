"""One thread at a time per key, for work a burst of requests would otherwise all do at once."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any


class OneAtATime:
    """Per key, one thread at a time. The first of a burst does the work (asks Orthanc,
    runs the password hasher) and the others, waiting their turn, find its result
    instead of each doing it again.

    A thread never waits longer than `wait_seconds` (the work's own timeout): then it
    goes ahead on its own, so a hanging Orthanc does not time a burst out one by one.
    """

    def __init__(self, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        self.lock = threading.Lock()
        self.turns: dict[Any, tuple[threading.Lock, int]] = {}  # key -> its lock, threads holding or waiting

    @contextlib.contextmanager
    def turn(self, key: Any) -> Iterator[None]:
        with self.lock:
            lock, count = self.turns.get(key, (threading.Lock(), 0))
            self.turns[key] = (lock, count + 1)
        acquired = lock.acquire(timeout=self.wait_seconds)
        try:
            yield
        finally:
            if acquired:
                lock.release()
            with self.lock:
                lock, count = self.turns[key]
                if count == 1:
                    del self.turns[key]
                else:
                    self.turns[key] = (lock, count - 1)
