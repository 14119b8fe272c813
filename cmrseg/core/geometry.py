"""Short-axis LV geometry on label images: centroid, angles, sectors, AHA segments, septal ROI.

Numpy only. Geometry follows the echo-stack contract (section 2). Angles are measured
counterclockwise *as displayed* (row 0 at the top) around the LV centroid (blood pool and
myocardium): ``angle = atan2(-(row - row0), col - col0)``, in degrees in ``[0, 360)``. With the
anterior right-ventricular insertion point at angle ``a``, sector 1 spans ``[a - 60, a)`` (the 60
degrees clockwise of it), sector 2 ``[a, a + 60)`` and numbers grow counterclockwise. In the
standard orientation (anterior up, septum on the image left) the insertion point lies near 120
degrees, so sector 1 is anterior, 2 anteroseptal, 3 inferoseptal, 4 inferior, 5 inferolateral and
6 anterolateral.
"""

from __future__ import annotations

import numpy as np

from cmrseg.core.labels import BLOOD_POOL, MYOCARDIUM

__all__ = [
    "N_SECTORS",
    "aha_segment_map",
    "as_label_image",
    "displayed_angle_deg",
    "estimate_rv_insertion",
    "lv_centroid",
    "sector_map",
    "septal_roi_mask",
]

#: Sectors of 60 degrees per slice (contract section 2).
N_SECTORS = 6
_AHA_OFFSET = {"base": 0, "mid": 6}


def as_label_image(labels: np.ndarray) -> np.ndarray:
    """``labels`` as an array, checked to be one ``[H, W]`` label image."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [H, W], got shape {labels.shape}")
    return labels


def lv_centroid(labels: np.ndarray) -> tuple[float, float]:
    """Centroid ``(row, col)`` in pixels of the LV: blood pool and myocardium together.

    Raises:
        ValueError: The labels hold no LV pixel.
    """
    labels = as_label_image(labels)
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
    labels = as_label_image(labels)
    rv_angle, center = _rv_angle_deg(labels, rv_insertion)
    offset = (displayed_angle_deg(labels.shape, center) - rv_angle) % 360.0
    sector = (np.floor(offset / 60.0).astype(int) + 1) % N_SECTORS + 1
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
    labels = as_label_image(labels)
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
    labels = as_label_image(labels)
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
    labels = as_label_image(labels)
    rv_angle, center = _rv_angle_deg(labels, rv_insertion)
    offset = (displayed_angle_deg(labels.shape, center) - rv_angle - 60.0 + 180.0) % 360.0 - 180.0
    return (labels == MYOCARDIUM) & (np.abs(offset) <= width_deg / 2.0)
