"""OHIF loading the demo CT in headless Chromium, timed from the page's own network:
`make bench` measures it through the portal and the recipe (bench/viewer_load.py),
the slow-client test checks it finishes under attack.

Times from the start of the viewer page's navigation, two of them the measure:
- first image: the first time the viewport's canvas holds an image (non-blank
  pixels, the same test as tests/browser.py's `image_shown`), checked in the
  page at each of cornerstone's CORNERSTONE_IMAGE_RENDERED events and every
  50 ms besides. The event alone is no signal: the viewport renders blank
  several times (0.4-0.6 s here) before the image is in it;
- all frames: the end of the last WADO-RS frame response of the demo CT
  series, once every instance of the series (counted by QIDO) has had one.
Beside them, to tell where a difference comes from: OHIF's first /pacs request
(its own files loaded and started), the first frame, and the first
CORNERSTONE_IMAGE_RENDERED event.
"""

from __future__ import annotations

import sys
import time
from typing import Any
from urllib.parse import urlparse

import requests
from playwright.sync_api import Browser, CDPSession, Page

from orthanc import demo
from tests.browser import log_in
from tests.services import LivePortal

VIEWER_PATH = f"/viewer?StudyInstanceUIDs={demo.DEMO_CT_STUDY_UID}"
TIMEOUT_S = 180.0

# Runs in every page before OHIF: notes, in the page's own clock (performance.now(),
# zero at the start of the navigation), when the viewport first shows an image.
FIRST_IMAGE_WATCH = """
(() => {
  const watch = { firstImage: null, firstRenderedEvent: null };
  // The viewport's own canvas: thumbnails are cornerstone canvases too (256 x 256).
  const VIEWPORT_CANVAS = '[data-viewport-uid] canvas.cornerstone-canvas';
  window.__viewerLoad = watch;
  const probe = document.createElement('canvas');
  probe.width = probe.height = 64;
  const shows_image = (canvas) => {
    if (!canvas.width || !canvas.height) return false;
    const context = probe.getContext('2d', { willReadFrequently: true });
    context.clearRect(0, 0, 64, 64);
    context.drawImage(canvas, 0, 0, 64, 64);
    const data = context.getImageData(0, 0, 64, 64).data;
    let sum = 0, squares = 0, bright = 0;
    for (let i = 0; i < data.length; i += 4) {
      const grey = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
      sum += grey; squares += grey * grey; if (grey >= 40) bright += 1;
    }
    const count = data.length / 4, mean = sum / count;
    return Math.sqrt(Math.max(squares / count - mean * mean, 0)) > 20 && bright / count > 0.05;
  };
  const check = () => {
    if (watch.firstImage !== null) return;
    const now = performance.now();
    for (const canvas of document.querySelectorAll(VIEWPORT_CANVAS)) {
      if (shows_image(canvas)) { watch.firstImage = now; clearInterval(timer); return; }
    }
  };
  const timer = setInterval(check, 50);
  // Cornerstone dispatches it on the viewport's element, without bubbling: caught on the way down.
  document.addEventListener('CORNERSTONE_IMAGE_RENDERED', () => {
    if (watch.firstRenderedEvent === null) watch.firstRenderedEvent = performance.now();
    check();
  }, true);
})();
"""


class FrameLog:
    """The page's network from the DevTools protocol: when the viewer's document was
    requested and when each frame of the series had arrived whole (protocol clock).

    A frame counts once its body has arrived: the response finished, or the page
    cancelled it after at least the frame's pixel bytes had been received. Chromium
    ends 10-25% of frame responses so, ERR_ABORTED after the whole body, when they
    carry `Cache-Control: no-store` (the portal's; the recipe's plain nginx shows
    the same once it sends it); none is asked for again, no connection is lost."""

    def __init__(self, series_uid: str, pixel_bytes: int) -> None:
        self.marker = f"/series/{series_uid}/instances/"
        self.pixel_bytes = pixel_bytes
        self.requests: dict[str, str] = {}
        self.received: dict[str, tuple[int, float]] = {}  # request -> decoded bytes, last arrival
        self.document_sent: float | None = None
        self.first_pacs_sent: float | None = None  # OHIF is up and asks for the study
        self.finished: dict[str, float] = {}  # instance UID -> when its frame had arrived
        self.pacs_requests = 0
        self.cancelled_whole = 0
        self.failed = 0

    def attach(self, cdp: CDPSession) -> None:
        cdp.on("Network.requestWillBeSent", self.on_request)
        cdp.on("Network.dataReceived", self.on_data)
        cdp.on("Network.loadingFinished", self.on_finished)
        cdp.on("Network.loadingFailed", self.on_failed)
        cdp.send("Network.enable")
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})

    def on_request(self, event: dict[str, Any]) -> None:
        url = event["request"]["url"]
        self.requests[event["requestId"]] = url
        path = urlparse(url).path
        if event.get("type") == "Document" and path == "/viewer":
            self.document_sent = event["timestamp"]
        elif path.startswith("/pacs/") and self.first_pacs_sent is None:
            self.first_pacs_sent = event["timestamp"]

    def instance(self, request_id: str) -> str | None:
        path = urlparse(self.requests.get(request_id, "")).path
        if self.marker in path and "/frames/" in path:
            return path.split(self.marker, 1)[1].split("/", 1)[0]
        return None

    def on_data(self, event: dict[str, Any]) -> None:
        if self.instance(event["requestId"]) is not None:
            size, _ = self.received.get(event["requestId"], (0, 0.0))
            self.received[event["requestId"]] = (size + int(event["dataLength"]), event["timestamp"])

    def on_finished(self, event: dict[str, Any]) -> None:
        if not urlparse(self.requests.get(event["requestId"], "")).path.startswith("/pacs/"):
            return
        self.pacs_requests += 1
        instance = self.instance(event["requestId"])
        if instance is not None:
            self.arrived(instance, event["timestamp"])

    def on_failed(self, event: dict[str, Any]) -> None:
        if not urlparse(self.requests.get(event["requestId"], "")).path.startswith("/pacs/"):
            return
        self.pacs_requests += 1
        instance = self.instance(event["requestId"])
        size, last = self.received.get(event["requestId"], (0, 0.0))
        if instance is not None and event.get("canceled") and size >= self.pixel_bytes:
            self.cancelled_whole += 1
            self.arrived(instance, last)
        else:
            self.failed += 1

    def arrived(self, instance: str, timestamp: float) -> None:
        self.finished[instance] = max(self.finished.get(instance, 0.0), timestamp)


def load_once(
    browser: Browser, host: str, portal: LivePortal | None, instances: int, pixel_bytes: int, label: str
) -> dict[str, Any]:
    """One viewer visit in a fresh context (logged in first when `portal` is given) until
    every one of `instances` frames has arrived and the viewport shows an image."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, service_workers="block")
    try:
        page = context.new_page()
        if portal is not None:
            log_in(page, portal, "alice")  # before the clock starts, as a user logs in once
        frames = FrameLog(demo.DEMO_CT_SERIES_UID, pixel_bytes)
        frames.attach(context.new_cdp_session(page))
        page.add_init_script(FIRST_IMAGE_WATCH)
        page.goto(host + VIEWER_PATH)
        deadline = time.monotonic() + TIMEOUT_S
        while len(frames.finished) < instances or first_image(page) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{label}: after {TIMEOUT_S:.0f} s, {len(frames.finished)} of {instances} frames"
                    f" and first image {first_image(page)}"
                )
            page.wait_for_timeout(200)
        watch = page.evaluate("window.__viewerLoad")
        start = frames.document_sent
        assert start is not None and frames.first_pacs_sent is not None, "no viewer document or /pacs request"
        result = {
            "first_image_s": watch["firstImage"] / 1000,
            "rendered_event_s": (watch["firstRenderedEvent"] or 0) / 1000,
            "first_pacs_request_s": frames.first_pacs_sent - start,
            "first_frame_s": min(frames.finished.values()) - start,
            "all_frames_s": max(frames.finished.values()) - start,
            "frames": len(frames.finished),
            "requests": frames.pacs_requests,
            "frames_cancelled_whole": frames.cancelled_whole,
            "failed_requests": frames.failed,
        }
        shown = ", ".join(f"{key} {value:.2f}" for key, value in result.items() if key.endswith("_s"))
        print(f"    {label}: {shown}", file=sys.stderr, flush=True)
        return result
    finally:
        context.close()


def first_image(page: Page) -> float | None:
    return page.evaluate("window.__viewerLoad && window.__viewerLoad.firstImage")


def frame_pixel_bytes(orthanc_url: str, auth: tuple[str, str], instance: str) -> int:
    """Rows x Columns x bytes per sample x samples per pixel, from an instance's metadata."""
    tags = requests.get(f"{orthanc_url}{instance}/metadata", auth=auth, timeout=60).json()[0]
    rows, columns, bits, samples = (
        int(tags[tag]["Value"][0]) for tag in ("00280010", "00280011", "00280100", "00280002")
    )
    return rows * columns * bits // 8 * samples
