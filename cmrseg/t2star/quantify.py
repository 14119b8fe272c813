"""Region T2* of a short-axis slice: global myocardium and six sectors (contract section 2)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from cmrseg.core.errors import InputError
from cmrseg.core.geometry import estimate_rv_insertion, sector_map
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.t2star.config import T2StarConfig
from cmrseg.t2star.fitting import CurveFit, FitOptions, MapFit, fit_curves, fit_map
from cmrseg.t2star.grading import grade_t2star
from cmrseg.t2star.regions import core_erosion_px, wall_core_mask
from cmrseg.t2star.signal import estimate_noise_sigma
from cmrseg.t2star.status import Status, status_code

__all__ = [
    "REGIONS",
    "PixelFits",
    "RegionResult",
    "quantify_region",
    "quantify_regions",
    "quantify_slice",
    "slice_noise_sigma",
    "t2star_map",
]

log = logging.getLogger(__name__)

#: Region names of one slice, in CSV order.
REGIONS: tuple[str, ...] = ("global", *(f"sector{k}" for k in range(1, 7)))


@dataclass(frozen=True)
class RegionResult:
    """T2* of one region; numbers are NaN unless ``status`` is ``ok``.

    Attributes:
        region: ``global``, ``sector1`` .. ``sector6`` or a caller's name.
        t2star_ms: T2* estimate in ms.
        ci_low_ms: Lower end of its 95% confidence interval.
        ci_high_ms: Upper end of its 95% confidence interval.
        s0: Signal at TE = 0 (image units).
        r2: Coefficient of determination of the fit (median over pixels for ``median_pixel``).
        n_pixels: Pixels in the region's ROI.
        status: Outcome.
    """

    region: str
    t2star_ms: float
    ci_low_ms: float
    ci_high_ms: float
    s0: float
    r2: float
    n_pixels: int
    status: Status

    @property
    def grade(self) -> str:
        """Iron-overload grade, ``""`` unless ``ok``."""
        return grade_t2star(self.t2star_ms) if self.status is Status.OK else ""

    @classmethod
    def without_value(cls, region: str, n_pixels: int, status: Status) -> RegionResult:
        """A result that carries only a reason."""
        return cls(region, *(np.nan,) * 5, n_pixels=n_pixels, status=status)


def _check_slice(images: np.ndarray, te_ms: np.ndarray, labels: np.ndarray) -> None:
    if images.ndim != 3:
        raise InputError(f"images must be [E, H, W], got shape {images.shape}")
    if te_ms.shape != (images.shape[0],):
        raise InputError(f"te_ms shape {te_ms.shape} does not match {images.shape[0]} echoes")
    if not np.all(np.isfinite(te_ms)) or te_ms[0] < 0 or np.any(np.diff(te_ms) <= 0):
        raise InputError(f"te_ms must be finite, >= 0 and strictly increasing: {te_ms.tolist()}")
    if labels.shape != images.shape[1:]:
        raise InputError(f"labels shape {labels.shape} != image shape {images.shape[1:]}")
    if not np.all(np.isfinite(images)) or np.any(images < 0):
        raise InputError("images must be finite and >= 0 (magnitude data)")


def slice_noise_sigma(
    images: np.ndarray, config: T2StarConfig, sigma: float | None = None
) -> tuple[FitOptions, float | None]:
    """Noise SD for one slice and the fit options that can use it.

    Priority: ``sigma``, then ``config.noise_sigma``, then an estimate from the slice's
    background. When the model needs a noise SD and none can be had, the slice falls back to
    the plain ``mono`` model with a warning in the log.

    Returns:
        ``(fit options, sigma)``; sigma is ``None`` when the model does not need it.
    """
    options = config.fit
    if not options.needs_sigma:
        return options, None
    if sigma is None:
        sigma = config.noise_sigma
    if sigma is None:
        try:
            sigma = estimate_noise_sigma(images, options.n_coils)
        except ValueError as err:
            log.warning("noise SD not estimable (%s); fitting model 'mono' without floor", err)
            return dataclasses.replace(options, model="mono"), None
    return options, float(sigma)


def _median_ci(values: np.ndarray) -> tuple[float, float]:
    """Distribution-free 95% CI of the median from order statistics."""
    ordered = np.sort(values)
    n = ordered.size
    half = stats.norm.ppf(0.975) * np.sqrt(n) / 2.0
    low = int(np.clip(np.floor(n / 2.0 - half), 0, n - 1))
    high = int(np.clip(np.ceil(n / 2.0 + half), 0, n - 1))
    return float(ordered[low]), float(ordered[high])


def quantify_region(
    images: np.ndarray,
    te_ms: np.ndarray,
    mask: np.ndarray,
    config: T2StarConfig,
    *,
    sigma: float | None = None,
    region: str = "roi",
) -> RegionResult:
    """T2* of the pixels in ``mask`` by the configured estimator.

    ``mean_signal`` fits the region's mean magnitude per echo (the paper's method).
    ``median_pixel`` fits every pixel and reports the median of the successful fits, which is
    robust to partial volume with blood in a minority of pixels. Where fewer than
    ``region.min_pixels`` pixel fits succeed (T2* of 2-4 ms at clinical SNR: only the first
    one or two echoes carry signal), the region is ``fit_failed``. A region-level fit of the
    mean or per-echo median signal is no remedy there: on the phantom it failed as well in
    most such regions, and where it converged it returned 10-50 ms for a true 2-4 ms (blood
    partial volume dominates the late echoes), a wrong grade rather than no value.

    Args:
        images: Magnitude images ``[E, H, W]``.
        te_ms: Echo times [E] in ms.
        mask: Boolean ``[H, W]`` region of interest (used as given, no erosion).
        config: T2* settings.
        sigma: Noise SD per channel; see :func:`slice_noise_sigma`.
        region: Name written into the result.

    Returns:
        :class:`RegionResult`.
    """
    return quantify_regions(images, te_ms, {region: mask}, config, sigma=sigma)[0]


def quantify_regions(
    images: np.ndarray,
    te_ms: np.ndarray,
    masks: Mapping[str, np.ndarray],
    config: T2StarConfig,
    *,
    sigma: float | None = None,
    pixel_fits: PixelFits | None = None,
) -> list[RegionResult]:
    """T2* of several regions of one slice, as :func:`quantify_region` gives each of them.

    All fits of the slice run as one vectorized fit: ``median_pixel`` fits each pixel of the
    union of the regions once (a pixel in several regions, e.g. the global wall and its
    sector, is fitted once; the fit of a curve does not depend on the others in the batch),
    ``mean_signal`` fits the regions' mean curves together.

    Args:
        images: Magnitude images ``[E, H, W]``.
        te_ms: Echo times [E] in ms.
        masks: Boolean ``[H, W]`` region of interest by region name.
        config: T2* settings.
        sigma: Noise SD per channel; see :func:`slice_noise_sigma`.
        pixel_fits: ``median_pixel`` only: earlier pixel fits of this slice (same settings and
            noise SD) to reuse and extend; ``None`` fits every pixel.

    Returns:
        One :class:`RegionResult` per region, in the order of ``masks``.
    """
    images, te_ms = np.asarray(images), np.asarray(te_ms, dtype=float)
    masks = {name: np.asarray(mask, bool) for name, mask in masks.items()}
    for mask in masks.values():
        _check_slice(images, te_ms, mask)
    counts = {name: int(mask.sum()) for name, mask in masks.items()}
    fitted = [name for name, n in counts.items() if n >= config.region.min_pixels]
    results = {
        name: RegionResult.without_value(
            name, n, Status.EMPTY_MASK if n == 0 else Status.TOO_FEW_PIXELS
        )
        for name, n in counts.items()
        if name not in fitted
    }
    if fitted:
        options, sigma = slice_noise_sigma(images, config, sigma)
        if config.region.estimator == "mean_signal":
            curves = [images[:, masks[name]].T.astype(float).mean(axis=0) for name in fitted]
            fits = fit_curves(te_ms, np.stack(curves), options, sigma)
            for k, name in enumerate(fitted):
                results[name] = _curve_result(fits.curve(k), name, counts[name])
        else:
            pixel_fits = pixel_fits if pixel_fits is not None else PixelFits(images.shape[1:])
            pixel_fits.fit(
                images, te_ms, np.logical_or.reduce([masks[n] for n in fitted]), options, sigma
            )
            for name in fitted:
                results[name] = _median_result(pixel_fits, masks[name], name, counts[name], config)
    return [results[name] for name in masks]


class PixelFits:
    """Pixel fits of one slice, kept so that later regions of the slice fit only new pixels.

    A pixel's fit depends only on its curve, the fit options and the noise SD, never on the
    region it is in (:func:`~cmrseg.t2star.fit_curves` fits every curve on its own), so the
    regions of another mask of the same slice (e.g. a network's prediction at every
    validation) reuse the pixels fitted before. Holds three float64 and two bool ``[H, W]``
    maps.

    Args:
        shape: ``(H, W)`` of the slice.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.fitted = np.zeros(shape, dtype=bool)
        self.ok = np.zeros(shape, dtype=bool)
        self.t2star_ms = np.full(shape, np.nan)
        self.s0 = np.full(shape, np.nan)
        self.r2 = np.full(shape, np.nan)
        self._settings: tuple[FitOptions, float | None] | None = None

    def fit(
        self,
        images: np.ndarray,
        te_ms: np.ndarray,
        mask: np.ndarray,
        options: FitOptions,
        sigma: float | None,
    ) -> None:
        """Fit the pixels of ``mask`` that are not fitted yet.

        Raises:
            ValueError: ``options`` or ``sigma`` differ from those of the earlier fits.
        """
        if self._settings is not None and self._settings != (options, sigma):
            raise ValueError("PixelFits holds fits made with other fit options or noise SD")
        self._settings = (options, sigma)
        new = mask & ~self.fitted
        if not new.any():
            return
        fits = fit_curves(te_ms, images[:, new].T.astype(float), options, sigma)
        self.t2star_ms[new], self.s0[new], self.r2[new] = fits.t2star_ms, fits.s0, fits.r2
        self.ok[new] = fits.status == status_code(Status.OK)
        self.fitted |= new


def _median_result(
    fits: PixelFits, mask: np.ndarray, region: str, n_pixels: int, config: T2StarConfig
) -> RegionResult:
    """Median of the successful pixel fits of a region (``median_pixel``)."""
    ok = mask & fits.ok
    if ok.sum() < config.region.min_pixels:
        return RegionResult.without_value(region, n_pixels, Status.FIT_FAILED)
    low, high = _median_ci(fits.t2star_ms[ok])
    return RegionResult(
        region,
        float(np.median(fits.t2star_ms[ok])),
        low,
        high,
        float(np.median(fits.s0[ok])),
        float(np.median(fits.r2[ok])),
        n_pixels,
        Status.OK,
    )


def _curve_result(fit: CurveFit, region: str, n_pixels: int) -> RegionResult:
    """The result of one fit of a region's summary curve; the status is the fit's."""
    if fit.status is not Status.OK:
        return RegionResult.without_value(region, n_pixels, fit.status)
    return RegionResult(
        region, fit.t2star_ms, fit.ci_low_ms, fit.ci_high_ms, fit.s0, fit.r2, n_pixels, fit.status
    )


def quantify_slice(
    images: np.ndarray,
    te_ms: np.ndarray,
    labels: np.ndarray,
    rv_insertion: tuple[float, float] | np.ndarray | None,
    *,
    config: T2StarConfig,
    phase_encoding_axis: int = -1,
    pixel_spacing_mm: np.ndarray | tuple[float, float] | None = None,
    sigma: float | None = None,
    pixel_fits: PixelFits | None = None,
) -> list[RegionResult]:
    """T2* of the global myocardium and of its six sectors in one slice.

    Args:
        images: Magnitude images ``[E, H, W]``.
        te_ms: Echo times [E] in ms.
        labels: ``[H, W]`` with 0 background, 1 blood pool, 2 myocardium.
        rv_insertion: ``(row, col)`` of the anterior RV insertion point; NaN or ``None`` when
            unknown (then ``config.region.rv_insertion_fallback`` decides).
        config: T2* settings.
        phase_encoding_axis: 0 (rows), 1 (columns) or -1 (unknown); shapes the wall core.
        pixel_spacing_mm: ``[2]`` (row, column) spacing in mm; converts
            ``region.core_erosion_mm`` to pixels (:func:`~cmrseg.t2star.core_erosion_px`).
            Needed when ``region.wall`` is ``core`` with an erosion above 0 mm.
        sigma: Noise SD per channel; see :func:`slice_noise_sigma`.
        pixel_fits: Earlier pixel fits of this slice to reuse (see :func:`quantify_regions`).

    Returns:
        Seven :class:`RegionResult`, in the order of :data:`REGIONS`.

    Raises:
        InputError: Shapes that do not match, TE not increasing, negative or non-finite signal,
            a pixel spacing that is not two finite values > 0.
        ValueError: ``pixel_spacing_mm`` missing where the wall core needs it.
    """
    images, te_ms, labels = np.asarray(images), np.asarray(te_ms, dtype=float), np.asarray(labels)
    _check_slice(images, te_ms, labels)
    erosion_px = 0
    if config.region.wall == "core":
        erosion_px = _slice_erosion_px(
            config.region.core_erosion_mm, pixel_spacing_mm, phase_encoding_axis
        )
    wall = labels == MYOCARDIUM
    if not wall.any():
        return [RegionResult.without_value(name, 0, Status.EMPTY_MASK) for name in REGIONS]
    if config.region.wall == "core":
        wall = wall_core_mask(labels, erosion_px, phase_encoding_axis)
    options, sigma = slice_noise_sigma(images, config, sigma)
    config = dataclasses.replace(config, fit=options)
    point = _reference_point(labels, rv_insertion, config)
    if point is None:
        (result,) = quantify_regions(
            images, te_ms, {"global": wall}, config, sigma=sigma, pixel_fits=pixel_fits
        )
        return [result] + [
            RegionResult.without_value(name, 0, Status.NO_REFERENCE_POINT) for name in REGIONS[1:]
        ]
    sectors = sector_map(labels, point)
    masks = {"global": wall} | {name: wall & (sectors == k) for k, name in enumerate(REGIONS) if k}
    return quantify_regions(images, te_ms, masks, config, sigma=sigma, pixel_fits=pixel_fits)


def _slice_erosion_px(
    erosion_mm: float,
    pixel_spacing_mm: np.ndarray | tuple[float, float] | None,
    phase_encoding_axis: int,
) -> int:
    """``region.core_erosion_mm`` in pixels of this slice."""
    if erosion_mm == 0:
        return 0
    if pixel_spacing_mm is None:
        raise ValueError(
            "pixel_spacing_mm is needed for region.wall=core with region.core_erosion_mm > 0"
        )
    try:
        return core_erosion_px(erosion_mm, pixel_spacing_mm, phase_encoding_axis)
    except ValueError as err:
        raise InputError(str(err)) from err


def _reference_point(
    labels: np.ndarray, rv_insertion: tuple[float, float] | np.ndarray | None, config: T2StarConfig
) -> tuple[float, float] | None:
    if rv_insertion is not None and np.all(np.isfinite(np.asarray(rv_insertion, dtype=float))):
        row, col = (float(v) for v in rv_insertion)
        return row, col
    if config.region.rv_insertion_fallback == "none":
        return None
    point = estimate_rv_insertion(labels, config.region.standard_rv_angle_deg)
    if point is not None:
        log.info(
            "rv_insertion unknown: assumed standard orientation, estimated at (%.1f, %.1f)", *point
        )
    return point


def t2star_map(
    images: np.ndarray,
    te_ms: np.ndarray,
    labels: np.ndarray,
    config: T2StarConfig,
    sigma: float | None = None,
) -> MapFit:
    """Pixel-wise T2* inside the myocardium (``labels == 2``); NaN elsewhere.

    Args:
        images: Magnitude images ``[E, H, W]``.
        te_ms: Echo times [E] in ms.
        labels: ``[H, W]`` with 0 background, 1 blood pool, 2 myocardium.
        config: T2* settings (``fit`` and ``noise_sigma``).
        sigma: Noise SD per channel; see :func:`slice_noise_sigma`.

    Returns:
        :class:`MapFit` with arrays ``[H, W]``; ``t2star_ms`` is what ``t2star_map_ms`` stores.
    """
    images, te_ms, labels = np.asarray(images), np.asarray(te_ms, dtype=float), np.asarray(labels)
    _check_slice(images, te_ms, labels)
    options, sigma = slice_noise_sigma(images, config, sigma)
    return fit_map(images, te_ms, options, mask=labels == MYOCARDIUM, sigma=sigma)
