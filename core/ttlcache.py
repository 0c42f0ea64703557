"""The one kind of process-wide cache: a bounded map whose entries expire.

Every cache a worker keeps across requests is one of these, so they all follow
one rulebook (core/revocation_table.py says which change clears which, and how
long old access can last): an entry is served until its deadline and never
after; at most `size` entries are kept, the least recently used going first;
`clear()` empties it. One lock per cache: gunicorn's gthread workers run
requests on several threads, and each operation is a few dictionary steps.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class TTLCache(Generic[Value]):
    """`ttl` is seconds, or a function returning them (a setting, read at each `set`);
    `set` may give one entry a shorter or longer life of its own."""

    def __init__(self, size: int, ttl: float | Callable[[], float]) -> None:
        self.size = size
        self.ttl = ttl
        self.entries: OrderedDict[Hashable, tuple[float, Value]] = OrderedDict()
        self.lock = threading.Lock()

    def seconds(self) -> float:
        """How long an entry set now lives, unless `set` says otherwise."""
        return float(self.ttl() if callable(self.ttl) else self.ttl)

    def get(self, key: Hashable) -> Value | None:
        with self.lock:
            found = self.entries.get(key)
            if found is None:
                return None
            if found[0] <= time.monotonic():
                del self.entries[key]
                return None
            self.entries.move_to_end(key)
            return found[1]

    def set(self, key: Hashable, value: Value, seconds: float | None = None) -> None:
        life = self.seconds() if seconds is None else seconds
        with self.lock:
            self.entries[key] = (time.monotonic() + life, value)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def pop(self, key: Hashable) -> None:
        with self.lock:
            self.entries.pop(key, None)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)
