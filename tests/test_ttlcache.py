"""The one process-wide cache: entries expire, the least recently used go first, clear() empties."""

from __future__ import annotations

import threading

import pytest

from core import ttlcache
from core.ttlcache import TTLCache


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(ttlcache.time, "monotonic", lambda: now[0])
    return now


def test_it_serves_an_entry_until_its_deadline_and_never_after(clock: list[float]) -> None:
    cache: TTLCache[str] = TTLCache(10, 5)
    cache.set("a", "alice")
    clock[0] += 4.9
    assert cache.get("a") == "alice"
    clock[0] += 0.1
    assert cache.get("a") is None
    assert len(cache) == 0


def test_it_gives_one_entry_a_life_of_its_own(clock: list[float]) -> None:
    cache: TTLCache[str] = TTLCache(10, 5)
    cache.set("short", "s", 1)
    cache.set("long", "l", 60)
    clock[0] += 30
    assert (cache.get("short"), cache.get("long")) == (None, "l")


def test_it_reads_a_setting_when_an_entry_is_set(clock: list[float]) -> None:
    seconds = [5.0]
    cache: TTLCache[str] = TTLCache(10, lambda: seconds[0])
    seconds[0] = 1.0
    cache.set("a", "alice")
    clock[0] += 2
    assert cache.get("a") is None


def test_it_drops_the_least_recently_used_entry_when_full(clock: list[float]) -> None:
    cache: TTLCache[int] = TTLCache(2, 60)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1  # now b is the least recently used
    cache.set("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2


def test_it_forgets_one_entry_or_all(clock: list[float]) -> None:
    cache: TTLCache[int] = TTLCache(10, 60)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.pop("a")
    cache.pop("missing")
    assert (cache.get("a"), cache.get("b")) == (None, 2)
    cache.clear()
    assert cache.get("b") is None and len(cache) == 0


def test_it_stays_within_its_bound_under_threads() -> None:
    cache: TTLCache[int] = TTLCache(100, 60)

    def work(offset: int) -> None:
        for number in range(2_000):
            cache.set((offset, number), number)
            cache.get((offset, number // 2))

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 100
