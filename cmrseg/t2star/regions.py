"""Myocardial regions for T2*: the wall core, and the RV insertion point found in the image.

The wall core is eroded away from blood along the phase-encoding axis; the anterior RV insertion
point is estimated from the image when the file does not mark it.

Sectors, AHA segments and the septal ROI are geometry shared with the data code and live in
:mod:`cmrseg.core.geometry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.morphology import disk

from cmrseg.core.geometry import as_label_image, displayed_angle_deg, lv_centroid
from cmrseg.core.labels import BLOOD_POOL, MYOCARDIUM

__all__ = [
    "OFF_CAVITY_ROI_SUFFIX",
    "RvInsertionEstimate",
    "core_erosion_px",
    "estimate_rv_insertion_from_image",
    "off_cavity_lines_mask",
    "wall_core_mask",
]

#: Ends the ROI part of a row's ``method`` (``estimator/roi/model``) when the region is the wall
#: on phase-encoding lines off the cavity (:func:`off_cavity_lines_mask`), e.g. ``core_off_cavity``
#: (a short wall's row, which combines both ROIs, says ``core+core_off_cavity``).
OFF_CAVITY_ROI_SUFFIX = "_off_cavity"


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
    labels = as_label_image(labels)
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


def off_cavity_lines_mask(labels: np.ndarray, phase_encoding_axis: int) -> np.ndarray:
    """Pixels on phase-encoding lines that cross no LV blood pool pixel.

    Motion ghosts of the bright blood spread along the whole phase-encoding line that holds it,
    not only next to it: on the phantom, the wall's pixel fits on lines through the cavity read
    much longer than the others (``hard``, true 10-20 ms: +21% to +33% against +7%) whatever
    their distance to the blood along the line. With phase encoded along the rows (axis 0)
    the lines are image columns.

    Args:
        labels: ``[H, W]`` with 0 background, 1 blood pool, 2 myocardium.
        phase_encoding_axis: 0 (rows) or 1 (columns).

    Returns:
        Boolean ``[H, W]``, constant along the phase-encoding axis.

    Raises:
        ValueError: An axis other than 0 or 1 (the lines are unknown).
    """
    labels = as_label_image(labels)
    if phase_encoding_axis not in (0, 1):
        raise ValueError(f"phase_encoding_axis must be 0 or 1, got {phase_encoding_axis}")
    crossed = (labels == BLOOD_POOL).any(axis=phase_encoding_axis, keepdims=True)
    return np.broadcast_to(~crossed, labels.shape).copy()


@dataclass(frozen=True)
class RvInsertionEstimate:
    """The anterior RV insertion point found in the image.

    Attributes:
        point: ``(row, col)`` in pixels, on the LV epicardium.
        confidence: 0..1: 1 - (second-longest contact arc / longest), 0 when the longest arc is
            outside the plausible ``[60, 220]`` degrees.
        contact_arc_deg: Angular extent of the RV cavity's contact with the LV epicardium.
    """

    point: tuple[float, float]
    confidence: float
    contact_arc_deg: float


#: Plausible angular extent (degrees) of the septum covered by the RV cavity.
_RV_ARC_DEG = (60.0, 220.0)
#: Angular bin (degrees) of the epicardial radius profile; contact gaps up to _RV_GAP_DEG close.
_RV_BIN_DEG = 2.0
_RV_GAP_DEG = 10.0


def estimate_rv_insertion_from_image(
    images: np.ndarray, labels: np.ndarray, blood_fraction: float = 0.5, contact_px: int = 6
) -> RvInsertionEstimate | None:
    """Find the anterior RV insertion point from the RV blood pool beside the septum.

    Blood is bright on the first and the last echo alike (long T2*): pixels outside the LV
    brighter than ``blood_fraction`` of the LV blood pool's median on both echoes, opened by a
    disk of radius 2 px (removes thin bright layers such as epicardial fat and ghosts), are the
    candidate blood. The angles around the LV centroid where such blood lies within
    ``contact_px`` of the LV epicardium (its radius taken per 2-degree bin), gaps up to 10
    degrees closed, form arcs; the RV cavity along the septum is the longest, and a second arc
    of comparable length (another bright structure against the heart) lowers the confidence.
    Sector numbers grow counterclockwise from the anterior point across the septum (contract
    section 2), so the anterior insertion point is the clockwise end of that arc, placed on the
    epicardium. No RV (apex, a cut-off field of view) or a fragmented contact gives a low
    confidence or ``None``.

    Args:
        images: Magnitude images ``[E, H, W]``.
        labels: ``[H, W]`` with 0 background, 1 blood pool, 2 myocardium.
        blood_fraction: Threshold on both echoes as a share of the LV blood pool's median.
        contact_px: Largest gap in pixels between the epicardium and the RV cavity.

    Returns:
        :class:`RvInsertionEstimate`, or ``None`` without an LV blood pool, myocardium or any
        bright region touching the epicardium.
    """
    labels = as_label_image(labels)
    wall, pool = labels == MYOCARDIUM, labels == BLOOD_POOL
    if not wall.any() or not pool.any() or images.shape[1:] != labels.shape:
        return None
    early, late = images[0].astype(float), images[-1].astype(float)
    lv = ndimage.binary_dilation(wall | pool)
    blood = (
        (early > blood_fraction * np.median(early[pool]))
        & (late > blood_fraction * np.median(late[pool]))
        & ~lv
    )
    blood = ndimage.binary_opening(blood, structure=disk(2).astype(bool))
    center = lv_centroid(labels)
    angle = displayed_angle_deg(labels.shape, center)
    rows, cols = np.indices(labels.shape)
    radius = np.hypot(rows - center[0], cols - center[1])
    n_bins = round(360.0 / _RV_BIN_DEG)
    bins = (angle / _RV_BIN_DEG).astype(int) % n_bins
    epicardium = np.zeros(n_bins)
    np.maximum.at(epicardium, bins[wall], radius[wall])
    near = blood & (radius <= epicardium[bins] + contact_px) & (radius > epicardium[bins] - 1)
    if not near.any():
        return None
    contact = np.zeros(n_bins, dtype=bool)
    contact[np.unique(bins[near])] = True
    gap = round(_RV_GAP_DEG / _RV_BIN_DEG)
    tiled = ndimage.binary_closing(np.tile(contact, 3), structure=np.ones(2 * gap + 1))
    contact = tiled[n_bins : 2 * n_bins]
    if contact.all():
        return None
    shift = int(np.flatnonzero(~contact)[0])  # start the circle on a gap: runs do not wrap
    runs, n_runs = ndimage.label(np.roll(contact, -shift))
    lengths = np.bincount(runs.ravel())[1:] * _RV_BIN_DEG
    longest = int(np.argmax(lengths))
    first_bin = (int(np.flatnonzero(runs == longest + 1)[0]) + shift) % n_bins
    arc = float(lengths[longest])
    second = float(np.sort(lengths)[-2]) if n_runs > 1 else 0.0
    plausible = _RV_ARC_DEG[0] <= arc <= _RV_ARC_DEG[1]
    confidence = (1.0 - second / arc) if plausible else 0.0
    theta = np.radians(first_bin * _RV_BIN_DEG)
    r = float(epicardium[first_bin])
    point = (center[0] - r * np.sin(theta), center[1] + r * np.cos(theta))
    return RvInsertionEstimate((float(point[0]), float(point[1])), float(confidence), arc)
