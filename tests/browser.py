"""Headless Debian Chromium driven by Playwright; never a downloaded browser."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from PIL import Image, ImageStat
from playwright.sync_api import Browser, CDPSession, Page, Playwright, sync_playwright

from tests.services import LivePortal, require_binary

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    """The session's one Playwright: its sync API cannot be started twice in one process."""
    require_binary(CHROMIUM, "apt-get install chromium")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    launched = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
    yield launched
    launched.close()


def log_in(page: Page, portal: LivePortal, username: str) -> None:
    page.goto(f"{portal.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", portal.passwords[username])
    page.click("button[type=submit]")
    page.wait_for_url(f"{portal.url}/portal/")


def save_screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def image_shown(page: Page) -> bool:
    canvases = page.locator("canvas.cornerstone-canvas")
    if canvases.count() == 0:
        return False
    picture = Image.open(io.BytesIO(canvases.first.screenshot())).convert("L")
    stats = ImageStat.Stat(picture)
    bright = sum(picture.histogram()[40:]) / (picture.width * picture.height)
    return stats.stddev[0] > 20 and bright > 0.05


def wait_for_image(page: Page, timeout: float = 90) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if image_shown(page):
            return time.monotonic() - started
        page.wait_for_timeout(500)
    raise AssertionError("no image pixels in the viewport")


@dataclass
class NetworkLog:
    """Bytes on the wire per URL, from the DevTools protocol (encodedDataLength)."""

    urls: dict[str, str] = field(default_factory=dict)
    bytes_by_url: dict[str, int] = field(default_factory=dict)
    headers_by_url: dict[str, dict[str, str]] = field(default_factory=dict)

    def attach(self, cdp: CDPSession) -> None:
        cdp.send("Network.enable")
        cdp.on("Network.responseReceived", self.on_response)
        cdp.on("Network.loadingFinished", self.on_finished)

    def on_response(self, event: dict[str, Any]) -> None:
        url = event["response"]["url"]
        self.urls[event["requestId"]] = url
        self.headers_by_url[url] = {k.lower(): v for k, v in event["response"]["headers"].items()}

    def on_finished(self, event: dict[str, Any]) -> None:
        url = self.urls.get(event["requestId"])
        if url is not None:
            self.bytes_by_url[url] = self.bytes_by_url.get(url, 0) + int(event["encodedDataLength"])

    def reset(self) -> None:
        self.urls.clear()
        self.bytes_by_url.clear()

    def viewer_files(self) -> dict[str, int]:
        """The viewer's own files: everything fetched over HTTP outside /pacs (no data: URLs)."""
        return {
            url: size
            for url, size in self.bytes_by_url.items()
            if urlparse(url).scheme in ("http", "https") and not urlparse(url).path.startswith("/pacs/")
        }

    def viewer_bytes(self) -> int:
        return sum(self.viewer_files().values())

    def pacs_urls(self) -> list[str]:
        return [url for url in self.headers_by_url if urlparse(url).path.startswith("/pacs/")]
