"""Automatic LV localisation from the multi-echo contrast, shared by the classical segmenters.

Bright-blood multi-echo GRE: the LV blood pool has a long T2* (well over 100 ms) and keeps its
signal at late echoes, while the myocardium (T2* below 40 ms, a few ms when iron-loaded), the
liver, the spine and the fat lose much of theirs. The *blood map*, the mean late-echo image
weighted by its late/early ratio, is therefore brightest in the blood pools. The LV blood pool
is the round bright object nearest the image centre: a circular Hough transform on the edges of
the blood map, weighted by a Gaussian prior on the distance to the image centre and by the
brightness of the blood map inside each candidate circle, picks it (Luo et al. 2015 locate the
LV with a circular Hough transform on the blood pool; the centre prior is theirs too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.feature import canny
from skimage.transform import hough_circle, hough_circle_peaks

from cmrseg.classical.base import require

__all__ = [
    "EchoContrast",
    "LVLocation",
    "LocalizationParams",
    "echo_contrast",
    "locate",
    "locate_lv",
    "require_all",
]

#: Candidate circles scored beyond the Hough accumulator (peaks of the accumulator).
_N_CANDIDATES = 10
#: The Hough transform runs on a grid this many times coarser per axis (about 4x faster); its
#: centre error of a coarse pixel stays well inside any blood pool.
_HOUGH_STEP = 2


@dataclass(frozen=True)
class EchoContrast:
    """Normalized images of one slice derived from its echoes.

    Attributes:
        echoes: ``[E, H, W]`` each echo divided by the 99.5th percentile of the first echo.
        early: ``[H, W]`` the first echo, normalized.
        blood: ``[H, W]`` the blood map: mean late echo x clip(late / early, 0, 1), smoothed.
    """

    echoes: np.ndarray
    early: np.ndarray
    blood: np.ndarray


@dataclass(frozen=True)
class LVLocation:
    """A circle on the LV blood pool, in pixels.

    Attributes:
        row: Centre row.
        col: Centre column.
        radius: Radius.
        blood: Mean blood map inside half the radius (1 = the first echo's 99.5th percentile).
    """

    row: float
    col: float
    radius: float
    blood: float

    def disk(self, shape: tuple[int, int], fraction: float) -> np.ndarray:
        """Boolean ``[H, W]`` disk of ``fraction`` x the radius around the centre."""
        rows, cols = np.ogrid[: shape[0], : shape[1]]
        return np.hypot(rows - self.row, cols - self.col) <= fraction * self.radius


@dataclass(frozen=True)
class LocalizationParams:
    """The parameters of the LV localisation that every classical method shares.

    Attributes:
        late_echo_te_ms: Echoes at or after this TE (ms) form the late image of the blood map.
        smoothing_mm: Gaussian smoothing (SD, mm) of the blood map and the method's edge or wall
            images.
        lv_radius_mm: (smallest, largest) blood-pool radius (mm) searched by the Hough transform.
        center_prior_sd_mm: SD (mm) of the Gaussian prior on the LV's distance to the image centre.
        hough_edge_threshold: Canny high threshold on the blood map (1 = first-echo 99.5th pct).
        min_blood: Smallest mean blood map inside the located circle for it to count as an LV.
    """

    late_echo_te_ms: float
    smoothing_mm: float
    lv_radius_mm: tuple[float, float]
    center_prior_sd_mm: float
    hough_edge_threshold: float
    min_blood: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "lv_radius_mm", tuple(float(r) for r in self.lv_radius_mm))
        lo, hi = self.lv_radius_mm
        require(0 < lo < hi, "lv_radius_mm", f"must be (min, max) with 0 < min < max, got {lo, hi}")
        require_all(self, ("late_echo_te_ms", "smoothing_mm", "center_prior_sd_mm"), positive=True)
        require_all(self, ("hough_edge_threshold", "min_blood"), positive=False)


def require_all(params: object, names: Sequence[str], *, positive: bool) -> None:
    """Check that each named parameter is > 0 (``positive``) or >= 0 (``ValueError`` names it)."""
    for name in names:
        value = getattr(params, name)
        ok = value > 0 if positive else value >= 0
        require(ok, name, f"must be {'>' if positive else '>='} 0, got {value}")


def locate(
    images: np.ndarray, te_ms: np.ndarray, mm: float, params: LocalizationParams
) -> tuple[EchoContrast, LVLocation | None]:
    """Blood map of a slice and the LV found on it (``None``: no LV), by ``params``.

    Args:
        images: ``[E, H, W]`` magnitude, at least two echoes, not all zero.
        te_ms: ``[E]`` echo times in ms.
        mm: Pixel size in mm.
        params: The localisation parameters of a method.
    """
    contrast = echo_contrast(images, te_ms, params.late_echo_te_ms, params.smoothing_mm / mm)
    location = locate_lv(
        contrast.blood,
        (params.lv_radius_mm[0] / mm, params.lv_radius_mm[1] / mm),
        params.center_prior_sd_mm / mm,
        params.hough_edge_threshold,
        params.min_blood,
    )
    return contrast, location


def echo_contrast(
    images: np.ndarray, te_ms: np.ndarray, late_echo_te_ms: float, sigma_px: float
) -> EchoContrast:
    """Normalize the echoes and build the blood map.

    Args:
        images: ``[E, H, W]`` magnitude, at least two echoes, not all zero.
        te_ms: ``[E]`` echo times in ms.
        late_echo_te_ms: Echoes at or after this TE make the late image (the last echo when
            none is that late).
        sigma_px: Gaussian smoothing of the blood map in pixels.
    """
    scale = float(np.percentile(images[0], 99.5)) or float(images[0].max())
    echoes = images / scale
    late_idx = np.flatnonzero(te_ms >= late_echo_te_ms)
    late = echoes[late_idx].mean(axis=0) if late_idx.size else echoes[-1]
    early = echoes[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        persistence = np.clip(np.where(early > 0, late / early, 0.0), 0.0, 1.0)
    blood = ndimage.gaussian_filter(late * persistence, sigma_px)
    return EchoContrast(echoes=echoes, early=early, blood=blood)


def locate_lv(
    blood: np.ndarray,
    radius_px: tuple[float, float],
    center_prior_sd_px: float,
    edge_threshold: float,
    min_blood: float,
) -> LVLocation | None:
    """Find the LV blood pool as a bright circle near the image centre.

    Steps: Canny edges of the blood map; circular Hough transform over the radius range (step
    of one pixel); the strongest accumulator peaks are scored by
    ``accumulator x centre prior x mean blood map inside half the radius``.

    Args:
        blood: ``[H, W]`` blood map (:func:`echo_contrast`).
        radius_px: (smallest, largest) blood-pool radius in pixels.
        center_prior_sd_px: SD of the Gaussian prior on the distance to the image centre.
        edge_threshold: Canny high threshold on the blood map (low: half of it).
        min_blood: Smallest mean blood map inside the chosen circle for it to be an LV.

    Returns:
        The best circle, or ``None`` when no edge, no circle or no bright enough circle is found.
    """
    coarse = blood[_HOUGH_STEP // 2 :: _HOUGH_STEP, _HOUGH_STEP // 2 :: _HOUGH_STEP]
    edges = canny(
        coarse, sigma=1.0, low_threshold=0.5 * edge_threshold, high_threshold=edge_threshold
    )
    if not edges.any():
        return None
    lo, hi = (r / _HOUGH_STEP for r in radius_px)
    radii = np.arange(max(int(np.floor(lo)), 1), int(np.ceil(hi)) + 1)
    # unnormalized: the count of edge pixels on a circle, so that a larger circle needs more
    # support but a small bright vessel (the aorta) does not beat the LV by a perfect outline
    accumulator = hough_circle(edges, radii, normalize=False)
    scores, cols, rows, found = hough_circle_peaks(
        accumulator, radii, total_num_peaks=_N_CANDIDATES, normalize=False
    )
    h, w = blood.shape
    best: LVLocation | None = None
    best_score = 0.0
    for score, c_row, c_col, c_radius in zip(scores, rows, cols, found, strict=True):
        row, col = (c_row + 0.5) * _HOUGH_STEP - 0.5, (c_col + 0.5) * _HOUGH_STEP - 0.5
        radius = float(c_radius * _HOUGH_STEP)
        prior = np.exp(-0.5 * ((row - h / 2) ** 2 + (col - w / 2) ** 2) / center_prior_sd_px**2)
        candidate = LVLocation(float(row), float(col), radius, 0.0)
        inside = float(blood[candidate.disk(blood.shape, 0.5)].mean())
        total = float(score) * prior * inside
        if inside >= min_blood and total > best_score:
            best = LVLocation(float(row), float(col), radius, inside)
            best_score = total
    return best
