"""Demo studies: a synthetic CT phantom and a few real files shipped with pydicom.

The CT's UIDs derive from fixed seeds, so loading it twice stores the same
study, and tests and benchmarks can find it by UID.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

DEMO_SEED = "pacsportal-demo-ct"
DEMO_CT_STUDY_UID = generate_uid(entropy_srcs=[DEMO_SEED, "study"])
DEMO_CT_SERIES_UID = generate_uid(entropy_srcs=[DEMO_SEED, "series"])
SIZE = 512
PIXEL_MM = 0.7
SLICE_MM = 1.0
HU_OFFSET = 1024

# Real files shipped inside pydicom: CT, MR, a JPEG 2000 NM, colour US, multi-frame JPEG US.
SAMPLE_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "examples_rgb_color.dcm",
    "examples_ybr_color.dcm",
]


def sample_paths() -> list[Path]:
    paths = []
    for name in SAMPLE_FILES:
        found = get_testdata_file(name, download=False)
        if found is None:
            raise FileNotFoundError(f"{name} is not shipped with this pydicom release")
        paths.append(Path(str(found)))
    return paths


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def phantom_slice(index: int, slices: int, rng: np.random.Generator) -> np.ndarray:
    """Hounsfield units of one axial slice through a chest-to-abdomen phantom (mm grid)."""
    half = SIZE * PIXEL_MM / 2
    axis = np.linspace(-half, half, SIZE, dtype=np.float32)
    x, y = np.meshgrid(axis, axis)
    level = index / max(slices - 1, 1)  # 0 = top of the chest, 1 = lower abdomen
    hu = np.full((SIZE, SIZE), -1000.0, dtype=np.float32)
    hu[_ellipse(x, y, 0, 10, 165, 115)] = -100  # subcutaneous fat
    hu[_ellipse(x, y, 0, 10, 150, 100)] = 40  # soft tissue
    if level < 0.55:
        shrink = 1.0 - abs(level - 0.3) * 0.8
        for side in (-1, 1):
            hu[_ellipse(x, y, side * 70, 0, 55 * shrink, 75 * shrink)] = -850  # lungs
        hu[_ellipse(x, y, 15, -10, 40 * shrink, 35 * shrink)] = 45  # heart
    else:
        hu[_ellipse(x, y, -55, -5, 70, 55)] = 60  # liver
        hu[_ellipse(x, y, 60, 10, 35, 30)] = 50  # spleen
        for side in (-1, 1):
            hu[_ellipse(x, y, side * 65, 55, 22, 32)] = 150  # contrast-enhanced kidneys
    hu[_ellipse(x, y, 20, 45, 12, 12)] = 250  # aorta with contrast
    hu[_ellipse(x, y, 0, 80, 20, 18)] = 700  # vertebral body
    hu[_ellipse(x, y, 0, 80, 10, 9)] = 300  # cancellous bone
    hu[_ellipse(x, y, 0, 104, 6, 10)] = 900  # spinous process
    if index % 12 < 4 and level < 0.7:
        ring = _ellipse(x, y, 0, 10, 148, 98) & ~_ellipse(x, y, 0, 10, 140, 90) & (y < 60)
        hu[ring] = 800  # ribs cross the slice every few millimetres
    hu[hu > -1000] += rng.normal(0, 12, size=int((hu > -1000).sum())).astype(np.float32)
    return hu


def _ct_dataset(index: int, slices: int, pixels: np.ndarray) -> Dataset:
    z = -index * SLICE_MM
    sop_uid = generate_uid(entropy_srcs=[DEMO_SEED, "instance", str(index)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260105"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
    ds.AccessionNumber = "DEMO0001"
    ds.Modality = "CT"
    ds.Manufacturer = "pacsportal synthetic phantom"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT chest-abdomen (synthetic phantom)"
    ds.SeriesDescription = f"Axial {SLICE_MM:.1f} mm"
    ds.PatientName = "Demo^Phantom"
    ds.PatientID = "DEMO-CT-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = SLICE_MM
    ds.KVP = 120
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = DEMO_CT_STUDY_UID
    ds.SeriesInstanceUID = DEMO_CT_SERIES_UID
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [-SIZE * PIXEL_MM / 2, -SIZE * PIXEL_MM / 2, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[DEMO_SEED, "frame-of-reference"])
    ds.SliceLocation = z
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = SIZE
    ds.PixelSpacing = [PIXEL_MM, PIXEL_MM]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.RescaleIntercept = -HU_OFFSET
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.PixelData = pixels.tobytes()
    return ds


def synthetic_ct(slices: int) -> Iterator[bytes]:
    """DICOM Part 10 bytes of each slice of the demo CT, top to bottom."""
    rng = np.random.default_rng(20260105)
    for index in range(slices):
        hu = phantom_slice(index, slices, rng)
        stored = np.clip(hu + HU_OFFSET, 0, 4095).astype("<u2")
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, _ct_dataset(index, slices, stored), enforce_file_format=True)
        yield buffer.getvalue()
