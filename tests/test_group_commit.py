"""Group commit (audit/groupcommit.py): rows written together by whichever thread's turn it
is, each written before its caller returns, none lost, none twice. First the turn-taking
alone, with writers that record what they were given; then the audit rows themselves,
from many threads at once, on SQLite here and on PostgreSQL in make test's PostgreSQL pass."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence

import pytest

from audit import models as audit_models
from audit.groupcommit import GroupCommit
from audit.models import Action, AuditEvent
from tests.test_audit_summary import grouped_rows, summary_lines


class Stopped(BaseException):
    """What a thread meets when it is stopped, not an error to handle."""


class Recorded:
    """A writer that keeps what it was given; the first batch waits until `hold` is set."""

    def __init__(self, fails: frozenset[int] = frozenset(), stops: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.singles: list[int] = []
        self.fails, self.stops = fails, stops
        self.hold = threading.Event()
        self.lock = threading.Lock()

    def write_all(self, rows: Sequence[int]) -> None:
        self.hold.wait(10)
        with self.lock:
            self.batches.append(list(rows))
        if self.stops and len(rows) > 1:
            raise Stopped
        if self.fails & set(rows):
            raise RuntimeError(f"refused {sorted(rows)}")

    def write_one(self, row: int) -> None:
        with self.lock:
            self.singles.append(row)
        if row in self.fails:
            raise RuntimeError(f"refused {row}")


def in_threads(write: Callable[[int], None], rows: Sequence[int], threads: int = 16) -> None:
    """`write` over `rows` from daemon threads: a caller the turn-taking forgets fails the test
    after 30 s instead of hanging it."""
    pending = list(rows)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not pending:
                    return
                row = pending.pop()
            write(row)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    assert not any(worker.is_alive() for worker in workers), "a writer never returned"


def queue_behind_a_slow_write(recorded: Recorded, rows: int) -> tuple[GroupCommit[int], list[object]]:
    """`rows` callers at once: the first one's write is held until all others have queued."""
    group: GroupCommit[int] = GroupCommit(recorded.write_all, recorded.write_one)
    outcomes: list[object] = [None] * rows

    def write(row: int) -> None:
        if row > 0:
            while not group.writing:  # row 0 first
                time.sleep(0.001)
        elif row == 0:
            threading.Timer(0, release_when_all_queued).start()
        try:
            group.write(row)
            outcomes[row] = "written"
        except RuntimeError as error:
            outcomes[row] = str(error)
        except Stopped:
            outcomes[row] = "stopped"

    def release_when_all_queued() -> None:
        deadline = time.monotonic() + 10
        while len(group.queued) < rows - 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        recorded.hold.set()

    in_threads(write, range(rows)[::-1], threads=rows)
    return group, outcomes


def test_a_lone_write_is_written_at_once_in_a_statement_of_its_own() -> None:
    recorded = Recorded()
    recorded.hold.set()
    group: GroupCommit[int] = GroupCommit(recorded.write_all, recorded.write_one)
    group.write(7)
    assert recorded.batches == [[7]]
    assert not group.writing and not group.queued


def test_rows_that_queue_behind_a_write_go_together_in_the_next() -> None:
    recorded = Recorded()
    group, outcomes = queue_behind_a_slow_write(recorded, 8)
    assert [sorted(batch) for batch in recorded.batches] == [[0], list(range(1, 8))]
    assert outcomes == ["written"] * 8
    assert not group.writing and not group.queued


def test_a_failed_statement_is_written_again_row_by_row_and_only_the_bad_row_fails() -> None:
    recorded = Recorded(fails=frozenset({5}))
    _, outcomes = queue_behind_a_slow_write(recorded, 8)
    assert [sorted(batch) for batch in recorded.batches] == [[0], list(range(1, 8))]
    assert sorted(recorded.singles) == list(range(1, 8))
    assert outcomes == ["written"] * 5 + ["refused 5"] + ["written"] * 2


def test_when_every_write_fails_every_caller_is_told() -> None:
    recorded = Recorded(fails=frozenset(range(6)))
    _, outcomes = queue_behind_a_slow_write(recorded, 6)
    assert outcomes == ["refused [0]"] + [f"refused {row}" for row in range(1, 6)]


def test_a_writer_stopped_half_way_leaves_its_callers_refused_not_served() -> None:
    """Whatever stops the writer (not an Exception: a thread stopped), its callers are told
    their rows are not written, and the next caller still gets a turn."""
    recorded = Recorded(stops=True)
    group, outcomes = queue_behind_a_slow_write(recorded, 6)
    assert outcomes[0] == "written"
    assert (
        sorted(map(str, outcomes[1:]))
        == ["stopped"] + ["the audit row's writer stopped before writing it"] * 4
    )
    assert not group.writing and not group.queued
    recorded.stops = False
    group.write(99)
    assert recorded.batches[-1] == [99]


def test_many_writers_each_row_written_once_and_the_turn_never_lost() -> None:
    recorded = Recorded()
    recorded.hold.set()
    group: GroupCommit[int] = GroupCommit(recorded.write_all, recorded.write_one)
    in_threads(group.write, range(2000))
    written = [row for batch in recorded.batches for row in batch]
    assert sorted(written) == list(range(2000))
    assert not group.writing and not group.queued


def read_event(username: str, patient: str, client: str = "10.0.0.1") -> AuditEvent:
    event = AuditEvent(
        action=Action.RETRIEVE,
        username=username,
        credential="session",
        client_ip=client,
        patient_id=patient,
        study_uid=f"1.2.{patient[1:]}",
        detail="granted; covers this bucket's reads",
        success=True,
        stored_uids=[],
    )
    event.bucket_key, _ = audit_models.bucket_key(event)
    return event


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_statement_writes_each_bucket_once_and_the_summary_counts_it(seed: int) -> None:
    """The statement a turn writes (shuffled rows, some for one bucket, some already
    written), on SQLite here and PostgreSQL in the PostgreSQL pass."""
    chosen = random.Random(seed)
    earlier = read_event("alice", "P0")
    AuditEvent.objects.insert(earlier, if_absent=True)
    events = [
        read_event(
            chosen.choice(["alice", "bob"]), f"P{chosen.randrange(6)}", chosen.choice(["10.0.0.1", "::1"])
        )
        for _ in range(40)
    ]
    audit_models._write_bucketed(events)
    keys = {str(event.bucket_key) for event in events}
    rows = AuditEvent.objects.exclude(bucket_key=None)
    assert sorted(str(key) for key in rows.values_list("bucket_key", flat=True)) == sorted(
        keys | {str(earlier.bucket_key)}
    )
    # Each row written names one caller, by its pk; a bucket already written names none.
    named = [event for event in events if event.pk is not None]
    assert sorted(str(event.bucket_key) for event in named) == sorted(keys - {str(earlier.bucket_key)})
    assert {row.pk: row.bucket_key for row in rows if row.pk != earlier.pk} == {
        event.pk: event.bucket_key for event in named
    }
    assert summary_lines() == grouped_rows()
    # In one order in every worker (no two statements lock the same lines in opposite
    # orders): the rows' ids follow their summary lines.
    in_order = [audit_models.summary_key(row) for row in rows.exclude(pk=earlier.pk).order_by("pk")]
    assert in_order == sorted(in_order)


@pytest.mark.django_db
def test_a_thread_inside_a_transaction_writes_its_row_alone() -> None:
    """Another caller's row must not join a transaction that may yet roll back."""
    seen: list[int] = []
    write_all = audit_models._bucketed_rows.write_all
    audit_models._bucketed_rows.write_all = lambda events: seen.append(len(events))
    try:
        AuditEvent.objects.record(
            Action.RETRIEVE, user=None, username="alice", patient_id="P1", bucketed=True
        )
    finally:
        audit_models._bucketed_rows.write_all = write_all
    assert seen == []
    assert AuditEvent.objects.filter(username="alice", patient_id="P1").count() == 1
