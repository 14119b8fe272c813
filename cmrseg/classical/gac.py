"""Geodesic active contours for the LV myocardium, after Luo et al. 2015.

Reference: Y. Luo et al., Sci Rep 5:12438, 2015, doi:10.1038/srep12438 (myocardium
segmentation for T2* measurement in thalassemia major).

What the publication describes: the LV is located automatically using the multi-echo contrast
(the blood pool keeps its signal at late echoes while the iron-loaded myocardium darkens) and its
position near the image centre, with a circular Hough transform on the blood pool; morphological
operations clean the blood pool; geodesic active contours then delineate the endocardium and the
epicardium, and the myocardium lies between them. The full text was not available to us beyond
its introduction, so this implementation assumes:

1. Localisation: :func:`cmrseg.classical.localize.locate_lv` (blood map = mean late echo x its
   late/early ratio; Hough circle scored by a Gaussian centre prior and the blood inside it).
2. Active contours: scikit-image's morphological geodesic active contour (Marquez-Neila et al.
   2014), a fast morphological approximation of the GAC level-set flow of Caselles et al., run
   on a square window around the located LV. The stopping function is
   ``g = 1 / sqrt(1 + alpha * |grad|)`` (``|grad|``: Gaussian gradient magnitude), on the blood
   map for the endocardium and on the mean over echoes of the echoes' gradient magnitudes for the
   epicardium (the myocardium borders bright fat and blood at early echoes and grey mediastinum
   at late echoes when it is iron-loaded, so no single echo shows its whole outline).
3. Endocardium: the contour starts as a disk of ``endo_init_fraction`` x the Hough radius and
   inflates (balloon force) until it meets the blood pool's edge. It keeps only pixels whose
   blood map reaches ``endo_blood_fraction`` of that inside the located circle (at low SNR the
   contour otherwise leaks through the septum; the blood pool is what stays bright at late
   echoes). Then holes are filled and the convex hull taken, so papillary muscles and
   trabeculations count as blood pool as readers draw them (the phantom's reference does too).
4. Epicardium: the contour starts ``epi_init_mm`` outside the endocardium and inflates until the
   multi-echo edges stop it; the wall is then held between ``min_wall_mm`` and ``max_wall_mm``
   by morphological dilations of the endocardium (an anatomical bound the paper's "morphological
   operations" imply; without it the contour leaks into lung where the wall is as dark), holes
   are filled, and the myocardium is the epicardial region minus the blood pool.
5. No LV: no Hough circle whose inside is bright at late echoes (``min_blood``), or an
   endocardium outside the radius range, gives an empty prediction with ``no_lv_found``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.morphology import convex_hull_image
from skimage.segmentation import morphological_geodesic_active_contour

from cmrseg.classical.base import (
    NO_LV_FOUND,
    NO_MYOCARDIUM,
    SegmentationResult,
    check_slice,
    empty_result,
    labels_from_masks,
    require,
)
from cmrseg.classical.localize import (
    EchoContrast,
    LocalizationParams,
    LVLocation,
    locate,
    require_all,
)

__all__ = ["GACParams", "segment"]


@dataclass(frozen=True)
class GACParams(LocalizationParams):
    """Parameters of :func:`segment` (values in ``conf/model/gac.yaml``).

    The localisation ones are those of :class:`~cmrseg.classical.localize.LocalizationParams`.

    Attributes:
        endo_alpha: Steepness ``alpha`` of the endocardial stopping function
            ``1/sqrt(1 + alpha |grad|)`` on the blood map scaled to 1 in the blood pool.
        endo_init_fraction: Initial endocardial disk as a fraction of the Hough radius.
        endo_iterations: Iterations of the endocardial contour.
        endo_threshold: Stopping-function value below which the endocardial balloon stops.
        endo_blood_fraction: The blood pool keeps only pixels whose blood map is at least this
            fraction of the blood map inside the located circle.
        epi_init_mm: Initial epicardial contour: the endocardium dilated by this (mm).
        epi_iterations: Iterations of the epicardial contour.
        epi_alpha: Steepness ``alpha`` of the epicardial stopping function on the mean
            gradient magnitude of the echoes (1 = first-echo 99.5th percentile).
        epi_threshold: Stopping-function value below which the epicardial balloon stops.
        contour_smoothing: Smoothing steps per iteration of both contours.
        min_wall_mm: Thinnest wall kept (mm).
        max_wall_mm: Thickest wall kept (mm).
    """

    endo_init_fraction: float
    endo_iterations: int
    endo_threshold: float
    endo_blood_fraction: float
    endo_alpha: float
    epi_init_mm: float
    epi_iterations: int
    epi_alpha: float
    epi_threshold: float
    contour_smoothing: int
    min_wall_mm: float
    max_wall_mm: float

    def __post_init__(self) -> None:
        super().__post_init__()
        require_all(self, ("endo_alpha", "epi_alpha"), positive=True)
        require_all(self, ("epi_init_mm", "endo_blood_fraction"), positive=False)
        require(
            0 < self.endo_init_fraction <= 1,
            "endo_init_fraction",
            f"must be in (0, 1], got {self.endo_init_fraction}",
        )
        for name in ("endo_threshold", "epi_threshold"):
            value = getattr(self, name)
            require(0 < value < 1, name, f"must be in (0, 1), got {value}")
        for name in ("endo_iterations", "epi_iterations", "contour_smoothing"):
            value = getattr(self, name)
            require(int(value) == value >= 0, name, f"must be an integer >= 0, got {value}")
        require(
            0 < self.min_wall_mm <= self.max_wall_mm,
            "min_wall_mm",
            f"must be in (0, max_wall_mm={self.max_wall_mm}], got {self.min_wall_mm}",
        )


def segment(
    images: np.ndarray, te_ms: np.ndarray, pixel_spacing_mm: np.ndarray, params: GACParams
) -> SegmentationResult:
    """Segment the LV blood pool and myocardium of one slice with geodesic active contours.

    Args:
        images: Magnitude ``[E, H, W]`` (any positive scale), at least two echoes.
        te_ms: Echo times ``[E]`` in ms, increasing.
        pixel_spacing_mm: (row, column) spacing ``[2]`` in mm.
        params: Method parameters.

    Returns:
        Labels ``uint8 [H, W]`` (0 background, 1 blood pool, 2 myocardium) and ``""``, or empty
        labels and the reason (``too_few_echoes``, ``empty_slice``, ``non_finite_image``,
        ``no_lv_found``, ``no_myocardium_found``).
    """
    images, te_ms, spacing, reason = check_slice(images, te_ms, pixel_spacing_mm)
    shape = images.shape[1:]
    if reason:
        return empty_result(shape, reason)
    mm = float(spacing.mean())  # mm per pixel (the contract's pixels are square or nearly so)
    contrast, location = locate(images, te_ms, mm, params)
    if location is None:
        return empty_result(shape, NO_LV_FOUND)
    window = _window(location, params.lv_radius_mm[1] / mm + params.max_wall_mm / mm, shape)
    blood_pool = _endocardium(contrast, location, window, params)
    radius_mm = np.sqrt(blood_pool.sum() / np.pi) * mm
    if not params.lv_radius_mm[0] / 2 <= radius_mm <= params.lv_radius_mm[1]:
        return empty_result(shape, NO_LV_FOUND)
    epicardium = _epicardium(contrast, blood_pool, window, params, mm)
    if not (epicardium & ~blood_pool).any():
        return empty_result(shape, NO_MYOCARDIUM)
    return SegmentationResult(labels_from_masks(blood_pool, epicardium), "")


def _window(location: LVLocation, half_px: float, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """Square window of half-width ``half_px`` around the located LV, clipped to the image."""
    half = int(np.ceil(half_px)) + 2
    row, col = round(location.row), round(location.col)
    return (
        slice(max(row - half, 0), min(row + half + 1, shape[0])),
        slice(max(col - half, 0), min(col + half + 1, shape[1])),
    )


def _stopping_function(gradient: np.ndarray, alpha: float) -> np.ndarray:
    """GAC edge-stopping function ``1 / sqrt(1 + alpha * |grad|)``: ~1 on flat, ~0 on edges."""
    return 1.0 / np.sqrt(1.0 + alpha * gradient)


def _endocardium(
    contrast: EchoContrast,
    location: LVLocation,
    window: tuple[slice, slice],
    params: GACParams,
) -> np.ndarray:
    """Blood pool ``[H, W]``: a disk inflated to the blood map's edge, filled and made convex."""
    blood = contrast.blood[window] / location.blood  # 1 in the blood pool
    gimage = _stopping_function(ndimage.gaussian_gradient_magnitude(blood, 1.0), params.endo_alpha)
    init = location.disk(contrast.blood.shape, params.endo_init_fraction)[window]
    inside = morphological_geodesic_active_contour(
        gimage,
        params.endo_iterations,
        init_level_set=init,
        smoothing=params.contour_smoothing,
        threshold=params.endo_threshold,
        balloon=1,
    ).astype(bool)
    bright = blood >= params.endo_blood_fraction
    inside = _component_at(inside & bright, init)
    if inside.any():
        inside = convex_hull_image(ndimage.binary_fill_holes(inside))
    out = np.zeros(contrast.blood.shape, bool)
    out[window] = inside
    return out


def _epicardium(
    contrast: EchoContrast,
    blood_pool: np.ndarray,
    window: tuple[slice, slice],
    params: GACParams,
    mm: float,
) -> np.ndarray:
    """Filled epicardial region ``[H, W]``: inflated from the endocardium to multi-echo edges."""
    sigma_px = params.smoothing_mm / mm
    echoes = contrast.echoes[(slice(None), *window)]
    gradient = np.mean([ndimage.gaussian_gradient_magnitude(e, sigma_px) for e in echoes], axis=0)
    gimage = _stopping_function(gradient, params.epi_alpha)
    endo = blood_pool[window]
    init = _dilate(endo, params.epi_init_mm / mm)
    epi = morphological_geodesic_active_contour(
        gimage,
        params.epi_iterations,
        init_level_set=init,
        smoothing=params.contour_smoothing,
        threshold=params.epi_threshold,
        balloon=1,
    ).astype(bool)
    epi = (epi & _dilate(endo, params.max_wall_mm / mm)) | _dilate(endo, params.min_wall_mm / mm)
    epi = ndimage.binary_fill_holes(_component_at(epi, endo))
    out = np.zeros(blood_pool.shape, bool)
    out[window] = epi
    return out


def _dilate(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """``mask`` dilated by a Euclidean disk of ``radius_px``."""
    if not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= radius_px


def _component_at(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The connected components of ``mask`` that overlap ``seed``."""
    components, _ = ndimage.label(mask)
    keep = np.unique(components[seed & mask])
    return np.isin(components, keep[keep > 0])
