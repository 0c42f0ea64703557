"""Work a burst of requests would otherwise all do at once: done once per key.

Here, at the bottom of the apps, because both the Orthanc lookups and accounts'
Basic password check use it (apps never import the project package).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from typing import TypeVar

Answer = TypeVar("Answer")


class OneAnswer:
    """Per key, one thread does the work; the threads that ask while it does take its
    outcome, answer or exception, instead of each doing it again. The work must end
    by itself (every request to Orthanc has its timeout): waiters wait for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[Hashable, Future[object]] = {}

    def get(self, key: Hashable, work: Callable[[], Answer]) -> Answer:
        with self.lock:
            pending = self.pending.get(key)
            leading = pending is None
            if pending is None:
                pending = self.pending[key] = Future()
        if not leading:
            # The leader's work for this same key: an Answer, which the shared dict cannot say.
            return pending.result()  # type: ignore[return-value]
        try:
            answer = work()
        except BaseException as error:
            pending.set_exception(error)
            raise
        else:
            pending.set_result(answer)
            return answer
        finally:
            with self.lock:
                del self.pending[key]


class OneAtATime:
    """Per key, one thread at a time: each still does the work itself, after the one
    before it, and can find that one's result first (a password the hasher has just
    checked and the worker remembers). For work each request must do on its own when
    it fails, as django-axes counts every failed login.

    Not reentrant: a thread taking a second turn on a key it holds waits out
    `wait_seconds`. A thread never waits longer than that: then it goes ahead.
    """

    def __init__(self, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        self.lock = threading.Lock()
        # key -> its lock, and how many threads hold or wait for it
        self.turns: dict[Hashable, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def turn(self, key: Hashable) -> Iterator[None]:
        with self.lock:
            lock, count = self.turns.get(key, (threading.Lock(), 0))
            self.turns[key] = (lock, count + 1)
        acquired = False
        try:
            acquired = lock.acquire(timeout=self.wait_seconds)
            yield
        finally:
            if acquired:
                lock.release()
            with self.lock:
                _, count = self.turns[key]
                if count == 1:
                    del self.turns[key]
                else:
                    self.turns[key] = (lock, count - 1)
