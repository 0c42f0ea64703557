"""`make bench` rewrites today's figures in docs/performance.md from its results, and nothing else there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.report import BEGIN, END, PAGE, page_block, write_page

SAMPLE: dict[str, Any] = {
    "machine": "vm",
    "cores": 2,
    "finished": "2026-12-07 15:50 UTC",
    "commit": "d126d9f",
    "orthanc": "Orthanc 1.12.7 (REST API 27), DICOMweb 1.20",
    "args": {"repeats": "3", "seconds": "8", "postgres": "False", "orthanc": "other", "only": ""},
    "results": {
        "frames, 8 conn": {
            "direct": {
                "requests": 7312,
                "requests_per_s": 914.0,
                "p99_ms": 21.0,
                "orthanc_cpu_ms_per_request": 1.846,
            },
            "portal": {
                "requests": 6400,
                "requests_per_s": 800.0,
                "p99_ms": 27.3,
                "portal_cpu_ms_per_request": 0.345,
                "orthanc_cpu_ms_per_request": 1.854,
                "paired_requests_per_s_vs_direct": 0.89,
                "paired_p99_ms_vs_direct": 1.19,
                "paired_requests_per_s_vs_audit_off": 0.99,
            },
            "portal, audit off": {
                "requests_per_s": 808.0,
                "p99_ms": 28.1,
                "portal_cpu_ms_per_request": 0.353,
                "orthanc_cpu_ms_per_request": 1.868,
            },
            "direct, again": {
                "requests_per_s": 996.3,
                "p99_ms": 19.0,
                "paired_requests_per_s_vs_direct": 1.07,
            },
        },
        "cold studies, 1 at a time": {
            "direct": {"median_ms": 2.76, "p90_ms": 3.54},
            "portal": {"median_ms": 5.3, "p90_ms": 6.58, "added_median_ms": 2.54},
        },
        "cold studies under load": {
            "portal": {
                "first_read_median_ms": 140.8,
                "first_read_slowest_ms": 427.0,
                "first_reads_2s_or_more": 0,
                "first_reads_refused": 0,
                "frames_per_s": 378.56,
                "frame_timeouts": 0,
            },
        },
        "cold studies, 8 conn": {
            "direct": {"requests_per_s": 250.0},
            "portal": {"requests_per_s": 150.0, "paired_requests_per_s_vs_audit_off": 0.95},
            "portal, audit off": {"requests_per_s": 160.0},
        },
        "STOW-RS": {
            "direct": {"mb_per_s": 67.3, "megabytes": 158.0},
            "portal": {"mb_per_s": 60.9, "megabytes": 158.0, "paired_mb_per_s_vs_direct": 0.9},
        },
        "OHIF viewer load": {
            "portal": {"first_image_s": 3.15, "all_frames_s": 6.74, "first_image_s_vs_recipe": 0.95},
            "recipe": {"first_image_s": 3.3, "all_frames_s": 8.03},
        },
    },
}


def test_it_says_which_run_the_figures_are_from() -> None:
    first = page_block(SAMPLE).splitlines()[0]
    assert first == (
        "Run of 2026-12-07 15:50 UTC at commit d126d9f: Orthanc 1.12.7 (REST API 27), DICOMweb 1.20"
        " (`--orthanc other`), the portal's database on SQLite; 3 repeats of 8 s; 2 cores."
    )


def test_it_writes_a_row_per_measure_and_door_with_ratios_of_direct_and_paired_ones() -> None:
    rows = [line for line in page_block(SAMPLE).splitlines() if line.startswith("| ")]
    assert rows[1:4] == [
        "| frames, 8 conn | direct | 914 req/s, p99 21.0 ms, Orthanc CPU 1.846 ms per request |  |",
        "|  | portal | 800 req/s, p99 27.3 ms, portal CPU 0.345 ms per request,"
        " Orthanc CPU 1.854 ms per request | 0.88 (0.89), p99 x1.30 (x1.19) |",
        "|  | portal, audit off | 808 req/s, p99 28.1 ms, portal CPU 0.353 ms per request,"
        " Orthanc CPU 1.868 ms per request | 0.88, p99 x1.34 |",
    ]
    assert "|  | portal | median 5.3 ms, p90 6.6 ms, +2.54 ms on direct's median |  |" in rows
    assert (
        "| cold studies under load | portal | first reads: median 141 ms, slowest 427 ms,"
        " 0 waited 2 s or more, 0 refused, frames beside them 379/s, 0 frames timed out |  |"
    ) in rows
    assert "| STOW-RS | direct | 67.3 MB/s |  |" in rows
    assert "|  | portal | 60.9 MB/s | 0.90 (0.90) |" in rows
    viewer = "| OHIF viewer load | portal | first image 3.15 s, all frames 6.74 s |"
    assert f"{viewer} first image 0.95 of the recipe's |" in rows


def test_it_ends_with_the_audit_cost_and_the_noise_gauge() -> None:
    bullets = [line for line in page_block(SAMPLE).splitlines() if line.startswith("- ")]
    assert "- audit cost, frames at 8 connections: 1.0% of requests/s" in bullets
    assert "- audit cost, frames at 8 connections, paired by repeat: 1.0% of requests/s" in bullets
    assert "- audit cost, first reads of studies at 8 connections: 6.2% of requests/s" in bullets
    assert (
        "- audit cost, first reads of studies at 8 connections, paired by repeat: 5.0% of requests/s"
        in bullets
    )
    assert "- frames, 8 conn: noise, direct measured twice: 1.09 of requests/s (paired 1.07)" in bullets


def test_it_rewrites_only_the_marked_block(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text(f"# Today\n\nHow to read them.\n\n{BEGIN}\nyesterday's figures\n{END}\n\n## Running it\n")
    write_page(page, page_block(SAMPLE))
    text = page.read_text()
    assert text.startswith("# Today\n\nHow to read them.\n\n")
    assert text.endswith(f"{END}\n\n## Running it\n")
    assert "yesterday's figures" not in text and "| frames, 8 conn | direct |" in text
    write_page(page, page_block(SAMPLE))
    assert page.read_text() == text


def test_it_refuses_a_page_without_its_markers(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text("# Today\n\nNo markers.\n")
    with pytest.raises(ValueError, match="must hold the markers"):
        write_page(page, page_block(SAMPLE))
    assert page.read_text() == "# Today\n\nNo markers.\n"


def test_the_performance_page_holds_one_block_for_make_bench() -> None:
    text = PAGE.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.index(BEGIN) < text.index(END)
