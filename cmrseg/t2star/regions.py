"""Myocardial regions for T2*: the wall core, eroded away from blood along the phase-encoding axis.

Sectors, AHA segments and the septal ROI are geometry shared with the data code and live in
:mod:`cmrseg.core.geometry`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.morphology import disk

from cmrseg.core.geometry import as_label_image
from cmrseg.core.labels import MYOCARDIUM

__all__ = ["core_erosion_px", "wall_core_mask"]


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
