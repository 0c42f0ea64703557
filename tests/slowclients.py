"""A slow-client attack and a watch on /healthz while it lasts (tests and `make bench`)."""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field

import requests


@dataclass
class HalfSentRequests:
    """`count` connections that each send half a request and then a byte a second.
    A connection the server ends (nginx's client_header_timeout closes it, without
    an answer) is opened again at once, so `count` stay held for as long as this runs."""

    port: int
    count: int
    stop: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)
    ended_by_server: int = 0
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def open(self) -> socket.socket:
        held = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        held.sendall(b"GET /portal/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        return held

    def keep_held(self, sockets: list[socket.socket]) -> None:
        # Readable means an answer or the end: either way the server is done with it.
        readable, _, _ = select.select(sockets, [], [], 0)
        for index, held in enumerate(sockets):
            if self.stop.is_set():
                return
            if held not in readable:
                try:
                    held.sendall(b"a")  # the header line grows by a byte: still half-sent
                    continue
                except OSError:
                    pass  # ended since the select
            held.close()
            self.ended_by_server += 1
            sockets[index] = self.open()

    def run(self) -> None:
        sockets: list[socket.socket] = []
        try:
            for _ in range(self.count):
                sockets.append(self.open())
            self.ready.set()
            while not self.stop.wait(1):
                self.keep_held(sockets)
        except BaseException as error:  # the test must not go on as if the attack held
            self.error = error
        finally:
            self.ready.set()
            for held in sockets:
                held.close()

    def __enter__(self) -> HalfSentRequests:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        self.ready.wait(30)
        self.check()
        return self

    def check(self) -> None:
        """Raise if the attack has stopped by itself."""
        if self.error is not None:
            raise RuntimeError(f"the slow-client attack on port {self.port} stopped") from self.error
        if self.thread is None or not self.thread.is_alive():
            raise RuntimeError(f"the slow-client attack on port {self.port} is not running")

    def __exit__(self, *_: object) -> None:
        assert self.thread is not None
        held_to_the_end = self.thread.is_alive()
        self.stop.set()
        self.thread.join(15)
        if self.error is not None or not held_to_the_end:
            raise RuntimeError(f"the slow-client attack on port {self.port} stopped early") from self.error


@dataclass
class HealthWatch:
    """GET /healthz every `interval` s from a thread: the slowest answer, and any that was not 200."""

    url: str
    interval: float = 0.2
    stop: threading.Event = field(default_factory=threading.Event)
    slowest: float = 0.0
    answers: int = 0
    failures: list[str] = field(default_factory=list)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            started = time.monotonic()
            try:
                status = requests.get(f"{self.url}/healthz", timeout=5).status_code
            except requests.RequestException as error:
                self.failures.append(repr(error))
                continue
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.answers += 1
            if status != 200:
                self.failures.append(f"HTTP {status}")

    def __enter__(self) -> HealthWatch:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)
