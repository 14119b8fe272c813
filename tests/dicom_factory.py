"""Small synthetic multi-echo GRE DICOM series for the import tests (pydicom 3).

The geometry is a tilted short-axis stack in DICOM patient coordinates (LPS: +x patient left,
+y posterior, +z superior). The LV long axis runs from base to apex towards patient left,
anterior and inferior, as in a real heart. File names are random and instance numbers are
shuffled, so an importer can only recover the order from the geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

TE_MS = (2.97, 5.65, 8.33, 11.01, 13.69, 16.37, 19.05, 21.68)
T2STAR_MS = 25.0
LONG_AXIS_BASE_TO_APEX = np.array([0.62, -0.48, -0.62]) / np.linalg.norm([0.62, -0.48, -0.62])
HEART_CENTRE_MM = np.array([20.0, -10.0, 30.0])


@dataclass
class Patient:
    """Identifying attributes that the importer must never copy."""

    patient_id: str
    patient_name: str
    study_uid: str = field(default_factory=generate_uid)
    birth_date: str = "19700101"
    study_date: str = "20240229"
    accession_number: str = "ACC0042"
    institution: str = "Hospital Of Nowhere"
    frame_of_reference_uid: str = field(default_factory=generate_uid)

    def identifiers(self) -> list[str]:
        """All identifying strings of this patient and study."""
        return [
            self.patient_id,
            self.patient_name,
            self.study_uid,
            self.birth_date,
            self.study_date,
            self.accession_number,
            self.institution,
            self.frame_of_reference_uid,
        ]


@dataclass
class Written:
    """What a factory call wrote: paths, identifying UIDs and the expected imported values.

    Attributes:
        paths: Every file written.
        uids: Series, SOP instance and frame-of-reference UIDs written.
        images: Expected float32 ``[E, H, W]`` per slice position, ordered base to apex,
            echoes by increasing TE (stored value * slope + intercept).
        te_ms: The echo times in increasing order.
    """

    paths: list[Path] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    te_ms: list[float] = field(default_factory=list)


def short_axis_cosines(normal_towards_apex: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Direction cosines (row, column) of a tilted short-axis plane.

    The column direction (down the image) points roughly posterior, so anterior is up. The
    slice normal (row x column) points towards the apex or towards the base.
    """
    axis = LONG_AXIS_BASE_TO_APEX
    down = np.array([0.0, 1.0, 0.0]) - axis[1] * axis
    down /= np.linalg.norm(down)
    right = np.cross(down, axis) if normal_towards_apex else np.cross(axis, down)
    return right, down


def _dataset(
    path: Path,
    patient: Patient,
    *,
    series_uid: str,
    series_number: int,
    description: str,
    explicit_vr: bool,
) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if explicit_vr else ImplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.AccessionNumber = patient.accession_number
    ds.InstitutionName = patient.institution
    ds.StudyInstanceUID = patient.study_uid
    ds.StudyDate = patient.study_date
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.FrameOfReferenceUID = patient.frame_of_reference_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    return ds


def write_series(
    root: Path,
    patient: Patient,
    rng: np.random.Generator,
    *,
    series_number: int = 10,
    description: str = "T2star_gre_8echo",
    te_ms: tuple[float, ...] = TE_MS,
    n_positions: int = 3,
    slice_gap_mm: float = 10.0,
    rows: int = 12,
    cols: int = 16,
    spacing_mm: tuple[float, float] = (1.5, 1.25),
    slope: float = 1.0,
    intercept: float = 0.0,
    series_per_echo: bool = False,
    series_per_position: bool = False,
    normal_towards_apex: bool = True,
    phase_direction: str | None = "ROW",
    explicit_vr: bool = True,
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND"),
    cosines: tuple[np.ndarray, np.ndarray] | None = None,
) -> Written:
    """Write one multi-echo acquisition of ``n_positions`` short-axis slices.

    Args:
        root: Folder to write into (nested sub-folders with random names are created).
        patient: Identity and study of the subject.
        rng: Random generator for file names, instance numbers and in-plane offsets.
        series_number: Number of the (first) series.
        description: SeriesDescription.
        te_ms: Echo times in ms, in the order written.
        n_positions: Slice positions, spaced ``slice_gap_mm`` along the long axis.
        slice_gap_mm: Distance between positions in mm.
        rows: Image rows H.
        cols: Image columns W.
        spacing_mm: PixelSpacing (row, column) in mm.
        slope: RescaleSlope.
        intercept: RescaleIntercept.
        series_per_echo: One series per echo (Siemens style) instead of one series.
        series_per_position: One series per slice position (one breath-hold each).
        normal_towards_apex: Sign of the slice normal row x column.
        phase_direction: InPlanePhaseEncodingDirection, or ``None`` to leave it out.
        explicit_vr: Explicit (True) or implicit VR little endian.
        image_type: ImageType value.
        cosines: (row, column) direction cosines; the tilted short axis by default.

    Returns:
        The paths, UIDs and expected imported images (base to apex).
    """
    row_dir, col_dir = cosines if cosines is not None else short_axis_cosines(normal_towards_apex)
    normal = np.cross(row_dir, col_dir)
    towards_apex = np.sign(normal @ LONG_AXIS_BASE_TO_APEX) * normal
    written = Written(te_ms=sorted(te_ms))
    order = np.argsort(te_ms)
    n_files = len(te_ms) * n_positions
    instance_numbers = rng.permutation(n_files) + 1
    uid_by_series: dict[tuple[int, int], str] = {}
    r = np.arange(rows, dtype=np.float64)[:, None]
    c = np.arange(cols, dtype=np.float64)[None, :]
    for k in range(n_positions):
        # Slice k lies k gaps from the base towards the apex; the in-plane offset of the
        # field of view varies, so the image corner says nothing about the slice order.
        centre = HEART_CENTRE_MM + (k - (n_positions - 1) / 2) * slice_gap_mm * towards_apex
        shift = rng.uniform(-8, 8, size=2)
        corner = (
            centre
            - row_dir * (spacing_mm[1] * (cols - 1) / 2 + shift[0])
            - col_dir * (spacing_mm[0] * (rows - 1) / 2 + shift[1])
        )
        s0 = 900.0 + 250.0 * k
        stored_by_echo = []
        for e, te in enumerate(te_ms):
            stored = np.round(s0 * np.exp(-te / T2STAR_MS) * (1 + r / rows + 2 * c / cols))
            stored_by_echo.append(stored.astype(np.uint16))
            series_index = (e if series_per_echo else 0, k if series_per_position else 0)
            if series_index not in uid_by_series:
                uid_by_series[series_index] = generate_uid()
                written.uids.append(uid_by_series[series_index])
            number = series_number + series_index[0] + len(te_ms) * series_index[1]
            folder = root / f"d{rng.integers(1000):03d}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{rng.integers(16**12):012x}"
            ds = _dataset(
                path,
                patient,
                series_uid=uid_by_series[series_index],
                series_number=number,
                description=description,
                explicit_vr=explicit_vr,
            )
            ds.ImageType = list(image_type)
            ds.InstanceNumber = int(instance_numbers[k * len(te_ms) + e])
            ds.EchoTime = f"{te:g}"
            ds.EchoNumbers = e + 1
            ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_dir, *col_dir)]
            ds.ImagePositionPatient = [f"{v:.4f}" for v in corner]
            ds.SliceLocation = f"{rng.uniform(-50, 50):.2f}"  # deliberately meaningless
            ds.PixelSpacing = [f"{v:g}" for v in spacing_mm]
            ds.RescaleSlope = f"{slope:g}"
            ds.RescaleIntercept = f"{intercept:g}"
            if phase_direction is not None:
                ds.InPlanePhaseEncodingDirection = phase_direction
            ds.set_pixel_data(stored_by_echo[-1], "MONOCHROME2", 16, generate_instance_uid=False)
            ds.save_as(path, enforce_file_format=True)
            written.paths.append(path)
            written.uids.append(ds.SOPInstanceUID)
        stack = np.stack([stored_by_echo[i] for i in order]).astype(np.float64)
        written.images.append((stack * slope + intercept).astype(np.float32))
    return written


def write_localizer(root: Path, patient: Patient, rng: np.random.Generator) -> Written:
    """Write a three-slice single-echo localizer (axial, one TE) that must be skipped."""
    written = write_series(
        root,
        patient,
        rng,
        series_number=1,
        description="localizer",
        te_ms=(1.2,),
        cosines=(np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])),
    )
    written.images = []
    return written
