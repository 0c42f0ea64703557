"""OHIF loading the demo CT in headless Chromium, through the portal and through the recipe.

The portal door is the bench's audited portal behind its nginx, the browser
logged in with a session as a clinician is; the recipe door is the bench's
plain nginx (`Recipe`), serving the same OHIF build with the same data source
(the portal's own app-config, less the portal's additions) and proxying /pacs
to the same Orthanc. Each round is a fresh browser context with the HTTP
cache off and service workers blocked, so every round fetches everything;
one visit through each door before the rounds is not counted.
How a visit is timed is in tests/viewer_load.py. A last round loads the viewer
through the portal while 64 connections hold half-sent requests, /healthz asked
every 0.2 s meanwhile (acceptance 3 of the nginx issue).
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from bench.bench import Bench, Door
    from bench.report import Result

NAME = "OHIF viewer load"
SLOW_CLIENTS = "OHIF under slow clients"
ATTACK_SECONDS = 30.0


def write_recipe_config(bench: Bench) -> None:
    """The recipe door's app-config.js: the portal's own, less what only the portal has."""
    text = bench.session.get(f"{bench.portal.url}/app-config.js", timeout=30).text
    prefix = "window.config = "
    config = json.loads(text[len(prefix) : text.index(";\n\n")])
    config.pop("pacsportal")
    config["name"] = "recipe"
    (bench.recipe.work / "app-config.js").write_text(f"window.config = {json.dumps(config, indent=2)};\n")


def visit(browser: Browser, bench: Bench, door: Door, pixel_bytes: int) -> Result:
    from tests.viewer_load import load_once

    # QIDO's count of the series' instances: every one of them must arrive.
    return load_once(browser, door.host, door.portal, len(bench.frames), pixel_bytes, door.name)


def measure(bench: Bench) -> None:
    """The portal and the recipe taking turns, `--repeats` rounds; medians and ratios.
    Then one visit through the portal under the slow-client attack."""
    if bench.args.only and bench.args.only not in NAME and bench.args.only not in SLOW_CLIENTS:
        return
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, FLAGS
    from tests.viewer_load import frame_pixel_bytes

    by_name = {door.name: door for door in bench.doors()}
    auth = (bench.orthanc.user, bench.orthanc.password)
    pixel_bytes = frame_pixel_bytes(bench.orthanc.url, auth, bench.frames[0].rsplit("/frames/", 1)[0])
    write_recipe_config(bench)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*FLAGS, "--disable-quic"], headless=True
        )
        try:
            # Uncounted: a fresh browser's first visit takes longer than its later ones,
            # mostly in the browser (docs/performance-history.md, "OHIF: one uncounted
            # visit through each door").
            if not bench.args.only or bench.args.only in NAME:
                for door in (by_name["portal"], by_name["recipe"]):
                    visit(browser, bench, door, pixel_bytes)
            bench.measure(
                NAME,
                [by_name["portal"], by_name["recipe"]],
                lambda door: visit(browser, bench, door, pixel_bytes),
            )
            report_against_recipe(bench)
            if not bench.args.only or bench.args.only in SLOW_CLIENTS:
                under_attack(browser, bench, by_name["portal"], pixel_bytes)
        finally:
            browser.close()


def report_against_recipe(bench: Bench) -> None:
    figures = bench.results.get(NAME, {})
    if "portal" in figures and "recipe" in figures:
        for key in ("first_image_s", "all_frames_s"):
            figures["portal"][f"{key}_vs_recipe"] = round(figures["portal"][key] / figures["recipe"][key], 2)
        print(
            f"  {NAME}: portal/recipe first image {figures['portal']['first_image_s_vs_recipe']},"
            f" all frames {figures['portal']['all_frames_s_vs_recipe']} (at most 1.0: portal no slower)",
            file=sys.stderr,
            flush=True,
        )


def under_attack(browser: Browser, bench: Bench, portal: Door, pixel_bytes: int) -> None:
    """64 half-sent requests held for 30 s; the viewer loads the demo CT meanwhile."""
    from tests.slowclients import HalfSentRequests, HealthWatch

    assert portal.portal is not None
    with HalfSentRequests(portal.portal.port, 64) as attack, HealthWatch(portal.host) as health:
        started = time.monotonic()
        result = visit(browser, bench, portal, pixel_bytes)
        time.sleep(max(0.0, ATTACK_SECONDS - (time.monotonic() - started)))
    result = {key: round(value, 2) if isinstance(value, float) else value for key, value in result.items()}
    result.update(
        {
            "attack_s": round(time.monotonic() - started, 1),
            "healthz_slowest_ms": round(health.slowest * 1000, 1),
            "healthz_answers": health.answers,
            "healthz_failures": len(health.failures),
            "connections_ended_by_server": attack.ended_by_server,
        }
    )
    bench.results[SLOW_CLIENTS] = {"portal": result}
    print(
        f"  {SLOW_CLIENTS}: {result} (goal: healthz under 1000 ms, no failure)", file=sys.stderr, flush=True
    )
