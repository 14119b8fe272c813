"""Myocardial regions of a short-axis slice: sectors, AHA segments, septal ROI, wall core.

Geometry follows the echo-stack contract (section 2). Angles are measured counterclockwise
*as displayed* (row 0 at the top) around the LV centroid (blood pool and myocardium):
``angle = atan2(-(row - row0), col - col0)``, in degrees in ``[0, 360)``. With the anterior
right-ventricular insertion point at angle ``a``, sector 1 spans ``[a - 60, a)`` (the 60 degrees
clockwise of it), sector 2 ``[a, a + 60)`` and numbers grow counterclockwise. In the standard
orientation (anterior up, septum on the image left) the insertion point lies near 120 degrees,
so sector 1 is anterior, 2 anteroseptal, 3 inferoseptal, 4 inferior, 5 inferolateral and
6 anterolateral.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.morphology import disk

__all__ = [
    "BLOOD_POOL",
    "MYOCARDIUM",
    "aha_segment_map",
    "core_erosion_px",
    "displayed_angle_deg",
    "estimate_rv_insertion",
    "lv_centroid",
    "sector_map",
    "septal_roi_mask",
    "wall_core_mask",
]

BLOOD_POOL = 1
MYOCARDIUM = 2
_N_SECTORS = 6
_AHA_OFFSET = {"base": 0, "mid": 6}


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [H, W], got shape {labels.shape}")
    return labels


def lv_centroid(labels: np.ndarray) -> tuple[float, float]:
    """Centroid ``(row, col)`` in pixels of the LV: blood pool and myocardium together.

    Raises:
        ValueError: The labels hold no LV pixel.
    """
    labels = _check_labels(labels)
    rows, cols = np.nonzero((labels == BLOOD_POOL) | (labels == MYOCARDIUM))
    if rows.size == 0:
        raise ValueError("labels hold no LV (blood pool or myocardium) pixel")
    return float(rows.mean()), float(cols.mean())


def displayed_angle_deg(shape: tuple[int, int], center: tuple[float, float]) -> np.ndarray:
    """Counterclockwise-as-displayed angle ``[H, W]`` (degrees, ``[0, 360)``) around ``center``."""
    rows, cols = np.indices(shape, dtype=float)
    return _angle_deg(rows, cols, center)


def _angle_deg(rows: np.ndarray, cols: np.ndarray, center: tuple[float, float]) -> np.ndarray:
    return np.degrees(np.arctan2(-(rows - center[0]), cols - center[1])) % 360.0


def _rv_angle_deg(labels: np.ndarray, rv_insertion: tuple[float, float]) -> tuple[float, tuple]:
    row, col = (float(v) for v in rv_insertion)
    if not (np.isfinite(row) and np.isfinite(col)):
        raise ValueError("rv_insertion is NaN: no reference point for sectors")
    center = lv_centroid(labels)
    if np.hypot(row - center[0], col - center[1]) < 1e-6:
        raise ValueError("rv_insertion coincides with the LV centroid: no direction")
    return float(_angle_deg(np.array(row), np.array(col), center)), center


def sector_map(labels: np.ndarray, rv_insertion: tuple[float, float]) -> np.ndarray:
    """Six 60-degree myocardial sectors anchored on the anterior RV insertion point.

    Args:
        labels: ``[H, W]`` with 0 background, 1 blood pool, 2 myocardium.
        rv_insertion: ``(row, col)`` of the anterior RV insertion point in pixels.

    Returns:
        ``uint8 [H, W]``: sector 1..6 on myocardium pixels, 0 elsewhere.

    Raises:
        ValueError: No LV, or ``rv_insertion`` is NaN or on the centroid.
    """
    labels = _check_labels(labels)
    rv_angle, center = _rv_angle_deg(labels, rv_insertion)
    offset = (displayed_angle_deg(labels.shape, center) - rv_angle) % 360.0
    sector = (np.floor(offset / 60.0).astype(int) + 1) % _N_SECTORS + 1
    return np.where(labels == MYOCARDIUM, sector, 0).astype(np.uint8)


def aha_segment_map(
    labels: np.ndarray, rv_insertion: tuple[float, float], slice_location: str
) -> np.ndarray:
    """AHA 16-segment numbers of one short-axis slice.

    Basal slices get segments 1-6 and mid slices 7-12, the six sectors of :func:`sector_map`.
    Apical slices get four 90-degree segments, 13 anterior, 14 septal, 15 inferior and
    16 lateral, anchored so that the septal segment is centred on the middle of the septum
    (``a + 60`` degrees, the 2|3 boundary of the six sectors): segment 14 spans
    ``[a + 15, a + 105)`` and numbers grow counterclockwise.

    Args:
        labels: ``[H, W]`` with 0 background, 1 blood pool, 2 myocardium.
        rv_insertion: ``(row, col)`` of the anterior RV insertion point in pixels.
        slice_location: ``base``, ``mid`` or ``apex``.

    Returns:
        ``uint8 [H, W]``: 0 outside the myocardium, 1..16 inside.

    Raises:
        ValueError: Unknown ``slice_location``, no LV, or no usable ``rv_insertion``.
    """
    labels = _check_labels(labels)
    if slice_location in _AHA_OFFSET:
        sectors = sector_map(labels, rv_insertion)
        return np.where(sectors > 0, sectors + _AHA_OFFSET[slice_location], 0).astype(np.uint8)
    if slice_location != "apex":
        raise ValueError(f"slice_location must be base, mid or apex, got {slice_location!r}")
    rv_angle, center = _rv_angle_deg(labels, rv_insertion)
    offset = (displayed_angle_deg(labels.shape, center) - rv_angle - 15.0) % 360.0
    segment = 13 + (np.floor(offset / 90.0).astype(int) + 1) % 4
    return np.where(labels == MYOCARDIUM, segment, 0).astype(np.uint8)


def estimate_rv_insertion(labels: np.ndarray, angle_deg: float) -> tuple[float, float] | None:
    """Guess the anterior RV insertion point when it is unknown, from the orientation alone.

    The labels hold no RV, so the point is taken where a ray from the LV centroid at
    ``angle_deg`` (counterclockwise as displayed; about 120 degrees in the standard
    orientation, anterior up and septum left) leaves the myocardium. It is only as good as
    the orientation assumption; callers should log that it was used.

    Args:
        labels: ``[H, W]`` with 0 background, 1 blood pool, 2 myocardium.
        angle_deg: Expected direction of the insertion point from the LV centroid.

    Returns:
        ``(row, col)`` in pixels, or ``None`` when the labels hold no myocardium on that ray.
    """
    labels = _check_labels(labels)
    if not np.any(labels == MYOCARDIUM):
        return None
    row0, col0 = lv_centroid(labels)
    theta = np.radians(angle_deg)
    radii = np.arange(0.0, float(np.hypot(*labels.shape)), 0.25)
    rows = row0 - radii * np.sin(theta)
    cols = col0 + radii * np.cos(theta)
    r_idx, c_idx = np.rint(rows).astype(int), np.rint(cols).astype(int)
    inside = (r_idx >= 0) & (r_idx < labels.shape[0]) & (c_idx >= 0) & (c_idx < labels.shape[1])
    hits = np.flatnonzero(inside)[labels[r_idx[inside], c_idx[inside]] == MYOCARDIUM]
    if hits.size == 0:
        return None
    return float(rows[hits[-1]]), float(cols[hits[-1]])


def septal_roi_mask(
    labels: np.ndarray, rv_insertion: tuple[float, float], width_deg: float
) -> np.ndarray:
    """Clinical full-thickness mid-septal ROI: all myocardium within an angular window.

    The window of ``width_deg`` is centred on the middle of the septum, ``a + 60`` degrees
    (the boundary of sectors 2 and 3). The septum lies between two blood pools but runs along
    the phase-encoding direction in the standard orientation (rows), so its blurring is mostly
    along the wall rather than across it.

    Returns:
        Boolean ``[H, W]``.
    """
    labels = _check_labels(labels)
    rv_angle, center = _rv_angle_deg(labels, rv_insertion)
    offset = (displayed_angle_deg(labels.shape, center) - rv_angle - 60.0 + 180.0) % 360.0 - 180.0
    return (labels == MYOCARDIUM) & (np.abs(offset) <= width_deg / 2.0)


def core_erosion_px(
    erosion_mm: float, pixel_spacing_mm: np.ndarray | tuple[float, float], phase_encoding_axis: int
) -> int:
    """Wall-core erosion in pixels of one slice from a physical distance.

    The distance is divided by the pixel spacing along the phase-encoding axis (row spacing
    for axis 0, column spacing for axis 1, their mean when unknown: -1) and rounded half up;
    any erosion above 0 mm removes at least 1 pixel. E.g. 3 mm gives 4 px at 0.7 mm, 2 px at
    1.4 mm and 1 px at 2.8 mm.

    Args:
        erosion_mm: Distance removed from each border in mm (>= 0).
        pixel_spacing_mm: ``[2]`` (row, column) spacing of the slice in mm.
        phase_encoding_axis: 0 (rows), 1 (columns) or -1 (unknown).

    Returns:
        Pixels for :func:`wall_core_mask`.

    Raises:
        ValueError: Negative or non-finite distance, spacing not two finite values > 0, or
            an axis other than 0, 1, -1.
    """
    if not (math.isfinite(erosion_mm) and erosion_mm >= 0):
        raise ValueError(f"erosion_mm must be finite and >= 0, got {erosion_mm}")
    spacing = np.asarray(pixel_spacing_mm, dtype=float)
    if spacing.shape != (2,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"pixel_spacing_mm must be two finite values > 0, got {spacing.tolist()}")
    if phase_encoding_axis not in (0, 1, -1):
        raise ValueError(f"phase_encoding_axis must be 0, 1 or -1, got {phase_encoding_axis}")
    if erosion_mm == 0:
        return 0
    step_mm = spacing.mean() if phase_encoding_axis == -1 else spacing[phase_encoding_axis]
    # half up (not Python's half-to-even); the tolerance keeps e.g. 3.0 / 1.2 at 2.5 -> 3
    return max(1, math.floor(erosion_mm / step_mm + 0.5 + 1e-9))


def wall_core_mask(
    labels: np.ndarray, erosion_px: int, phase_encoding_axis: int = -1
) -> np.ndarray:
    """Myocardium eroded away from its borders, where partial volume with blood is worst.

    The erosion is in pixels; :func:`core_erosion_px` converts a distance in mm per slice.
    Blurring is worst along the phase-encoding axis, so with a known axis the erosion is a
    line of ``2 * erosion_px + 1`` pixels along it only (walls crossing that axis lose
    ``erosion_px`` pixels on each side; walls along it keep their full thickness). With an
    unknown axis (-1) the erosion uses a disk of radius ``erosion_px``.

    Args:
        labels: ``[H, W]`` with 0 background, 1 blood pool, 2 myocardium.
        erosion_px: Pixels removed from each border (0 returns the myocardium).
        phase_encoding_axis: 0 (rows), 1 (columns) or -1 (unknown).

    Returns:
        Boolean ``[H, W]``.
    """
    labels = _check_labels(labels)
    wall = labels == MYOCARDIUM
    if erosion_px < 0:
        raise ValueError(f"erosion_px must be >= 0, got {erosion_px}")
    if erosion_px == 0:
        return wall
    if phase_encoding_axis == 0:
        structure = np.ones((2 * erosion_px + 1, 1), dtype=bool)
    elif phase_encoding_axis == 1:
        structure = np.ones((1, 2 * erosion_px + 1), dtype=bool)
    elif phase_encoding_axis == -1:
        structure = disk(erosion_px).astype(bool)
    else:
        raise ValueError(f"phase_encoding_axis must be 0, 1 or -1, got {phase_encoding_axis}")
    return ndimage.binary_erosion(wall, structure=structure, border_value=0)
