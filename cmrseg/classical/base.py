"""What every classical segmenter shares: the result type, input checks and the label image.

A classical segmenter is a plain function ``segment(images, te_ms, pixel_spacing_mm, params)``
from one slice's echoes to a label image in the echo-stack coding. Input it cannot segment
(an all-zero slice, a single echo, a slice without an LV) gives an empty label image and a short
reason, never an exception; only malformed arguments (wrong shapes) raise ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmrseg.core.labels import BACKGROUND, BLOOD_POOL, MYOCARDIUM

__all__ = [
    "EMPTY_SLICE",
    "NON_FINITE",
    "NO_LV_FOUND",
    "NO_MYOCARDIUM",
    "TOO_FEW_ECHOES",
    "SegmentationResult",
    "check_slice",
    "empty_result",
    "labels_from_masks",
    "require",
]

#: Reasons for an empty prediction.
EMPTY_SLICE = "empty_slice"
NON_FINITE = "non_finite_image"
TOO_FEW_ECHOES = "too_few_echoes"
NO_LV_FOUND = "no_lv_found"
NO_MYOCARDIUM = "no_myocardium_found"


@dataclass(frozen=True)
class SegmentationResult:
    """Labels of one slice and why they are empty, if they are.

    Attributes:
        labels: uint8 ``[H, W]``: 0 background, 1 LV blood pool, 2 LV myocardium.
        reason: ``""`` when an LV was segmented, else a short reason (``no_lv_found``...).
    """

    labels: np.ndarray
    reason: str

    @property
    def found(self) -> bool:
        """Whether the slice holds a segmented myocardium."""
        return self.reason == ""


def require(ok: bool, name: str, problem: str) -> None:
    """Raise ``ValueError("<name> <problem>")`` unless ``ok`` (parameter validation)."""
    if not ok:
        raise ValueError(f"{name} {problem}")


def empty_result(shape: tuple[int, int], reason: str) -> SegmentationResult:
    """An all-background ``[H, W]`` prediction with its reason."""
    return SegmentationResult(np.full(shape, BACKGROUND, np.uint8), reason)


def check_slice(
    images: np.ndarray, te_ms: np.ndarray, pixel_spacing_mm: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Check one slice's arrays; say why it cannot be segmented if so.

    Args:
        images: Magnitude ``[E, H, W]``.
        te_ms: Echo times ``[E]`` in ms.
        pixel_spacing_mm: (row, column) spacing ``[2]`` in mm.

    Returns:
        ``images`` as float64, ``te_ms`` and the spacing as float arrays, and ``""`` or the
        reason for an empty prediction (single echo, non-finite images, an all-zero first
        echo).

    Raises:
        ValueError: The shapes do not fit together, or the spacing is not positive.
    """
    images = np.asarray(images, dtype=np.float64)
    te_ms = np.asarray(te_ms, dtype=np.float64)
    spacing = np.asarray(pixel_spacing_mm, dtype=np.float64)
    require(images.ndim == 3, "images", f"must be [E, H, W], got shape {images.shape}")
    require(te_ms.shape == images.shape[:1], "te_ms", f"must be [{images.shape[0]}]")
    require(spacing.shape == (2,), "pixel_spacing_mm", f"must be [2], got {spacing.shape}")
    require(bool(np.all(spacing > 0)), "pixel_spacing_mm", "must be positive")
    if images.shape[0] < 2:
        return images, te_ms, spacing, TOO_FEW_ECHOES
    if not np.all(np.isfinite(images)):
        return images, te_ms, spacing, NON_FINITE
    if not np.any(images[0] > 0):  # no signal where every tissue has the most
        return images, te_ms, spacing, EMPTY_SLICE
    return images, te_ms, spacing, ""


def labels_from_masks(blood_pool: np.ndarray, epicardium: np.ndarray) -> np.ndarray:
    """Label image from the blood pool and the filled epicardial contour (both boolean).

    Returns:
        uint8 ``[H, W]``: blood pool 1, the rest of the epicardial region 2, background 0.
    """
    labels = np.full(blood_pool.shape, BACKGROUND, np.uint8)
    labels[epicardium] = MYOCARDIUM
    labels[blood_pool] = BLOOD_POOL
    return labels
