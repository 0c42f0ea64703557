"""Group commit: the rows a worker's threads write at the same moment, in one statement.

Every first read of a study writes its audit row before it is served, each in its
own transaction. On PostgreSQL that commit was a fifth of a first read's cost at 8
connections (docs/performance.md, "Cold study reads"). Here a thread that finds
no write under way writes its own row at once, as before; threads arriving while
one is under way queue, and when it ends the first of them writes all of them in
one INSERT, one commit. Nobody waits on a timer: a lone read costs what it did.

Each row is still written before its caller returns, and a caller whose row could
not be written gets the error: the read is refused, as before. When a statement
fails, its rows are written again one by one, so that one row's trouble (or a
deadlock between workers) costs no other caller its read; a row counts as written
only once a write says so, so a writer stopped half-way leaves its callers refused.
What it costs: a write that waits (a lock, SQLite's busy timeout) keeps the rows
queued behind it waiting too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Row = TypeVar("Row")


class NotWritten(RuntimeError):
    """The row's writer stopped before it was written (an exception that is not an Exception)."""


@dataclass(eq=False)
class _Waiting(Generic[Row]):
    row: Row
    woken: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    # Not written until a write says so: a writer that stops half-way leaves its callers refused.
    written: bool = False
    error: Exception | None = None


class GroupCommit(Generic[Row]):
    """Rows written together by whichever caller's turn it is (one worker process)."""

    def __init__(self, write_all: Callable[[Sequence[Row]], None], write_one: Callable[[Row], None]) -> None:
        self.write_all, self.write_one = write_all, write_one
        self.lock = threading.Lock()
        self.queued: list[_Waiting[Row]] = []
        self.writing = False

    def write(self, row: Row) -> None:
        """Return once `row` is written; raise what writing it raised."""
        waiting = _Waiting(row)
        with self.lock:
            self.queued.append(waiting)
            if not self.writing:
                self.writing = waiting.leads = True
        if not waiting.leads:
            waiting.woken.wait()
        if waiting.leads:  # first, or handed the turn by the caller before
            self.write_queued()
        if not waiting.written:
            raise waiting.error or NotWritten("the audit row's writer stopped before writing it")

    def write_queued(self) -> None:
        with self.lock:
            batch, self.queued = self.queued, []
        try:
            self.write_batch(batch)
        finally:
            with self.lock:
                if self.queued:
                    self.queued[0].leads = True
                    self.queued[0].woken.set()
                else:
                    self.writing = False
            for waiting in batch:
                waiting.leads = False
                waiting.woken.set()

    def write_batch(self, batch: list[_Waiting[Row]]) -> None:
        try:
            self.write_all([waiting.row for waiting in batch])
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
                return
        else:
            for waiting in batch:
                waiting.written = True
            return
        for waiting in batch:
            try:
                self.write_one(waiting.row)
            except Exception as error:
                waiting.error = error
            else:
                waiting.written = True
