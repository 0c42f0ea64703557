"""What `make bench` prints and writes: its table, and today's figures in docs/performance.md.

Pure functions of the results (`{measure: {door: {figure: value}}}`), so that
tests drive them on a sample run without measuring anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

Result = dict[str, float]

RATIO_KEYS = {"requests_per_s": "higher", "mb_per_s": "higher", "p99_ms": "lower"}
COUNTS = {"requests", "megabytes", "retrieves"}
# Measures run with auditing on and off (bench.bench and bench.cold_reads): what audit rows cost.
AUDIT_COST_MEASURES = {
    "frames, 8 conn": "frames at 8 connections",
    "cold studies, 8 conn": "first reads of studies at 8 connections",
}


def report(results: dict[str, dict[str, Result]]) -> str:
    lines = [f"{'measure':<22} {'door':<18} {'figures':<100} {'portal/direct'}"]
    for name, doors in results.items():
        direct = doors.get("direct")
        for door, figures in doors.items():
            shown = ", ".join(
                f"{key}={value}"
                for key, value in figures.items()
                if key not in COUNTS and not key.startswith("paired_")
            )
            ratio = ""
            if direct and door != "direct":
                ratio = ", ".join(
                    f"{key} {figures[key] / direct[key]:.2f}" + paired_shown(figures, key, "direct")
                    for key in RATIO_KEYS
                    if key in figures and direct[key]
                )
            lines.append(f"{name:<22} {door:<18} {shown:<100} {ratio}")
    return "\n".join(lines + summary(results))


def summary(results: dict[str, dict[str, Result]]) -> list[str]:
    """The lines under the table: the audit's cost, the portal against the recipe, the gauges."""
    lines = []
    for name, label in AUDIT_COST_MEASURES.items():
        lines.extend(audit_cost(label, results.get(name, {})))
    for name, doors in results.items():
        if "recipe" in doors and "portal" in doors and doors["recipe"].get("requests_per_s"):
            share = doors["portal"]["requests_per_s"] / doors["recipe"]["requests_per_s"]
            shown = paired_shown(doors["portal"], "requests_per_s", "recipe")
            lines.append(f"{name}: portal/recipe {share:.2f} of requests/s{shown}")
    lines.extend(gauges(results))
    return lines


def audit_cost(label: str, doors: dict[str, Result]) -> list[str]:
    """What the portal's audit rows cost in a measure run with auditing on and off."""
    if "portal" not in doors or "portal, audit off" not in doors:
        return []
    on, off = doors["portal"], doors["portal, audit off"]
    cost = 1 - on["requests_per_s"] / off["requests_per_s"]
    lines = [f"audit cost, {label}: {100 * cost:.1f}% of requests/s"]
    if "paired_requests_per_s_vs_audit_off" in on:
        paired = 1 - on["paired_requests_per_s_vs_audit_off"]
        lines.append(f"audit cost, {label}, paired by repeat: {100 * paired:.1f}% of requests/s")
    # Less noisy than two throughputs: on a machine the load keeps busy, requests/s
    # goes as 1 / CPU per request. wrk's own CPU is left out of the whole, so
    # this overstates the cost.
    if "portal_cpu_ms_per_request" in on and "portal_cpu_ms_per_request" in off:
        extra = on["portal_cpu_ms_per_request"] - off["portal_cpu_ms_per_request"]
        whole = on["portal_cpu_ms_per_request"] + on["orthanc_cpu_ms_per_request"]
        lines.append(
            f"audit cost, {label}, by CPU: {extra:+.3f} ms per request,"
            f" {100 * extra / whole:+.1f}% of the portal's and Orthanc's CPU per request"
            " (+-0.002 ms: a clock tick per run)"
        )
    return lines


def gauges(results: dict[str, dict[str, Result]]) -> list[str]:
    """What the run's ratios can be read to: its own noise, and what any nginx hop costs."""
    lines = []
    for name, doors in results.items():
        direct = doors.get("direct", {})
        rate = direct.get("requests_per_s")
        if "direct, again" in doors and rate:
            again = doors["direct, again"]
            lines.append(
                f"{name}: noise, direct measured twice: {again['requests_per_s'] / rate:.2f}"
                f" of requests/s{paired_shown(again, 'requests_per_s', 'direct')}"
            )
        if "nginx, no decision" in doors and "portal" in doors and rate:
            hop, portal = doors["nginx, no decision"], doors["portal"]
            lines.append(
                f"{name}: nginx with no decision/direct {hop['requests_per_s'] / rate:.2f}"
                f"{paired_shown(hop, 'requests_per_s', 'direct')}; portal/nginx with no decision"
                f" {portal['requests_per_s'] / hop['requests_per_s']:.2f}"
                f"{paired_shown(portal, 'requests_per_s', 'no_decision')} of requests/s"
            )
    return lines


def paired_shown(figures: Result, key: str, label: str) -> str:
    paired = figures.get(f"paired_{key}_vs_{label}")
    return "" if paired is None else f" (paired {paired:.2f})"


# --- Today's figures: the block of docs/performance.md that each whole run rewrites ---

PAGE = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
BEGIN = "<!-- make bench writes from here: bench/report.py -->"
END = "<!-- make bench writes to here -->"
# The figures a row shows, in this order; the other figures stay in results.json.
SHOWN = (
    ("requests_per_s", "{:.0f} req/s"),
    ("p99_ms", "p99 {:.1f} ms"),
    ("mb_per_s", "{:.1f} MB/s"),
    ("first_image_s", "first image {:.2f} s"),
    ("all_frames_s", "all frames {:.2f} s"),
    ("healthz_slowest_ms", "slowest `/healthz` {:.0f} ms"),
    ("first_visit_mb", "first visit {:.2f} MB"),
    ("repeat_visit_kb", "a repeat {:.1f} KB"),
    ("cpu_ms_per_request_after_first", "CPU {:.1f} ms per request after the first"),
    ("portal_cpu_ms_per_request", "portal CPU {:.3f} ms per request"),
    ("portal_cpu_ms_per_mb", "portal CPU {:.3f} ms per MB"),
    ("orthanc_cpu_ms_per_request", "Orthanc CPU {:.3f} ms per request"),
    ("orthanc_cpu_ms_per_mb", "Orthanc CPU {:.3f} ms per MB"),
    ("median_ms", "median {:.1f} ms"),
    ("p90_ms", "p90 {:.1f} ms"),
    ("added_median_ms", "{:+.2f} ms on direct's median"),
    ("first_read_median_ms", "first reads: median {:.0f} ms"),
    ("first_read_slowest_ms", "slowest {:.0f} ms"),
    ("first_reads_2s_or_more", "{:.0f} waited 2 s or more"),
    ("first_reads_refused", "{:.0f} refused"),
    ("frames_per_s", "frames beside them {:.0f}/s"),
    ("frame_timeouts", "{:.0f} frames timed out"),
    ("first_byte_ms", "first row {:.0f} ms"),
    ("slowest_ms", "slowest {:.0f} ms"),
)
NAMES = {
    "requests_per_s": "req/s",
    "mb_per_s": "MB/s",
    "first_image_s": "first image",
    "all_frames_s": "all frames",
}


def figures_cell(figures: Result) -> str:
    return ", ".join(shown.format(figures[key]) for key, shown in SHOWN if key in figures)


def ratios_cell(figures: Result, direct: Result | None) -> str:
    """Each ratio the run has for a door: of direct Orthanc, paired in brackets, then any other."""
    parts = []
    for key in RATIO_KEYS:
        if direct and figures is not direct and key in figures and direct.get(key):
            paired = figures.get(f"paired_{key}_vs_direct")
            inside = "" if paired is None else f" ({'x' if key == 'p99_ms' else ''}{paired:.2f})"
            ratio = figures[key] / direct[key]
            parts.append(f"p99 x{ratio:.2f}{inside}" if key == "p99_ms" else f"{ratio:.2f}{inside}")
    for key, value in figures.items():
        what, _, reference = key.partition("_vs_")
        if reference and not key.startswith("paired_"):
            parts.append(f"{NAMES.get(what, what)} {value:.2f} of the {reference}'s")
    return ", ".join(parts)


def page_block(run: dict[str, Any]) -> str:
    """Today's figures, as markdown: the run, a row per measure and door, then the summary."""
    args = run["args"]
    database = "PostgreSQL (fsync on)" if args["postgres"] == "True" else "SQLite"
    lines = [
        f"Run of {run['finished']} at commit {run['commit']}: {run['orthanc']}"
        f" (`--orthanc {args['orthanc']}`), the portal's database on {database};"
        f" {args['repeats']} repeats of {args['seconds']} s; {run['cores']} cores.",
        "",
        "| measure | door | figures | of direct (paired), or of the door named |",
        "|---|---|---|---|",
    ]
    for name, doors in run["results"].items():
        direct = doors.get("direct")
        for number, (door, figures) in enumerate(doors.items()):
            measure = name if number == 0 else ""
            lines.append(f"| {measure} | {door} | {figures_cell(figures)} | {ratios_cell(figures, direct)} |")
    lines += ["", *(f"- {line}" for line in summary(run["results"]))]
    return "\n".join(lines)


def write_page(path: Path, block: str) -> None:
    """Replace what lies between the page's two markers with `block`; the rest is prose."""
    text = path.read_text()
    pattern = re.compile(f"{re.escape(BEGIN)}\n.*?{re.escape(END)}", re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"{path} must hold the markers {BEGIN!r} and {END!r} once, in this order")
    path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{block}\n{END}", text))
