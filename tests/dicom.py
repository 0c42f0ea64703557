"""Small DICOM helpers for the tests: unique instances and STOW bodies."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from orthanc import demo


def unique_ct_instance(
    study_uid: str | None = None, label: str = "test", patient_id: str | None = None
) -> tuple[bytes, str, str]:
    """One small CT instance (from pydicom's CT_small) with fresh UIDs: (bytes, study UID, SOP UID).

    A new Patient ID each time unless given: pass the same one for instances of one study.
    """
    ds = pydicom.dcmread(demo.sample_paths()[0])
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = patient_id or f"TEST-{label}-{secrets.token_hex(4)}"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), ds.StudyInstanceUID, ds.SOPInstanceUID


def stow_body(instances: Iterable[bytes]) -> tuple[bytes, str]:
    boundary = secrets.token_hex(12)
    parts = []
    for data in instances:
        parts.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def write_large_stow_body(path: Path, megabytes: int) -> tuple[str, str, str]:
    """A STOW body of about `megabytes` MB of 512x512 CT slices in one new series, written to disk.

    Returns (content type, study UID, series UID).
    """
    boundary = secrets.token_hex(12)
    template = pydicom.dcmread(io.BytesIO(next(demo.synthetic_ct(1))))
    study_uid, series_uid = generate_uid(), generate_uid()
    template.StudyInstanceUID, template.SeriesInstanceUID = study_uid, series_uid
    template.PatientID = f"LARGE-{secrets.token_hex(4)}"
    # Not the demo's name or description: tests count "Demo*" patients and click
    # the demo CT by its description in study lists.
    template.PatientName = "Large^Upload"
    template.StudyDescription = "Large upload (test)"
    slices = megabytes * 2  # each slice is 512 KB of pixels
    with path.open("wb") as stream:
        for index in range(slices):
            template.SOPInstanceUID = generate_uid()
            template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
            template.InstanceNumber = index + 1
            buffer = io.BytesIO()
            template.save_as(buffer, enforce_file_format=True)
            stream.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            stream.write(buffer.getvalue())
            stream.write(b"\r\n")
        stream.write(f"--{boundary}--\r\n".encode())
    return f'multipart/related; type="application/dicom"; boundary={boundary}', study_uid, series_uid
