from __future__ import annotations

import io

import numpy as np
import pydicom

from orthanc import demo


def read_slices(count: int) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(io.BytesIO(data)) for data in demo.synthetic_ct(count)]


def test_it_generates_the_same_uids_every_time() -> None:
    first = [ds.SOPInstanceUID for ds in read_slices(3)]
    second = [ds.SOPInstanceUID for ds in read_slices(3)]
    assert first == second
    assert len(set(first)) == 3


def test_it_generates_a_contiguous_axial_series() -> None:
    slices = read_slices(4)
    assert {ds.SeriesInstanceUID for ds in slices} == {demo.DEMO_CT_SERIES_UID}
    assert [ds.InstanceNumber for ds in slices] == [1, 2, 3, 4]
    positions = [float(ds.ImagePositionPatient[2]) for ds in slices]
    assert np.allclose(np.diff(positions), -demo.SLICE_MM)
    ds = slices[0]
    assert (ds.Rows, ds.Columns) == (512, 512)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_it_generates_plausible_hounsfield_units() -> None:
    ds = read_slices(1)[0]
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert hu.min() <= -990  # air around the body
    assert -900 < np.median(hu[200:300, 150:350]) < 100  # lungs and soft tissue
    assert hu.max() > 600  # bone


def test_it_finds_every_sample_file_in_pydicom() -> None:
    modalities = {pydicom.dcmread(path, stop_before_pixels=True).Modality for path in demo.sample_paths()}
    assert modalities == {"CT", "MR", "NM", "US"}
