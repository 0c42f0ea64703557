from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import urllib3
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from orthanc import client, demo

BATCH_BYTES = 16 * 1024 * 1024


class Command(BaseCommand):
    help = (
        "Load the demo studies into Orthanc through DICOMweb STOW-RS: a synthetic CT series "
        "and a few real files shipped with pydicom. Does nothing if the demo CT is already there."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--slices",
            type=int,
            default=settings.DEMO_CT_SLICES,
            help="slices of the synthetic CT (default: DEMO_CT_SLICES, 300)",
        )
        parser.add_argument("--force", action="store_true", help="store the demo studies even if present")

    def handle(self, *args: Any, slices: int, force: bool, **options: Any) -> None:
        if slices < 1:
            raise CommandError("--slices must be at least 1")
        try:
            if not force and self.demo_is_loaded():
                self.stdout.write("Demo studies already in Orthanc; nothing to load.")
                return
            stored = self.store(self.instances(slices), total=slices + len(demo.SAMPLE_FILES))
        except (urllib3.exceptions.HTTPError, client.OrthancError) as error:
            raise CommandError(f"cannot reach Orthanc at its configured URL: {error}") from None
        self.stdout.write(f"Loaded {stored} demo instances (CT study {demo.DEMO_CT_STUDY_UID}).")

    def demo_is_loaded(self) -> bool:
        found = client.json_request("GET", f"/dicom-web/studies?StudyInstanceUID={demo.DEMO_CT_STUDY_UID}")
        return bool(found)

    def instances(self, slices: int) -> Iterator[bytes]:
        for path in demo.sample_paths():
            yield path.read_bytes()
        yield from demo.synthetic_ct(slices)

    def store(self, instances: Iterator[bytes], total: int) -> int:
        batch: list[bytes] = []
        stored = 0
        for data in instances:
            batch.append(data)
            if sum(map(len, batch)) >= BATCH_BYTES:
                stored += self.store_batch(batch, stored, total)
                batch = []
        if batch:
            stored += self.store_batch(batch, stored, total)
        if self.stdout.isatty():
            self.stdout.write("")
        return stored

    def store_batch(self, batch: list[bytes], done: int, total: int) -> int:
        result = client.stow(batch)
        failed = result.get("00081198", {}).get("Value", [])
        if failed:
            raise CommandError(f"Orthanc refused {len(failed)} demo instance(s)")
        done += len(batch)
        end = "\r" if self.stdout.isatty() else "\n"
        self.stdout.write(f"stored {done}/{total} instances", ending=end)
        self.stdout.flush()
        return len(batch)
