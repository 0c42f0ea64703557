"""Headless Debian Chromium driven by Playwright; never a downloaded browser."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from playwright.sync_api import Browser, Page, sync_playwright

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
def browser() -> Iterator[Browser]:
    require_binary(CHROMIUM, "apt-get install chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
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
