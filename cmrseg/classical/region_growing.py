"""Region growing from automatically placed seeds, after Wantanajittikul et al. 2016.

Reference: K. Wantanajittikul et al., "Automatic cardiac T2* relaxation time estimation from
magnetic resonance images using region growing method with automatically initialized seed
points", Comput Methods Programs Biomed 130:76-86, 2016, doi:10.1016/j.cmpb.2016.03.015.

What the publication describes (abstract): the myocardial region of interest is segmented by a
region growing algorithm from automatically initialized seed points, and mathematical morphology
reduces its errors; T2* is then fitted in that region. The full text was not available to us,
so this implementation assumes:

1. Seeds need the LV first: it is located as for the geodesic active contour
   (:func:`cmrseg.classical.localize.locate_lv`, the blood pool bright at late echoes near the
   image centre); the blood-pool seed is a disk of ``blood_seed_mm`` at its centre.
2. Region growing is seeded region growing with a fixed intensity-similarity criterion: a pixel
   joins when it is connected to a seed through pixels whose intensity ``I`` satisfies
   ``|I - m| <= tolerance * m``, with ``m`` the mean intensity of the seeds; ``m`` is then
   replaced by the mean of the grown region and the growth repeated ``n_updates`` times (an
   adaptive criterion). The blood pool grows on the blood map, the myocardium on the mean of the
   echoes up to ``wall_te_ms`` (the early echoes, where even an iron-loaded wall has signal).
3. The blood pool is cleaned by filling holes and taking its convex hull, so papillary muscles
   and trabeculations count as blood pool, as readers draw them.
4. Myocardial seeds: ``n_seeds`` points on rays from the blood-pool centroid at equal angles,
   ``seed_offset_mm`` outside the blood-pool border (inside the wall when the wall is thicker than
   that); seeds whose intensity is further than ``tolerance`` from the seeds' median (a seed in
   fat or blood) are dropped before ``m`` is computed.
5. The myocardium may only grow within ``max_wall_mm`` of the blood pool (it borders lung and
   liver of similar intensity when iron-loaded). Mathematical morphology then cleans it: a
   closing and an opening with disks of ``closing_mm`` and ``opening_mm`` on the filled
   epicardial region (blood pool + wall), hole filling, the component around the blood pool,
   and a wall at least ``min_wall_mm`` thick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.morphology import convex_hull_image, disk

from cmrseg.classical.base import (
    NO_LV_FOUND,
    NO_MYOCARDIUM,
    SegmentationResult,
    check_slice,
    empty_result,
    labels_from_masks,
    require,
)
from cmrseg.classical.localize import LocalizationParams, LVLocation, locate, require_all

__all__ = ["RegionGrowingParams", "segment"]


@dataclass(frozen=True)
class RegionGrowingParams(LocalizationParams):
    """Parameters of :func:`segment` (values in ``conf/model/region_growing.yaml``).

    The localisation ones are those of :class:`~cmrseg.classical.localize.LocalizationParams`.

    Attributes:
        blood_seed_mm: Radius (mm) of the blood-pool seed disk at the LV centre.
        blood_tolerance: Relative intensity tolerance of the blood-pool growth.
        wall_te_ms: Echoes up to this TE (ms; at least the first) form the wall image.
        n_seeds: Myocardial seed points around the blood pool.
        seed_offset_mm: Distance (mm) of the myocardial seeds outside the blood-pool border.
        wall_tolerance: Relative intensity tolerance of the myocardial growth.
        n_updates: Times the mean of the grown region replaces the seeds' mean and growth reruns.
        min_wall_mm: Thinnest wall kept (mm).
        max_wall_mm: Farthest (mm) the myocardium may grow from the blood pool.
        closing_mm: Radius (mm) of the closing disk (0: none).
        opening_mm: Radius (mm) of the opening disk (0: none).
    """

    blood_seed_mm: float
    blood_tolerance: float
    wall_te_ms: float
    n_seeds: int
    seed_offset_mm: float
    wall_tolerance: float
    n_updates: int
    min_wall_mm: float
    max_wall_mm: float
    closing_mm: float
    opening_mm: float

    def __post_init__(self) -> None:
        super().__post_init__()
        require_all(
            self,
            ("blood_seed_mm", "blood_tolerance", "wall_te_ms", "wall_tolerance"),
            positive=True,
        )
        require_all(self, ("seed_offset_mm", "closing_mm", "opening_mm"), positive=False)
        require(
            int(self.n_seeds) == self.n_seeds and self.n_seeds >= 1,
            "n_seeds",
            f"must be an integer >= 1, got {self.n_seeds}",
        )
        require(
            int(self.n_updates) == self.n_updates and self.n_updates >= 0,
            "n_updates",
            f"must be an integer >= 0, got {self.n_updates}",
        )
        require(
            0 < self.min_wall_mm <= self.max_wall_mm,
            "min_wall_mm",
            f"must be in (0, max_wall_mm={self.max_wall_mm}], got {self.min_wall_mm}",
        )


def segment(
    images: np.ndarray,
    te_ms: np.ndarray,
    pixel_spacing_mm: np.ndarray,
    params: RegionGrowingParams,
) -> SegmentationResult:
    """Segment the LV blood pool and myocardium of one slice by seeded region growing.

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
    sigma_px = params.smoothing_mm / mm
    contrast, location = locate(images, te_ms, mm, params)
    if location is None:
        return empty_result(shape, NO_LV_FOUND)
    blood_pool = _grow_blood_pool(contrast.blood, location, params, mm)
    radius_mm = np.sqrt(blood_pool.sum() / np.pi) * mm
    if not params.lv_radius_mm[0] / 2 <= radius_mm <= params.lv_radius_mm[1]:
        return empty_result(shape, NO_LV_FOUND)
    n_wall = max(int(np.count_nonzero(te_ms <= params.wall_te_ms)), 1)
    wall_image = ndimage.gaussian_filter(contrast.echoes[:n_wall].mean(axis=0), sigma_px)
    seeds = _myocardial_seeds(blood_pool, wall_image, params, mm)
    if not seeds.any():
        return empty_result(shape, NO_MYOCARDIUM)
    allowed = ~blood_pool & (ndimage.distance_transform_edt(~blood_pool) <= params.max_wall_mm / mm)
    wall = _grow(wall_image, seeds, allowed, params.wall_tolerance, params.n_updates)
    epicardium = _clean_epicardium(blood_pool | wall, blood_pool, params, mm)
    if not (epicardium & ~blood_pool).any():
        return empty_result(shape, NO_MYOCARDIUM)
    return SegmentationResult(labels_from_masks(blood_pool, epicardium), "")


def _grow(
    image: np.ndarray, seeds: np.ndarray, allowed: np.ndarray, tolerance: float, n_updates: int
) -> np.ndarray:
    """Seeded region growing: pixels connected to a seed within ``tolerance`` of the mean.

    The mean starts as the seeds' mean and becomes the grown region's mean ``n_updates`` times.
    """
    mean = float(image[seeds].mean())
    region = seeds
    for _ in range(n_updates + 1):
        similar = allowed & (np.abs(image - mean) <= tolerance * abs(mean))
        components, _ = ndimage.label(similar | seeds)
        keep = np.unique(components[seeds])
        region = np.isin(components, keep[keep > 0])
        mean = float(image[region].mean())
    return region


def _grow_blood_pool(
    blood: np.ndarray, location: LVLocation, params: RegionGrowingParams, mm: float
) -> np.ndarray:
    """Blood pool ``[H, W]`` grown on the blood map from a disk at the LV centre, then convex."""
    seed_fraction = min(params.blood_seed_mm / mm / location.radius, 1.0)
    seeds = location.disk(blood.shape, seed_fraction)
    if not seeds.any():  # a seed smaller than a pixel: the centre pixel
        seeds[round(location.row), round(location.col)] = True
    grown = _grow(blood, seeds, np.ones_like(seeds), params.blood_tolerance, params.n_updates)
    return convex_hull_image(ndimage.binary_fill_holes(grown))


def _myocardial_seeds(
    blood_pool: np.ndarray, wall_image: np.ndarray, params: RegionGrowingParams, mm: float
) -> np.ndarray:
    """Boolean ``[H, W]`` seeds on rays from the blood-pool centroid, just outside its border."""
    rows, cols = np.nonzero(blood_pool)
    row0, col0 = rows.mean(), cols.mean()
    angles = np.linspace(0.0, 2 * np.pi, int(params.n_seeds), endpoint=False)
    dr, dc = -np.sin(angles), np.cos(angles)
    h, w = blood_pool.shape
    seeds = np.zeros_like(blood_pool)
    values, points = [], []
    for step_r, step_c in zip(dr, dc, strict=True):
        radius = 0.0
        # walk out to the border, then seed_offset_mm further
        while _inside(blood_pool, row0 + radius * step_r, col0 + radius * step_c):
            radius += 0.5
        radius += params.seed_offset_mm / mm
        r, c = round(row0 + radius * step_r), round(col0 + radius * step_c)
        if 0 <= r < h and 0 <= c < w:
            points.append((r, c))
            values.append(wall_image[r, c])
    if not points:
        return seeds
    median = float(np.median(values))
    for (r, c), value in zip(points, values, strict=True):
        if abs(value - median) <= params.wall_tolerance * abs(median):
            seeds[r, c] = True
    return seeds


def _inside(mask: np.ndarray, row: float, col: float) -> bool:
    r, c = round(row), round(col)
    return 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and bool(mask[r, c])


def _clean_epicardium(
    region: np.ndarray, blood_pool: np.ndarray, params: RegionGrowingParams, mm: float
) -> np.ndarray:
    """Morphological cleaning of the filled epicardial region (blood pool + grown wall)."""
    closing, opening = round(params.closing_mm / mm), round(params.opening_mm / mm)
    if closing > 0:
        region = ndimage.binary_closing(region, disk(closing), border_value=0)
    region = ndimage.binary_fill_holes(region)
    if opening > 0:
        region = ndimage.binary_opening(region, disk(opening))
    components, _ = ndimage.label(region | blood_pool)
    keep = np.unique(components[blood_pool])
    region = np.isin(components, keep[keep > 0])
    near = ndimage.distance_transform_edt(~blood_pool) <= params.min_wall_mm / mm
    return ndimage.binary_fill_holes(region | near)
