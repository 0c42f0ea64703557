"""A slow-client attack and a watch on /healthz while it lasts (tests and `make bench`)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import requests


@dataclass
class HalfSentRequests:
    """`count` connections that each send half a request and then a byte a second.
    A connection the server ends (nginx's client_header_timeout answers 408 and
    closes) is opened again at once, so `count` stay held for as long as this runs."""

    port: int
    count: int
    stop: threading.Event = field(default_factory=threading.Event)
    reopened: int = 0

    def open(self) -> socket.socket:
        held = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        held.sendall(b"GET /portal/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        return held

    def ended_by_server(self, held: socket.socket) -> bool:
        try:
            held.recv(4096, socket.MSG_DONTWAIT)  # an answer (408) or the end: either way, over
        except BlockingIOError:
            return False
        except OSError:
            pass
        return True

    def keep_held(self, sockets: list[socket.socket]) -> None:
        for index, held in enumerate(sockets):
            if self.ended_by_server(held):
                held.close()
                sockets[index] = self.open()
                self.reopened += 1
            else:
                held.sendall(b"a")  # the header line grows by a byte: still half-sent

    def run(self) -> None:
        sockets = [self.open() for _ in range(self.count)]
        self.ready.set()
        while not self.stop.wait(1):
            self.keep_held(sockets)
        for held in sockets:
            held.close()

    def __enter__(self) -> HalfSentRequests:
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError(f"could not open {self.count} connections to port {self.port}")
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(15)


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
