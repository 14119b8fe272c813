"""Import multi-echo GRE DICOM series into an echo stack (contract section 4).

The rules, in the order they are applied:

* Files: ``root`` is walked recursively in sorted order; headers are read without pixel data
  first. Files that are not DICOM (no ``DICM`` preamble), not MR Image Storage, multi-frame,
  not MONOCHROME2, not gradient echo (ScanningSequence present without ``GR``, e.g. a
  multi-echo spin-echo T2 series) or not magnitude images (``ImageType`` containing ``P``/
  ``PHASE``/``R``/``REAL``/``I``/``IMAGINARY``, ``ComplexImageComponent`` other than
  ``MAGNITUDE``, or GE's private image-type tag saying phase/real/imaginary) are left out. A
  file whose header cannot be read is left out with a WARNING naming it.
* Selection: optionally only series whose SeriesDescription matches a regular expression (for
  studies that also hold e.g. a liver T2* series).
* Series: the images of one series that share orientation (ImageOrientationPatient), matrix
  (Rows, Columns) and PixelSpacing form a *multi-echo series* when every slice position has at
  least :data:`MIN_ECHOES` distinct EchoTime values. Series with one echo time and one image per
  position are combined with the other such series of the same study and geometry (one series
  per echo, as Siemens often writes); the positions with at least :data:`MIN_ECHOES` distinct
  echo times form a multi-echo series. Everything else is skipped with an INFO log line naming
  the series by number and description.
* Echoes: sorted by EchoTime (ms). Two files with the same SOPInstanceUID are one image (the
  first path in sorted order is read). Two different images with the same echo time at one
  position make that multi-echo series ambiguous: it is skipped with a WARNING. Every position
  of a multi-echo series must have the same echo times (within :data:`SAME_TE_MS`): a position
  with missing or other echo times refuses the import, naming files of that position.
* Slice positions: ImagePositionPatient projected on the slice normal (row cosine x column
  cosine), never file names, InstanceNumber or SliceLocation. Positions closer than
  :data:`SAME_POSITION_MM` are one position.
* Subjects and visits: one subject per PatientID, across studies (a patient without PatientID
  is one subject per study). Subject keys ``S0001``, ``S0002``, ... follow the order of a
  SHA-256 hash of the PatientID: deterministic, but not the order of patient IDs or scan dates,
  and the same for every import of one folder. The studies of one patient are its visits
  ``1, 2, ...`` in the order of StudyDate and StudyTime (studies without a date last, ties by
  StudyInstanceUID). All visits are imported by default, each subject's visits one after the
  other in visit order; ``visit=N`` imports only the N-th visit of every patient (the others
  are logged by key), so baseline and follow-up can go to two files with the same keys. Splits
  are by ``subject_id``, so all visits of a patient stay on one side.
* Order and location: the slices of one visit are ordered from base to apex along the slice
  normal, signed so that it points towards :data:`APEX_DIRECTION_LPS` (patient left, anterior,
  inferior). With exactly three distinct positions they are labelled ``base``, ``mid``,
  ``apex``; otherwise ``""``. When the slices are not parallel, or the normal is nearly
  perpendicular to the apex direction, the image centres are ordered along the apex direction
  and the locations are ``""``.
* Orientation (unless ``reorient=False``): each slice is turned into the standard short-axis
  view of the contract by a transpose and/or flips of the pixel array (the 8 rotations by 90
  degrees and mirror images; nothing is resampled). The target frame comes from
  ImageOrientationPatient in patient coordinates (LPS): the slice is seen from the apex (the
  displayed normal, row x column, points away from :data:`APEX_DIRECTION_LPS`), "down" is the
  posterior direction projected on the slice plane (anterior up), and "right" completes the
  frame, so the image right points to the patient's left and the septum, which lies towards the
  patient's right-anterior side of the LV, is on the image left. The pixel axes nearest to that
  frame are chosen; the angle left between "up" and the anterior direction is the residual.
  Each series' operation (e.g. ``rotated 90 degrees clockwise``) and residual go to the log.
  A residual above :data:`MAX_RESIDUAL_DEG` (the anterior direction runs near an image
  diagonal, which no 90-degree step fixes) is imported in the nearest view with a WARNING.
  When the standard view is not defined by the geometry, because the slice normal is within
  ``acos(0.3)`` of perpendicular to the long axis direction (not a short-axis slice) or the
  anterior direction lies within 30 degrees of the slice normal, the slice keeps the
  scanner's view with a WARNING: such series are imported rather than refused, because the
  rest of the folder is usable and the contract allows "standard where known".
  ``pixel_spacing_mm`` and ``phase_encoding_axis`` follow the reorientation.
* Pixels: stored values * RescaleSlope + RescaleIntercept, as float32, as displayed (row 0 at
  the top); nothing is resampled or padded. A negative or non-finite value after rescaling
  refuses the import (a magnitude image cannot be negative; nothing is clipped). Philips'
  private scale slope is not applied. Compressed transfer syntaxes are decoded by pydicom's
  pixel handlers (RLE and deflate natively; JPEG, JPEG-LS and JPEG 2000 with the decoders of
  the ``dicom`` extra). Before any pixel data is read, every image to import is checked for a
  decoder of its transfer syntax; one without refuses the import, naming the file and the
  transfer syntax.
* Shape: every slice must have the same echo count E and matrix H x W (after reorientation);
  otherwise the import is refused with a message naming the subject keys and series (never
  resampled or padded).
* ``phase_encoding_axis`` from InPlanePhaseEncodingDirection: the standard defines ``ROW`` as
  "phase encoded in rows" and ``COL`` as "phase encoded in columns", i.e. the phase-encoding
  direction runs along a row (left-right, the column index changes: image axis 1) or along a
  column (top-bottom, the row index changes: image axis 0), as dcm2niix reads it (``ROW`` = i,
  ``COL`` = j). Missing or other values give -1. A transposing reorientation swaps 0 and 1.
* ``field_strength_t`` from MagneticFieldStrength (tesla); missing, non-positive or above
  :data:`MAX_FIELD_STRENGTH_T` (e.g. gauss written by old scanners) gives NaN.
* Pseudonymization: nothing of the header except geometry, echo times, field strength, phase
  direction and pixel data is copied into the stack. The mapping back is returned in
  :attr:`DicomImport.keys` and written only by :func:`write_key_file`. Log lines name series by
  number and description (the scanner's protocol text, which the data set never holds) and
  subjects by key; error messages name the offending file by its path.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import UID, EnhancedMRImageStorage, ImplicitVRLittleEndian, MRImageStorage
from tqdm.auto import tqdm

from cmrseg.core.atomic import atomic_path
from cmrseg.core.errors import InputError
from cmrseg.data.echo_stack import EchoStack, SliceSource

__all__ = [
    "APEX_DIRECTION_LPS",
    "MAX_FIELD_STRENGTH_T",
    "MAX_RESIDUAL_DEG",
    "MIN_ECHOES",
    "SAME_POSITION_MM",
    "SAME_TE_MS",
    "DicomImport",
    "SubjectKey",
    "import_dicom",
    "write_key_file",
]

log = logging.getLogger(__name__)

MIN_ECHOES = 3
SAME_POSITION_MM = 0.1
SAME_TE_MS = 0.01
MAX_RESIDUAL_DEG = 30.0
MAX_FIELD_STRENGTH_T = 20.0
APEX_DIRECTION_LPS = np.array([1.0, -1.0, -1.0]) / math.sqrt(3.0)
_POSTERIOR_LPS = np.array([0.0, 1.0, 0.0])
_MIN_COS_APEX = 0.3  # |normal . apex direction| below this: base/apex sign is not trusted
_MIN_ANTERIOR_IN_PLANE = 0.5  # anterior within 30 degrees of the normal: "up" is not defined
_MIN_COS_PARALLEL = math.cos(math.radians(5.0))
_TE_DECIMALS = 3  # echo times equal to 1 us are one echo time
_NON_MAGNITUDE_TYPES = frozenset({"P", "PHASE", "R", "REAL", "I", "IMAGINARY"})
_GE_CREATOR, _GE_CREATOR_TAG = "GEMS_PARM_01", (0x0043, 0x0010)
_GE_RAW_DATA_TYPE_TAG = (0x0043, 0x102F)  # in the GEMS_PARM_01 block
_PHASE_AXIS = {"ROW": 1, "COL": 0}
_KEY_FILE_COLUMNS = ("subject_id", "visit", "patient_id", "study_instance_uid", "study_date")
# (transpose, flip rows, flip columns) -> what it does to the displayed image
_VIEW_NAMES = {
    (False, False, False): "already in the standard view",
    (False, True, True): "rotated 180 degrees",
    (False, False, True): "flipped left-right",
    (False, True, False): "flipped up-down",
    (True, False, False): "flipped about the main diagonal",
    (True, True, True): "flipped about the anti-diagonal",
    (True, True, False): "rotated 90 degrees counterclockwise",
    (True, False, True): "rotated 90 degrees clockwise",
}


@dataclass(frozen=True)
class SubjectKey:
    """One row of the key file: the pseudonym and what it stands for.

    Attributes:
        subject_id: The new key, e.g. ``S0001``; one per patient.
        visit: 1-based visit (study) of that patient, by study date.
        patient_id: DICOM PatientID.
        study_instance_uid: DICOM StudyInstanceUID of the visit.
        study_date: DICOM StudyDate of the visit (``YYYYMMDD``, or ``""``).
    """

    subject_id: str
    visit: int
    patient_id: str
    study_instance_uid: str
    study_date: str


@dataclass(frozen=True)
class DicomImport:
    """Result of :func:`import_dicom`.

    Attributes:
        stack: The pseudonymized echo stack (``images``, ``te_ms``, ``subject_id``,
            ``slice_location``, ``pixel_spacing_mm``, ``phase_encoding_axis``,
            ``field_strength_t``). Its images are a :class:`SliceSource`: pixel data are read
            slice by slice when the stack is written (constant memory), or all at once by
            ``np.asarray``.
        keys: The mapping back to the source, one row per imported subject and visit; never
            write it anywhere but a key file the user asked for.
        visit: int16 ``[N]``, the visit of each slice (1-based, by study date).
        view: ``[N]`` what was done to each slice to reach the standard view, e.g. ``rotated
            90 degrees clockwise``, or why it kept the scanner's view.
        n_series_skipped: Number of series (or sets of series) that were not imported.
    """

    stack: EchoStack
    keys: list[SubjectKey]
    visit: np.ndarray
    view: list[str]
    n_series_skipped: int


@dataclass(frozen=True)
class _View:
    """A transpose and flips of a ``[H, W]`` image, in that order.

    Attributes:
        transpose: Swap rows and columns first.
        flip_rows: Then reverse the row order (up-down).
        flip_cols: Then reverse the column order (left-right).
        residual_deg: Angle between image "up" and the anterior direction afterwards, or NaN
            when the view was kept because the standard view is not defined.
        why_kept: Why the scanner's view was kept, or ``""``.
    """

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False
    residual_deg: float = 0.0
    why_kept: str = ""

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Return ``image`` ``[H, W]`` in this view (a view of the array, not a copy)."""
        out = image.T if self.transpose else image
        if self.flip_rows:
            out = out[::-1]
        if self.flip_cols:
            out = out[:, ::-1]
        return out

    @property
    def description(self) -> str:
        if self.why_kept:
            return f"kept in the scanner's view: {self.why_kept}"
        name = _VIEW_NAMES[(self.transpose, self.flip_rows, self.flip_cols)]
        return f"{name} (anterior {self.residual_deg:.0f} degrees from up)"


_SCANNER_VIEW = _View(residual_deg=math.nan, why_kept="--no-reorient")


def _standard_view(orientation: Sequence[float]) -> _View:
    """The transpose/flips that bring an image of this orientation nearest the standard view.

    Args:
        orientation: ImageOrientationPatient (row cosine, column cosine) in LPS.
    """
    row_dir, col_dir = np.array(orientation[:3]), np.array(orientation[3:])
    row_dir, col_dir = row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    cos_apex = float(normal @ APEX_DIRECTION_LPS)
    if abs(cos_apex) < _MIN_COS_APEX:
        return _View(
            residual_deg=math.nan,
            why_kept="the slice normal is nearly perpendicular to the long axis direction "
            "(not a short-axis slice)",
        )
    towards_base = -math.copysign(1.0, cos_apex) * normal
    down = _POSTERIOR_LPS - (_POSTERIOR_LPS @ towards_base) * towards_base
    if np.linalg.norm(down) < _MIN_ANTERIOR_IN_PLANE:
        return _View(
            residual_deg=math.nan,
            why_kept="the anterior direction is nearly along the slice normal",
        )
    down /= np.linalg.norm(down)
    right = np.cross(down, towards_base)
    best, best_score = _View(), -math.inf
    for transpose in (False, True):
        new_down, new_right = (row_dir, col_dir) if transpose else (col_dir, row_dir)
        for flip_rows in (False, True):
            for flip_cols in (False, True):
                d = -new_down if flip_rows else new_down
                r = -new_right if flip_cols else new_right
                score = float(d @ down + r @ right)
                if score > best_score:
                    cos_residual = float(np.clip(d @ down, -1.0, 1.0))
                    residual = math.degrees(math.acos(cos_residual))
                    best, best_score = _View(transpose, flip_rows, flip_cols, residual), score
    return best


@dataclass(frozen=True)
class _Image:
    """Header of one usable DICOM image (no pixel data)."""

    path: Path
    patient_id: str
    study_uid: str
    study_date: str
    study_time: str
    series_uid: str
    sop_uid: str
    series_name: str
    transfer_syntax: str
    orientation: tuple[float, ...]
    position_mm: tuple[float, float, float]
    rows: int
    cols: int
    spacing_mm: tuple[float, float]
    te_ms: float
    phase_axis: int
    field_strength_t: float

    @property
    def study(self) -> tuple[str, str]:
        return (self.patient_id, self.study_uid)

    @property
    def patient(self) -> str:
        """Who the subject is: the PatientID, or the study when there is none."""
        return f"id:{self.patient_id}" if self.patient_id else f"study:{self.study_uid}"

    @property
    def geometry(self) -> tuple[object, ...]:
        """Orientation, matrix and spacing, rounded so equal acquisitions compare equal."""
        return (
            tuple(round(v, 3) for v in self.orientation),
            self.rows,
            self.cols,
            tuple(round(v, 4) for v in self.spacing_mm),
        )

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal, row cosine x column cosine."""
        n = np.cross(self.orientation[:3], self.orientation[3:])
        return n / np.linalg.norm(n)

    @property
    def centre_mm(self) -> np.ndarray:
        """Patient coordinates of the image centre in mm."""
        row_dir, col_dir = np.array(self.orientation[:3]), np.array(self.orientation[3:])
        return (
            np.array(self.position_mm)
            + row_dir * self.spacing_mm[1] * (self.cols - 1) / 2
            + col_dir * self.spacing_mm[0] * (self.rows - 1) / 2
        )


@dataclass
class _Slice:
    """One output slice: the images of one position of one multi-echo series, by TE."""

    images: list[_Image]
    series_name: str
    view: _View = _SCANNER_VIEW

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(E, H, W)`` after reorientation."""
        h, w = self.images[0].rows, self.images[0].cols
        return (len(self.images), *((w, h) if self.view.transpose else (h, w)))

    @property
    def spacing_mm(self) -> tuple[float, float]:
        row, col = self.images[0].spacing_mm
        return (col, row) if self.view.transpose else (row, col)

    @property
    def phase_axis(self) -> int:
        axes = {im.phase_axis for im in self.images}
        axis = axes.pop() if len(axes) == 1 else -1
        return 1 - axis if self.view.transpose and axis >= 0 else axis

    @property
    def field_strength_t(self) -> float:
        values = {im.field_strength_t for im in self.images if math.isfinite(im.field_strength_t)}
        if len(values) == 1 and all(math.isfinite(im.field_strength_t) for im in self.images):
            return values.pop()
        return math.nan


@dataclass
class _Scan:
    """Result of the header pass."""

    images: list[_Image]
    n_files: int
    skipped: dict[str, list[str]]  # series name -> reasons images were left out


# --------------------------------------------------------------------------- header pass


def _walk(root: Path) -> list[Path]:
    files: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        files.extend(Path(folder) / name for name in sorted(names))
    return files


def _series_name(ds: Dataset) -> str:
    number = ds.get("SeriesNumber")
    description = str(ds.get("SeriesDescription", "") or "")
    return f"series {number if number not in (None, '') else '?'} '{description}'"


def _floats(ds: Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    values = tuple(float(v) for v in (value if n > 1 else [value]))
    if len(values) != n or not all(math.isfinite(v) for v in values):
        return None
    return values


def _ge_raw_data_type(ds: Dataset) -> int | None:
    """GE's private raw data type (0 magnitude, 1 phase, 2 real, 3 imaginary), or None."""
    creator = ds.get(_GE_CREATOR_TAG)
    element = ds.get(_GE_RAW_DATA_TYPE_TAG)
    if creator is None or str(creator.value).strip() != _GE_CREATOR or element is None:
        return None
    value = element.value
    if isinstance(value, bytes):  # implicit VR without a private dictionary entry: raw SS
        return int.from_bytes(value[:2], "little", signed=True) if len(value) >= 2 else None
    return int(value[0] if isinstance(value, (list, tuple)) else value)


def _rejection(ds: Dataset) -> str | None:
    """Why an MR image cannot be part of a multi-echo magnitude series, or None."""
    if ds.get("SOPClassUID") == EnhancedMRImageStorage:
        return "enhanced (multi-frame) MR images are not supported"
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return "multi-frame images are not supported"
    if ds.get("PhotometricInterpretation", "MONOCHROME2") != "MONOCHROME2":
        return f"photometric interpretation {ds.get('PhotometricInterpretation')} (not MONOCHROME2)"
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return "more than one sample per pixel"
    image_type = {str(v).upper() for v in (ds.get("ImageType") or [])}
    component = str(ds.get("ComplexImageComponent", "") or "").upper()
    if (
        image_type & _NON_MAGNITUDE_TYPES
        or component not in ("", "MAGNITUDE")
        or _ge_raw_data_type(ds) in (1, 2, 3)
    ):
        return "phase, real or imaginary, not magnitude"
    sequence_value = ds.get("ScanningSequence") or []
    if isinstance(sequence_value, str):
        sequence_value = sequence_value.split("\\")
    sequence = {str(v).strip().upper() for v in sequence_value}
    if sequence and "GR" not in sequence:
        return f"not gradient echo (ScanningSequence {'/'.join(sorted(sequence))})"
    for keyword in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "ImageOrientationPatient",
        "ImagePositionPatient",
        "PixelSpacing",
        "Rows",
        "Columns",
        "EchoTime",
    ):
        if ds.get(keyword) in (None, ""):
            return f"{keyword} missing"
    return None


def _header(path: Path, ds: Dataset) -> _Image | str:
    """Turn one header into an :class:`_Image`, or return why it is not usable."""
    reason = _rejection(ds)
    if reason is not None:
        return reason
    orientation = _floats(ds, "ImageOrientationPatient", 6)
    position = _floats(ds, "ImagePositionPatient", 3)
    spacing = _floats(ds, "PixelSpacing", 2)
    te = _floats(ds, "EchoTime", 1)
    if orientation is None or position is None or spacing is None or te is None:
        return "malformed geometry, pixel spacing or echo time"
    row_dir, col_dir = np.array(orientation[:3]), np.array(orientation[3:])
    if np.linalg.norm(np.cross(row_dir, col_dir)) < 0.5 or min(spacing) <= 0 or te[0] <= 0:
        return "degenerate orientation, pixel spacing or echo time"
    direction = str(ds.get("InPlanePhaseEncodingDirection", "") or "").strip().upper()
    field = _floats(ds, "MagneticFieldStrength", 1)
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return _Image(
        path=path,
        patient_id=str(ds.get("PatientID", "") or "").strip(),
        study_uid=str(ds.StudyInstanceUID),
        study_date=str(ds.get("StudyDate", "") or "").strip(),
        study_time=str(ds.get("StudyTime", "") or "").strip(),
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.get("SOPInstanceUID", "") or path),
        series_name=_series_name(ds),
        transfer_syntax=str(syntax or ImplicitVRLittleEndian),
        orientation=orientation,
        position_mm=(position[0], position[1], position[2]),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        spacing_mm=(spacing[0], spacing[1]),
        te_ms=round(te[0], _TE_DECIMALS),
        phase_axis=_PHASE_AXIS.get(direction, -1),
        field_strength_t=(
            field[0] if field is not None and 0 < field[0] <= MAX_FIELD_STRENGTH_T else math.nan
        ),
    )


def _scan(root: Path, progress: bool, description: re.Pattern[str] | None) -> _Scan:
    files = _walk(root)
    images: list[_Image] = []
    skipped: dict[str, list[str]] = defaultdict(list)
    bar = tqdm(files, desc="reading DICOM headers", unit="file", disable=None if progress else True)
    for path in bar:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            log.debug("not DICOM, skipped: %s", path)
            continue
        except Exception as err:  # pydicom raises many types on damaged files; none is fatal
            log.warning("unreadable DICOM header, skipped: %s (%s)", path, type(err).__name__)
            continue
        is_mr = ds.get("SOPClassUID") in (MRImageStorage, EnhancedMRImageStorage) or (
            "SOPClassUID" not in ds and ds.get("Modality") == "MR"
        )
        if not is_mr:
            log.debug("not an MR image, skipped: %s", path)
            continue
        if description is not None and not description.search(
            str(ds.get("SeriesDescription", "") or "")
        ):
            skipped[_series_name(ds)].append("series description does not match the selection")
            continue
        try:
            result = _header(path, ds)
        except (ValueError, TypeError) as err:  # e.g. a decimal string that is not a number
            result = f"malformed header value ({type(err).__name__})"
        if isinstance(result, str):
            skipped[_series_name(ds)].append(result)
        else:
            images.append(result)
    return _Scan(images=images, n_files=len(files), skipped=dict(skipped))


# --------------------------------------------------------------------------- series rules


def _positions(images: Sequence[_Image]) -> list[list[_Image]]:
    """Group images of one geometry by slice position (projection on the slice normal)."""
    normal = images[0].normal
    depth = np.array([np.dot(im.position_mm, normal) for im in images])
    order = np.argsort(depth, kind="stable")
    groups: list[list[_Image]] = []
    last = -np.inf
    for i in order:
        if depth[i] - last > SAME_POSITION_MM:
            groups.append([])
        groups[-1].append(images[i])
        last = depth[i]
    return groups


def _unique(images: list[_Image]) -> list[_Image]:
    """Keep the first file (in sorted path order) of each SOPInstanceUID."""
    seen: dict[str, _Image] = {}
    for im in images:
        if seen.setdefault(im.sop_uid, im) is not im:
            log.debug("%s: copy of %s ignored", im.path, seen[im.sop_uid].path)
    return list(seen.values())


def _n_echo_times(images: Sequence[_Image]) -> int:
    return len({im.te_ms for im in images})


def _echo_slices(positions: list[list[_Image]], name: str) -> list[_Slice]:
    """Sort the images of each position by TE.

    Returns:
        One slice per position, or an empty list (logged as a WARNING) when two different
        images share an echo time at one position.
    """
    slices = []
    for images in positions:
        by_te: dict[float, _Image] = {}
        for im in sorted(images, key=lambda im: im.te_ms):
            if by_te.setdefault(im.te_ms, im) is not im:
                _skip(
                    name,
                    f"two different images with echo time {im.te_ms:g} ms at one slice position",
                    logging.WARNING,
                )
                return []
        slices.append(_Slice(images=list(by_te.values()), series_name=name))
    _check_echo_times(slices, name)
    return slices


def _paths(images: Sequence[_Image], n: int = 3) -> str:
    more = f" and {len(images) - n} more" if len(images) > n else ""
    return ", ".join(str(im.path) for im in images[:n]) + more


def _check_echo_times(slices: list[_Slice], name: str) -> None:
    """Refuse a multi-echo series whose positions do not share one set of echo times.

    The most common set is the reference; a position with missing or other echo times is
    named by its position number and files.

    Raises:
        InputError: Some position's echo times differ from the reference by more than
            :data:`SAME_TE_MS`.
    """
    te = [tuple(im.te_ms for im in s.images) for s in slices]
    reference = max(set(te), key=te.count)
    for k, (s, values) in enumerate(zip(slices, te, strict=True)):
        if len(values) == len(reference) and np.allclose(
            values, reference, rtol=0, atol=SAME_TE_MS
        ):
            continue
        missing = [t for t in reference if not np.isclose(values, t, rtol=0, atol=SAME_TE_MS).any()]
        problem = (
            f"echo time(s) {', '.join(f'{t:g}' for t in missing)} ms missing"
            if missing and set(values) <= set(reference)
            else f"echo times {', '.join(f'{t:g}' for t in values)} ms"
        )
        raise InputError(
            f"{_paths(s.images)}: {name}, slice position {k + 1} of {len(slices)}: {problem}, "
            f"but the other positions have {len(reference)} echoes at "
            f"{', '.join(f'{t:g}' for t in reference)} ms; every slice of a multi-echo series "
            "needs the same echo times"
        )


def _skip(name: str, reason: str, level: int = logging.INFO) -> None:
    log.log(level, "skipped %s: %s", name, reason)


def _multi_echo_slices(images: list[_Image]) -> tuple[list[list[_Slice]], int]:
    """Apply the series rules, logging every skipped series.

    Returns:
        The multi-echo series (each a list of slices, one per position) and the number of
        series (or sets of one-echo series) skipped.
    """
    by_series: dict[str, list[_Image]] = defaultdict(list)
    for im in images:
        by_series[im.series_uid].append(im)
    accepted: list[list[_Slice]] = []
    n_skipped = 0
    single_echo: dict[tuple[object, ...], list[list[_Image]]] = defaultdict(list)
    for series in by_series.values():
        name = series[0].series_name
        if len({im.geometry for im in series}) > 1:
            _skip(name, "more than one orientation, matrix or pixel spacing")
            n_skipped += 1
            continue
        positions = _positions(series)
        counts = [_n_echo_times(p) for p in positions]
        if max(counts) >= MIN_ECHOES:  # positions with fewer echoes refuse the import
            slices = _echo_slices(positions, name)
            if slices:
                accepted.append(slices)
            else:
                n_skipped += 1
        elif max(counts) == 1 and all(len(p) == 1 for p in positions):
            single_echo[(series[0].study, series[0].geometry)].append(series)
        else:
            n_echoes = (
                f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
            )
            _skip(name, f"{n_echoes} echo time(s) per slice position, need >= {MIN_ECHOES}")
            n_skipped += 1
    for group in single_echo.values():
        slices, n_left_out = _combine_single_echo(group)
        n_skipped += n_left_out
        if slices:
            accepted.append(slices)
    return accepted, n_skipped


def _combine_single_echo(group: list[list[_Image]]) -> tuple[list[_Slice], int]:
    """Combine one-echo series of one study and geometry (one series per echo).

    Returns:
        The slices of the multi-echo set (empty when there is none or it is ambiguous) and
        the number of series or sets skipped.
    """
    positions = _positions([im for series in group for im in series])
    good_ids = {id(im) for p in positions if _n_echo_times(p) >= MIN_ECHOES for im in p}
    members = [s for s in group if all(id(im) in good_ids for im in s)]
    for series in group:
        if not any(series is m for m in members):
            _skip(series[0].series_name, f"one echo time and no set of >= {MIN_ECHOES} such series")
    n_skipped = len(group) - len(members)
    if not members:
        return [], n_skipped
    member_ids = {id(im) for s in members for im in s}
    kept = [[im for im in p if id(im) in member_ids] for p in positions]
    names = ", ".join(sorted({s[0].series_name for s in members}))
    slices = _echo_slices([p for p in kept if p], f"{len(members)} one-echo series ({names})")
    return slices, n_skipped + (0 if slices else 1)


# --------------------------------------------------------------------------- subjects


def _subject_order(patient: str) -> str:
    return hashlib.sha256(patient.encode("utf-8")).hexdigest()


def _visit_order(image: _Image) -> tuple[bool, str, str, str]:
    """Sort key of a study among its patient's: by date and time, undated last."""
    return (not image.study_date, image.study_date, image.study_time, image.study_uid)


def _locate(slices: list[_Slice]) -> tuple[list[int], list[str], str | None]:
    """Order one subject's slices base to apex and label them.

    Returns:
        The order (indices into ``slices``), one location per ordered slice, and why the
        locations are unknown (``None`` when they are known or there are not three positions).
    """
    first = [s.images[0] for s in slices]
    normals = np.array([im.normal for im in first])
    reference = normals[0]
    cos_apex = float(reference @ APEX_DIRECTION_LPS)
    parallel = bool(np.all(np.abs(normals @ reference) >= _MIN_COS_PARALLEL))
    why = None
    if not parallel:
        why = "slices are not parallel"
    elif abs(cos_apex) < _MIN_COS_APEX:
        why = "the slice normal is nearly perpendicular to the long axis direction"
    if why is None:
        depth = np.array([np.dot(im.position_mm, reference) for im in first]) * np.sign(cos_apex)
    else:
        depth = np.array([im.centre_mm @ APEX_DIRECTION_LPS for im in first])
    order = [int(i) for i in np.argsort(depth, kind="stable")]
    sorted_depth = depth[order]
    position_index = np.concatenate([[0], np.cumsum(np.diff(sorted_depth) > SAME_POSITION_MM)])
    if why is None and position_index[-1] == 2:
        names = ("base", "mid", "apex")
        return order, [names[int(i)] for i in position_index], None
    return order, [""] * len(order), why


def _check_shapes(groups: list[tuple[SubjectKey, list[_Slice]]], root: Path) -> None:
    """Refuse slices of differing echo count or matrix; never resample or pad."""
    ref_key, ref = groups[0][0], groups[0][1][0]
    for key, slices in groups:
        for s in slices:
            if s.shape != ref.shape:
                e, h, w = s.shape
                e0, h0, w0 = ref.shape
                raise InputError(
                    f"{root}: subject {key.subject_id} visit {key.visit} ({s.series_name}) has "
                    f"{e} echoes of {h}x{w} pixels but subject {ref_key.subject_id} visit "
                    f"{ref_key.visit} ({ref.series_name}) has {e0} echoes of {h0}x{w0} (after "
                    "reorientation); every slice of one file must have the same echo count and "
                    "matrix (nothing is resampled or padded): import them into separate files, "
                    "select series by description, or keep the scanner's view (--no-reorient)"
                )


def _log_views(key: SubjectKey, slices: list[_Slice]) -> None:
    """Log once per series what reorientation did, as a WARNING where it fell short."""
    views = {(s.series_name, s.view.description): s.view for s in slices}
    for (name, description), view in views.items():
        oblique = view.residual_deg > MAX_RESIDUAL_DEG
        level = logging.WARNING if oblique or view.why_kept else logging.INFO
        if view is _SCANNER_VIEW:
            level = logging.INFO
        extra = (
            f"; more than {MAX_RESIDUAL_DEG:g} degrees: no 90-degree step brings this oblique "
            "plane to the standard view"
            if oblique
            else ""
        )
        log.log(level, "%s visit %d, %s: %s%s", key.subject_id, key.visit, name, description, extra)


# --------------------------------------------------------------------------- pixels


def _check_decodable(slices: list[_Slice]) -> None:
    """Refuse, before any pixel data is read, images whose transfer syntax has no decoder.

    Raises:
        InputError: Naming the first file, the transfer syntax and how many images use it.
    """
    by_syntax: dict[str, list[_Image]] = defaultdict(list)
    for s in slices:
        for im in s.images:
            by_syntax[im.transfer_syntax].append(im)
    for syntax, images in by_syntax.items():
        uid = UID(syntax)
        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            hint = "pydicom has no decoder for it"
        else:
            if decoder.is_available:
                continue
            missing = "; ".join(decoder.missing_dependencies)
            hint = f"install a decoder (pip install 'cmrseg[dicom]'; pydicom: {missing})"
        raise InputError(
            f"{_paths(images, 1)}: transfer syntax {uid.name} ({uid}) cannot be decoded: {hint}; "
            f"{len(images)} image(s) to import use it, nothing was written"
        )


def _pixels(image: _Image, view: _View) -> np.ndarray:
    """Read one image as float32 ``[H, W]`` in ``view``: stored * slope + intercept."""
    try:
        ds = pydicom.dcmread(image.path)
        stored = ds.pixel_array
    except Exception as err:  # decoder and file errors come in many types
        name = UID(image.transfer_syntax).name
        raise InputError(f"{image.path}: cannot read pixel data ({name}): {err}") from None
    if stored.shape != (image.rows, image.cols):
        raise InputError(
            f"{image.path}: pixel data of shape {stored.shape}, header says "
            f"{image.rows}x{image.cols}"
        )
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    values = stored.astype(np.float64) * slope + intercept
    if not np.isfinite(values).all():
        raise InputError(f"{image.path}: non-finite values after RescaleSlope/RescaleIntercept")
    if values.min() < 0:
        raise InputError(
            f"{image.path}: negative magnitude {values.min():g} after rescaling (RescaleSlope "
            f"{slope:g}, RescaleIntercept {intercept:g}); magnitude images must be >= 0 and "
            "are not clipped"
        )
    return view.apply(values.astype(np.float32))


def _slice_reader(slices: list[_Slice]) -> Callable[[int], np.ndarray]:
    """Read slice ``i`` as float32 ``[E, H, W]`` in its view, one image file at a time."""

    def read(i: int) -> np.ndarray:
        with disable_value_validation():
            return np.stack([_pixels(im, slices[i].view) for im in slices[i].images])

    return read


# --------------------------------------------------------------------------- public API


def import_dicom(
    root: str | os.PathLike[str],
    *,
    series_description: str | None = None,
    visit: int | None = None,
    reorient: bool = True,
    progress: bool = True,
) -> DicomImport:
    """Find the multi-echo GRE series under ``root`` and turn them into a pseudonymized stack.

    The rules are those of the module docstring; ``root`` is only read.

    Args:
        root: Folder searched recursively for DICOM files.
        series_description: Optional regular expression; only images whose SeriesDescription
            it matches (``re.search``, case-insensitive) are considered, e.g. to leave out a
            liver T2* series of the same study.
        visit: Import only this visit (1-based, by study date) of every patient; ``None``
            imports all visits.
        reorient: Turn slices into the standard short-axis view; ``False`` keeps the
            scanner's view.
        progress: Show tqdm progress bars (on a terminal).

    Returns:
        The stack (the visits of one subject together in visit order, each base to apex),
        the key mapping, per-slice visit, field strength and reorientation, and the number
        of skipped series.

    Raises:
        InputError: ``root`` is not a folder or holds no files, ``series_description`` is
            not a valid regular expression, ``visit`` is not >= 1, ``root`` holds no
            multi-echo series (or none of visit ``visit``), a series lacks echoes at a
            position, its series differ in echo count or matrix, or an image cannot be
            decoded or read or is negative after rescaling.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    if visit is not None and visit < 1:
        raise InputError(f"visit {visit}: visits are numbered from 1")
    try:
        pattern = None if series_description is None else re.compile(series_description, re.I)
    except re.error as err:
        raise InputError(f"series description {series_description!r}: {err}") from None
    with disable_value_validation():  # pydicom's validation warnings quote header values
        scan = _scan(folder, progress, pattern)
    if scan.n_files == 0:
        raise InputError(f"{folder}: no files in this folder or below")
    for name, reasons in sorted(scan.skipped.items()):
        counts = {r: reasons.count(r) for r in reasons}
        log.info(
            "left out images of %s: %s", name, "; ".join(f"{r} ({n})" for r, n in counts.items())
        )
    accepted, n_skipped = _multi_echo_slices(_unique(scan.images))
    n_skipped += len(set(scan.skipped) - {im.series_name for im in scan.images})
    if not accepted:
        raise InputError(
            f"{folder}: no multi-echo series found in {scan.n_files} files "
            f"({len(scan.images)} usable MR magnitude images); a multi-echo series needs at least "
            f"{MIN_ECHOES} distinct echo times at every slice position"
        )

    by_study: dict[tuple[str, str], list[_Slice]] = defaultdict(list)
    for series in accepted:
        first = series[0].images[0]
        by_study[(first.patient, first.study_uid)].extend(series)
    patients = sorted({patient for patient, _ in by_study}, key=_subject_order)
    groups: list[tuple[SubjectKey, list[_Slice]]] = []
    locations: list[str] = []
    for number, patient in enumerate(patients, start=1):
        subject_id = f"S{number:04d}"
        studies = [by_study[key] for key in by_study if key[0] == patient]
        studies.sort(key=lambda slices: _visit_order(slices[0].images[0]))
        if len(studies) > 1:
            log.info("%s: %d visits (studies), numbered by study date", subject_id, len(studies))
        if visit is not None and visit > len(studies):
            log.info("%s: left out, %d visit(s) and no visit %d", subject_id, len(studies), visit)
        for v, slices in enumerate(studies, start=1):
            if visit is not None and v != visit:
                continue
            first = slices[0].images[0]
            key = SubjectKey(subject_id, v, first.patient_id, first.study_uid, first.study_date)
            order, labels, why = _locate(slices)
            if why is not None:
                log.info("%s visit %d: slice locations unknown: %s", subject_id, v, why)
            ordered = [slices[i] for i in order]
            for s in ordered:
                s.view = _standard_view(s.images[0].orientation) if reorient else _SCANNER_VIEW
            _log_views(key, ordered)
            groups.append((key, ordered))
            locations.extend(labels)
    if not groups:
        raise InputError(f"{folder}: no patient has a visit {visit} (by study date)")
    _check_shapes(groups, folder)

    slices = [s for _, group in groups for s in group]
    _check_decodable(slices)
    images = SliceSource((len(slices), *slices[0].shape), _slice_reader(slices))
    stack = EchoStack(
        images=images,
        te_ms=np.array([[im.te_ms for im in s.images] for s in slices], dtype=np.float32),
        subject_id=[key.subject_id for key, group in groups for _ in group],
        slice_location=locations,
        pixel_spacing_mm=np.array([s.spacing_mm for s in slices], dtype=np.float32),
        phase_encoding_axis=np.array([s.phase_axis for s in slices], dtype=np.int8),
        field_strength_t=np.array([s.field_strength_t for s in slices], dtype=np.float32),
    )
    log.info(
        "imported %d slices of %d subjects, %d visits (%d echoes of %d x %d pixels); "
        "%d series skipped",
        len(slices),
        len({key.subject_id for key, _ in groups}),
        len(groups),
        *images.shape[1:],
        n_skipped,
    )
    return DicomImport(
        stack=stack,
        keys=[key for key, _ in groups],
        visit=np.array([key.visit for key, group in groups for _ in group], dtype=np.int16),
        view=[s.view.description for s in slices],
        n_series_skipped=n_skipped,
    )


def write_key_file(path: str | os.PathLike[str], keys: Sequence[SubjectKey]) -> None:
    """Write the pseudonym mapping as CSV, atomically.

    Columns ``subject_id,visit,patient_id,study_instance_uid,study_date``, one row per
    imported subject and visit.

    Args:
        path: Destination; it holds identifiers, so keep it apart from the data.
        keys: The mapping from :func:`import_dicom`.
    """
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(_KEY_FILE_COLUMNS)
        for key in keys:
            writer.writerow(
                (key.subject_id, key.visit, key.patient_id, key.study_instance_uid, key.study_date)
            )
