"""Small synthetic multi-echo GRE DICOM series for the import tests (pydicom 3).

The geometry is a tilted short-axis stack in DICOM patient coordinates (LPS: +x patient left,
+y posterior, +z superior). The LV long axis runs from base to apex towards patient left,
anterior and inferior, as in a real heart, and the RV lies on the patient's right-anterior side
of the LV. The signal is a function of the patient coordinates of each pixel (an LV ring, its
blood pool, an RV blob and a smooth gradient), so one anatomy can be written in any in-plane
orientation with consistent ImageOrientationPatient/ImagePositionPatient. File names are random
and instance numbers are shuffled, so an importer can only recover the order from the geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
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
POSTERIOR_LPS = np.array([0.0, 1.0, 0.0])
RIGHT_ANTERIOR_LPS = np.array([-1.0, -1.0, 0.0]) / np.sqrt(2.0)

# Tissue codes of Written.tissue and their (relative amplitude, T2* in ms)
BACKGROUND, LV_BLOOD, LV_MYOCARDIUM, RV_BLOOD = 0, 1, 2, 3
_TISSUE = {BACKGROUND: (0.15, 30.0), LV_BLOOD: (1.0, 40.0), LV_MYOCARDIUM: (0.55, T2STAR_MS)}
_TISSUE[RV_BLOOD] = (0.9, 45.0)
LV_BLOOD_RADIUS_MM, LV_OUTER_RADIUS_MM = 6.0, 10.0
RV_OFFSET_MM, RV_RADIUS_MM = 16.0, 6.0

# stored image = VIEWS[name](standard image); the importer has to undo it
VIEWS = {
    "standard": lambda a: a,
    "rot90": lambda a: np.rot90(a, 1),  # counterclockwise, as displayed
    "rot180": lambda a: np.rot90(a, 2),
    "rot270": lambda a: np.rot90(a, 3),
    "fliplr": lambda a: a[:, ::-1],
    "flipud": lambda a: a[::-1],
    "transpose": lambda a: a.T,
    "antitranspose": lambda a: np.rot90(a, 2).T,
}


@dataclass
class Patient:
    """Identity of one patient and one of its studies: what the importer must never copy.

    :meth:`attributes` fills the identifying attributes of the DICOM PS3.15 Annex E basic
    profile that a plain MR image can hold, each with a distinct searchable value.
    """

    patient_id: str
    patient_name: str
    study_uid: str = field(default_factory=generate_uid)
    birth_date: str = "19610723"
    study_date: str = "20191105"
    study_time: str = "143512.250"
    accession_number: str = "ACC0042"
    institution: str = "Hospital Of Nowhere"
    frame_of_reference_uid: str = field(default_factory=generate_uid)
    referenced_uid: str = field(default_factory=generate_uid)
    tag: str = "Qx"  # makes the other free-text values of this patient distinct

    def attributes(self) -> dict[str, str]:
        """Keyword -> value of every identifying attribute written (not UIDs of series/SOP)."""
        t = self.tag
        return {
            "PatientName": self.patient_name,
            "PatientID": self.patient_id,
            "PatientBirthDate": self.birth_date,
            "PatientBirthTime": "061544",
            "StudyInstanceUID": self.study_uid,
            "StudyDate": self.study_date,
            "StudyTime": self.study_time,
            "SeriesDate": "20191106",
            "SeriesTime": "150102.5",
            "AcquisitionDate": "20191107",
            "AcquisitionTime": "151233",
            "AcquisitionDateTime": "20191108152311.125",
            "ContentDate": "20191109",
            "ContentTime": "153355",
            "InstanceCreationDate": "20191110",
            "InstanceCreationTime": "154417",
            "PerformedProcedureStepStartDate": "20191111",
            "PerformedProcedureStepStartTime": "155526",
            "AccessionNumber": self.accession_number,
            "InstitutionName": self.institution,
            "InstitutionAddress": f"Harbour Lane 17{t}, Lowtown",
            "InstitutionalDepartmentName": f"Cardiology Wing {t}",
            "StationName": f"MRSTATION{t}",
            "DeviceSerialNumber": f"SN77231{t}",
            "StudyID": f"STUDY{t}9",
            "StudyDescription": f"Heart iron followup {t}",
            "ProtocolName": f"Protocol of Dr Hartwell {t}",
            "ImageComments": f"scanned by Greystoke {t}",
            "FrameOfReferenceUID": self.frame_of_reference_uid,
            "InstanceCreatorUID": f"1.2.826.0.1.3680043.8.498.7731{len(t)}",
            "IrradiationEventUID": f"1.2.826.0.1.3680043.8.498.7732{len(t)}",
            "SynchronizationFrameOfReferenceUID": f"1.2.826.0.1.3680043.8.498.7733{len(t)}",
            "ReferringPhysicianName": f"Hartwell{t}^Eustace",
            "PerformingPhysicianName": f"Okonkwo{t}^Nnamdi",
            "NameOfPhysiciansReadingStudy": f"Vasquez{t}^Marisol",
            "PhysiciansOfRecord": f"Lindqvist{t}^Torbjorn",
            "OperatorsName": f"Greystoke{t}^Winifred",
            "RequestingPhysician": f"Abernathy{t}^Cornelius",
            "ReferringPhysicianAddress": f"Elm Street 3{t}, Midtown",
            "ReferringPhysicianTelephoneNumbers": f"+44 20 7946 0{t}1",
            "OtherPatientIDs": f"OTHER-ID-{t}",
            "OtherPatientNames": f"Kingsleigh{t}^Alicia",
            "PatientBirthName": f"Pleasance{t}^Alice",
            "PatientMotherBirthName": f"Reeves{t}^Lorina",
            "IssuerOfPatientID": f"Lowtown Registry {t}",
            "PatientAddress": f"Rabbit Hole Road 9{t}, Oxford",
            "PatientTelephoneNumbers": f"+44 1865 55{t}31",
            "PatientAge": "058Y",
            "PatientSize": "1.91",
            "PatientWeight": "83.7",
            "EthnicGroup": f"Ethnic{t}",
            "Occupation": f"Keeper {t}",
            "MilitaryRank": f"Commodore {t}",
            "BranchOfService": f"Coastguard {t}",
            "CountryOfResidence": f"Ruritania {t}",
            "RegionOfResidence": f"Lower Marches {t}",
            "MedicalRecordLocator": f"MRL-{t}-88",
            "PatientReligiousPreference": f"Pastafarian {t}",
            "AdditionalPatientHistory": f"thalassaemia major, seen 05.11.2019 {t}",
            "AdmittingDiagnosesDescription": f"iron overload since 2011-03-14 {t}",
            "PatientComments": f"born 23/07/1961, last MRI 14 Mar 2011 {t}",
            "PerformedProcedureStepID": f"PPS{t}42",
            "PerformedProcedureStepDescription": f"Cardiac siderosis workup {t}",
            "ContentCreatorName": f"Fairweather{t}^Ottoline",
        }

    def identifiers(self) -> list[str]:
        """The main identifying strings of this patient and study."""
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
        images: Expected float32 ``[E, H, W]`` per slice position in the standard short-axis
            view (anterior up, septum left), ordered base to apex, echoes by increasing TE
            (stored value * slope + intercept). With ``cosines`` or ``inplane_deg`` given,
            the pixels as stored instead (the standard view is not on the written grid).
        stored: The same, as stored in the files (the scanner's view).
        tissue: uint8 ``[H, W]`` tissue code per position, same view as ``images``.
        te_ms: The echo times in increasing order.
    """

    paths: list[Path] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    stored: list[np.ndarray] = field(default_factory=list)
    tissue: list[np.ndarray] = field(default_factory=list)
    te_ms: list[float] = field(default_factory=list)


def standard_cosines() -> tuple[np.ndarray, np.ndarray]:
    """Direction cosines (row, column) of the standard short-axis view.

    The column direction (down the image) is the posterior direction projected on the plane
    (anterior up); the normal row x column points from the apex to the base (the slice is seen
    from the apex), so the image right points to the patient's left, the septum is on the left.
    """
    towards_base = -LONG_AXIS_BASE_TO_APEX
    down = POSTERIOR_LPS - (POSTERIOR_LPS @ towards_base) * towards_base
    down /= np.linalg.norm(down)
    return np.cross(down, towards_base), down


def _in_plane(points: np.ndarray) -> np.ndarray:
    """Components of ``points - HEART_CENTRE_MM`` perpendicular to the long axis, ``[..., 3]``."""
    q = points - HEART_CENTRE_MM
    return q - (q @ LONG_AXIS_BASE_TO_APEX)[..., None] * LONG_AXIS_BASE_TO_APEX


def anatomy(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tissue code and smooth gain at patient points ``[..., 3]`` (mm, LPS)."""
    q = _in_plane(points)
    rv_dir = _in_plane(HEART_CENTRE_MM + RIGHT_ANTERIOR_LPS)
    rv_dir /= np.linalg.norm(rv_dir)
    d_lv = np.linalg.norm(q, axis=-1)
    d_rv = np.linalg.norm(q - RV_OFFSET_MM * rv_dir, axis=-1)
    tissue = np.full(d_lv.shape, BACKGROUND, np.uint8)
    tissue[d_rv < RV_RADIUS_MM] = RV_BLOOD
    tissue[d_lv < LV_OUTER_RADIUS_MM] = LV_MYOCARDIUM
    tissue[d_lv < LV_BLOOD_RADIUS_MM] = LV_BLOOD
    right, down = standard_cosines()
    gain = 1.0 + 0.012 * (q @ right) - 0.018 * (q @ down)  # no symmetry of the square survives
    return tissue, gain


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
    ds.ScanningSequence = ["GR"]
    for keyword, value in patient.attributes().items():
        setattr(ds, keyword, value)
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    referenced.ReferencedSOPInstanceUID = patient.referenced_uid
    ds.ReferencedStudySequence = [referenced]
    block = ds.private_block(0x0029, "ACME PRIVATE", create=True)  # private copies of the name
    block.add_new(0x10, "LO", str(patient.patient_name))
    block.add_new(0x11, "LO", f"{patient.patient_id} {patient.birth_date}")
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.FrameOfReferenceUID = patient.frame_of_reference_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    return ds


def _grid(
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    centre: np.ndarray,
    rows: int,
    cols: int,
    spacing_mm: tuple[float, float],
) -> np.ndarray:
    """Patient coordinates ``[rows, cols, 3]`` of a grid centred on ``centre``."""
    r = (np.arange(rows) - (rows - 1) / 2) * spacing_mm[0]
    c = (np.arange(cols) - (cols - 1) / 2) * spacing_mm[1]
    return centre + r[:, None, None] * col_dir + c[None, :, None] * row_dir


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
    rows: int = 24,
    cols: int = 32,
    spacing_mm: tuple[float, float] = (1.5, 1.25),
    slope: float = 1.0,
    intercept: float = 0.0,
    series_per_echo: bool = False,
    series_per_position: bool = False,
    view: str = "standard",
    inplane_deg: float = 0.0,
    phase_direction: str | None = "ROW",
    field_strength_t: float | None = 1.5,
    explicit_vr: bool = True,
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND"),
    cosines: tuple[np.ndarray, np.ndarray] | None = None,
    transfer_syntax: str | None = None,
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
        rows: Image rows H in the standard view.
        cols: Image columns W in the standard view.
        spacing_mm: (row, column) spacing in mm in the standard view.
        slope: RescaleSlope.
        intercept: RescaleIntercept.
        series_per_echo: One series per echo (Siemens style) instead of one series.
        series_per_position: One series per slice position (one breath-hold each).
        view: Key of :data:`VIEWS`: how the stored image relates to the standard view (the
            geometry in the header follows, so the anatomy is the same).
        inplane_deg: Rotate the imaging plane by this angle about the slice normal first
            (counterclockwise as displayed); the pixels then sample other points.
        phase_direction: InPlanePhaseEncodingDirection of the stored image, or ``None``.
        field_strength_t: MagneticFieldStrength in tesla, or ``None`` to leave it out.
        explicit_vr: Explicit (True) or implicit VR little endian.
        image_type: ImageType value.
        cosines: (row, column) direction cosines of the stored image; replaces ``view`` and
            ``inplane_deg``.
        transfer_syntax: Compress the pixel data with this transfer syntax (an encoder for
            it must be installed); uncompressed by default.

    Returns:
        The paths, UIDs and expected imported images (base to apex).
    """
    if cosines is None:
        right, down = standard_cosines()
        theta = np.radians(inplane_deg)
        row_dir = np.cos(theta) * right - np.sin(theta) * down
        col_dir = np.sin(theta) * right + np.cos(theta) * down
        to_stored = VIEWS[view]
    else:
        row_dir, col_dir = cosines
        to_stored = VIEWS["standard"]
    normal = np.cross(row_dir, col_dir)
    towards_apex = np.sign(normal @ LONG_AXIS_BASE_TO_APEX) * normal
    written = Written(te_ms=sorted(te_ms))
    order = np.argsort(te_ms)
    instance_numbers = rng.permutation(len(te_ms) * n_positions) + 1
    uid_by_series: dict[tuple[int, int], str] = {}
    for k in range(n_positions):
        # Slice k lies k gaps from the base towards the apex; the field of view is shifted in
        # plane, so the image corner says nothing about the slice order.
        centre = HEART_CENTRE_MM + (k - (n_positions - 1) / 2) * slice_gap_mm * towards_apex
        centre = centre + rng.uniform(-3, 3) * row_dir + rng.uniform(-3, 3) * col_dir
        points = _grid(row_dir, col_dir, centre, rows, cols, spacing_mm)
        tissue, gain = anatomy(points)
        amplitude = np.choose(tissue, [_TISSUE[t][0] for t in sorted(_TISSUE)])
        t2star = np.choose(tissue, [_TISSUE[t][1] for t in sorted(_TISSUE)])
        s0 = (1000.0 + 250.0 * k) * amplitude * gain
        # Stored geometry: the header describes the pixel grid after to_stored.
        index = np.indices((rows, cols))
        src_r, src_c = to_stored(index[0]), to_stored(index[1])
        p00 = points[src_r[0, 0], src_c[0, 0]]
        stored_col = points[src_r[1, 0], src_c[1, 0]] - p00  # one stored row down
        stored_row = points[src_r[0, 1], src_c[0, 1]] - p00  # one stored column right
        stored_spacing = (np.linalg.norm(stored_col), np.linalg.norm(stored_row))
        stored_cosines = (stored_row / stored_spacing[1], stored_col / stored_spacing[0])
        stored_by_echo = []
        for e, te in enumerate(te_ms):
            standard = np.round(s0 * np.exp(-te / t2star)).astype(np.uint16)
            stored = np.ascontiguousarray(to_stored(standard))
            stored_by_echo.append((standard, stored))
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
            ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate(stored_cosines)]
            ds.ImagePositionPatient = [f"{v:.5f}" for v in p00]
            ds.SliceLocation = f"{rng.uniform(-50, 50):.2f}"  # deliberately meaningless
            ds.PixelSpacing = [f"{v:.6g}" for v in stored_spacing]
            ds.RescaleSlope = f"{slope:g}"
            ds.RescaleIntercept = f"{intercept:g}"
            if phase_direction is not None:
                ds.InPlanePhaseEncodingDirection = phase_direction
            if field_strength_t is not None:
                ds.MagneticFieldStrength = f"{field_strength_t:g}"
            ds.set_pixel_data(stored, "MONOCHROME2", 16, generate_instance_uid=False)
            if transfer_syntax is not None:
                ds.compress(transfer_syntax, generate_instance_uid=False)
            ds.save_as(path, enforce_file_format=True)
            written.paths.append(path)
            written.uids.append(ds.SOPInstanceUID)
        reoriented = cosines is None and inplane_deg == 0.0
        for which, target in ((0 if reoriented else 1, written.images), (1, written.stored)):
            stack = np.stack([stored_by_echo[i][which] for i in order]).astype(np.float64)
            target.append((stack * slope + intercept).astype(np.float32))
        written.tissue.append(tissue if reoriented else to_stored(tissue))
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
