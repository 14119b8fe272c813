"""Region T2* of a short-axis slice: global myocardium and six sectors (contract section 2)."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from cmrseg.core.errors import InputError
from cmrseg.core.geometry import estimate_rv_insertion, sector_map
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.t2star.blur import (
    DEBLURRED_ROI_SUFFIX,
    cavity_ghost_ratio,
    deblurred_wall,
    phase_resolution,
)
from cmrseg.t2star.config import QcOptions, RegionOptions, T2StarConfig
from cmrseg.t2star.fitting import FitOptions, MapFit, fit_curves, fit_map
from cmrseg.t2star.grading import grade_t2star
from cmrseg.t2star.regions import (
    OFF_CAVITY_ROI_SUFFIX,
    core_erosion_px,
    estimate_rv_insertion_from_image,
    off_cavity_lines_mask,
    wall_core_mask,
)
from cmrseg.t2star.signal import NoiseEstimateError, estimate_noise, find_background
from cmrseg.t2star.status import Status, status_code

__all__ = [
    "REGIONS",
    "PixelFits",
    "RegionResult",
    "SliceNoise",
    "censored_median",
    "floor_truncation",
    "quantify_region",
    "quantify_slice",
    "slice_noise",
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
        method: ``estimator/roi/model`` actually used, e.g. ``median_pixel/core/noise_corrected``
            (names a fallback model); empty when nothing was fitted.
        noise_sigma: Noise SD per coil channel the model used; NaN when none.
        n_coils: Effective coil count the model used; NaN when none.
        bound_ms: For ``below_range``: the lower fit bound the T2* lies below; NaN otherwise.
        qc_reasons: Why a person should look at this result (empty: nothing found).
    """

    region: str
    t2star_ms: float
    ci_low_ms: float
    ci_high_ms: float
    s0: float
    r2: float
    n_pixels: int
    status: Status
    method: str = ""
    noise_sigma: float = math.nan
    n_coils: float = math.nan
    bound_ms: float = math.nan
    qc_reasons: tuple[str, ...] = ()

    @property
    def grade(self) -> str:
        """Iron-overload grade at 1.5 T; ``severe`` for ``below_range``; ``""`` otherwise."""
        return self.grade_at(1.5)

    def grade_at(self, field_strength_t: float) -> str:
        """Iron-overload grade at a field (NaN: 1.5 T), ``""`` unless ``ok`` or ``below_range``.

        A ``below_range`` result grades as its bound does when every T2* below that bound has
        the same grade (``severe`` for any bound below the severe cut-off).
        """
        if self.status is Status.OK:
            return grade_t2star(self.t2star_ms, field_strength_t)
        if self.status is Status.BELOW_RANGE and np.isfinite(self.bound_ms):
            grade = grade_t2star(self.bound_ms * (1 - 1e-9), field_strength_t)
            return grade if grade == grade_t2star(1e-6, field_strength_t) else ""
        return ""

    @classmethod
    def without_value(
        cls, region: str, n_pixels: int, status: Status, **details: Any
    ) -> RegionResult:
        """A result that carries only a reason (``details``: method, noise, qc_reasons)."""
        return cls(region, *(np.nan,) * 5, n_pixels=n_pixels, status=status, **details)


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


@dataclass(frozen=True)
class SliceNoise:
    """The noise model of one slice.

    Attributes:
        options: Fit options to use: the configured ones with the slice's coil count, or the
            fallback model; ``None`` when nothing may be fitted (``noise_fallback_model: none``).
        sigma: Noise SD per coil channel for the model; ``None`` when the model needs none.
        reasons: QC reasons (a fallback and why, a background with artifacts).
    """

    options: FitOptions | None
    sigma: float | None
    reasons: tuple[str, ...]


def slice_noise(
    images: np.ndarray,
    config: T2StarConfig,
    sigma: float | None = None,
    phase_encoding_axis: int = -1,
) -> SliceNoise:
    """Noise SD, coil count and the signal model that can use them, for one slice.

    Priority for sigma: ``sigma``, then ``config.noise_sigma``, then an estimate from the
    slice's background (:func:`~cmrseg.t2star.estimate_noise`); the coil count is
    ``config.fit.n_coils`` or estimated from the same background. When the model needs them and
    the background gives none (no air, a zero-filled or masked background), the slice falls back
    to ``config.noise_fallback_model`` and says so: a warning in the log and the reason
    ``noise_model_fallback:<why>`` on every row (with ``none``, status ``no_noise_estimate``).
    """
    options = config.fit
    if not options.needs_sigma:
        return SliceNoise(options, None, ())
    if sigma is None:
        sigma = config.noise_sigma
    n_coils = options.n_coils
    reasons: tuple[str, ...] = ()
    if sigma is None or n_coils is None:
        try:
            estimate = estimate_noise(images, n_coils, phase_encoding_axis)
        except NoiseEstimateError as err:
            fallback = config.noise_fallback_model
            log.warning("noise not estimable (%s); fitting model %r without it", err, fallback)
            if fallback == "none":
                return SliceNoise(None, None, (f"no_noise_estimate:{err.reason}",))
            min_echoes = max(options.min_echoes, 4 if fallback == "mono_offset" else 3)
            options = dataclasses.replace(options, model=fallback, min_echoes=min_echoes)
            return SliceNoise(options, None, (f"noise_model_fallback:{err.reason}",))
        if sigma is None:
            sigma = estimate.sigma
            if not estimate.artifact_free:
                reasons = ("noise_from_background_with_artifacts",)
        n_coils = estimate.n_coils
    return SliceNoise(dataclasses.replace(options, n_coils=n_coils), float(sigma), reasons)


def slice_noise_sigma(
    images: np.ndarray, config: T2StarConfig, sigma: float | None = None
) -> tuple[FitOptions, float | None]:
    """``(fit options, sigma)`` of :func:`slice_noise` (phase-encoding axis unknown).

    The options are the configured ones when nothing may be fitted.
    """
    noise = slice_noise(images, config, sigma)
    return (config.fit if noise.options is None else noise.options), noise.sigma


def censored_median(
    values: np.ndarray, n_below: int, n_above: int
) -> tuple[Status, float, float, float]:
    """Median of a sample with values censored at the fit bounds, and its 95% CI.

    Pixels whose fit ends on the lower bound have a T2* below it, but not a known one: they are
    left-censored, not missing. Dropping them (as a plain median of the successful fits does)
    moves the median up exactly where T2* is short: on the phantom a true 2-5 ms read +26%.
    Ranking them below every measured value (and upper-bound pixels above it) gives the median
    of all usable pixels, which is exact whenever the middle rank falls on a measured value; it
    needs no model of the censored tail, unlike a Tobit-style likelihood, and keeps the median's
    robustness to blood partial volume in a minority of pixels. When the middle rank is censored,
    only the side is known: ``below_range`` or ``out_of_range``.

    Args:
        values: Measured values [M] (finite).
        n_below: Count censored at the lower bound.
        n_above: Count censored at the upper bound.

    Returns:
        ``(status, median, ci_low, ci_high)``: ``ok`` with numbers (a CI end that is a censored
        rank is NaN), or ``below_range`` / ``out_of_range`` with NaNs.
    """
    ordered = np.concatenate([np.full(n_below, -np.inf), np.sort(values), np.full(n_above, np.inf)])
    n = ordered.size
    middle = ordered[[(n - 1) // 2, n // 2]]
    if np.any(middle == -np.inf):
        return Status.BELOW_RANGE, np.nan, np.nan, np.nan
    if np.any(middle == np.inf):
        return Status.OUT_OF_RANGE, np.nan, np.nan, np.nan
    half = stats.norm.ppf(0.975) * np.sqrt(n) / 2.0
    low = ordered[int(np.clip(np.floor(n / 2.0 - half), 0, n - 1))]
    high = ordered[int(np.clip(np.ceil(n / 2.0 + half), 0, n - 1))]
    return (
        Status.OK,
        float(middle.mean()),
        float(low) if np.isfinite(low) else np.nan,
        float(high) if np.isfinite(high) else np.nan,
    )


def floor_truncation(
    curves: np.ndarray, te_ms: np.ndarray, t2star_ms: float, options: RegionOptions
) -> np.ndarray | None:
    """Echoes of a short-T2* region that lie well above the wall's own late-echo floor.

    On late echoes a short-T2* wall holds no myocardial signal, only the noise floor plus
    ghosts and Gibbs ringing of the bright blood, fat and chest wall: a floor above the noise
    floor the model knows, which pulls the fitted T2* up (a true 3 ms read +27% on the phantom).
    Offset models (Ghugre et al., JMRI 2006) subtract such a floor coherently; on the phantom a
    free offset on top of the noise-corrected model read 17-28% low in every band (the artifacts
    add with random phase, not as a constant). So, as in the truncation method (He et al., JMRI
    2008; extended to pixel maps by Kellman et al., JCMR 2015), the late echoes are dropped,
    but against the measured floor rather than the noise alone: the floor is the median over the
    region's pixels of their mean signal on the echoes after ``TE1 + floor_after_t2star x T2*``
    (by default 1.5: at most exp(-1.5), 22%, of the first echo's myocardial signal is left
    there, so the floor is if anything overestimated and fewer echoes kept: precision is lost,
    not accuracy), and the leading echoes whose median signal over the region exceeds
    ``floor_factor`` times it are kept. When fewer than two are (the second echo already in the
    floor, or within ``floor_factor_two_echoes`` times it), the region's T2* cannot be measured,
    only bounded: :func:`quantify_region` reports it ``below_range``.

    Args:
        curves: Magnitude curves of the region's pixels ``[P, E]``.
        te_ms: Echo times [E] in ms.
        t2star_ms: The region's first estimate (its lower fit bound when ``below_range``).
        options: ``floor_after_t2star``, ``floor_factor`` and ``floor_factor_two_echoes``.

    Returns:
        Boolean ``[E]`` (a prefix, possibly of fewer than two echoes), or ``None`` when fewer
        than two echoes measure the floor or every echo is above it (nothing to drop).
    """
    late = te_ms > te_ms[0] + options.floor_after_t2star * t2star_ms
    if late.sum() < 2:
        return None
    floor = float(np.median(curves[:, late].mean(axis=1)))
    median = np.median(curves, axis=0)
    keep = np.logical_and.accumulate(median > options.floor_factor * floor)
    if keep.sum() == 2 and not median[1] > options.floor_factor_two_echoes * floor:
        keep[1] = False  # an exactly determined fit would take the floor for signal
    return None if keep.all() else keep


class PixelFits:
    """Pixel fits of one slice, kept so that later regions and masks of it fit only new pixels.

    A pixel's fit depends only on its curve, the fit options and the noise SD, never on the
    region it is in (:func:`~cmrseg.t2star.fit_curves` fits every curve on its own). So the
    sectors of a slice reuse the fits of its global region, and another mask of the same slice
    (a network's prediction at every validation) fits only the pixels no earlier mask had.
    Holds three float64, one uint8 and one bool ``[H, W]`` maps.

    Args:
        shape: ``(H, W)`` of the slice.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.fitted = np.zeros(shape, dtype=bool)
        self.status = np.zeros(shape, dtype=np.uint8)
        self.t2star_ms = np.full(shape, np.nan)
        self.s0 = np.full(shape, np.nan)
        self.r2 = np.full(shape, np.nan)
        self.noise_test_only = np.zeros(shape, dtype=bool)
        self._settings: tuple[FitOptions, float | None] | None = None

    def fit(
        self,
        images: np.ndarray,
        te_ms: np.ndarray,
        mask: np.ndarray,
        options: FitOptions,
        sigma: float | None,
    ) -> _PixelSubset:
        """Fit the pixels of ``mask`` not fitted yet; return the fits of all of ``mask``.

        Raises:
            ValueError: ``options`` or ``sigma`` differ from those of the earlier fits.
        """
        if self._settings is not None and self._settings != (options, sigma):
            raise ValueError("PixelFits holds fits made with other fit options or noise SD")
        self._settings = (options, sigma)
        new = mask & ~self.fitted
        if new.any():
            fits = fit_curves(te_ms, images[:, new].T.astype(float), options, sigma)
            self.t2star_ms[new], self.s0[new], self.r2[new] = fits.t2star_ms, fits.s0, fits.r2
            self.status[new], self.noise_test_only[new] = fits.status, fits.noise_test_only
            self.fitted |= new
        return _PixelSubset(
            self.t2star_ms[mask],
            self.s0[mask],
            self.r2[mask],
            self.status[mask],
            self.noise_test_only[mask],
        )


@dataclass(frozen=True)
class _PixelSubset:
    """Fits of the pixels of one region, in mask order (what ``median_pixel`` reads)."""

    t2star_ms: np.ndarray
    s0: np.ndarray
    r2: np.ndarray
    status: np.ndarray
    noise_test_only: np.ndarray

    def r2_only(self) -> _PixelSubset:
        """The same fits with those accepted only by ``fit.noise_test_level`` as failed."""
        if not self.noise_test_only.any():
            return self
        failed = status_code(Status.FIT_FAILED)
        return _PixelSubset(
            np.where(self.noise_test_only, np.nan, self.t2star_ms),
            np.where(self.noise_test_only, np.nan, self.s0),
            np.where(self.noise_test_only, np.nan, self.r2),
            np.where(self.noise_test_only, failed, self.status).astype(self.status.dtype),
            np.zeros_like(self.noise_test_only),
        )


#: Standard errors by which a later echo must lie above the second for the second to count as
#: depressed on its own (:func:`_second_echo_depressed`). Simulated (4 coils, noise SD 3.1,
#: 200 draws): a flat plateau after the second echo passed as depressed in 0-2% of regions of
#: 12-100 pixels at 4 (2-7% at 3), the phantom's alternating normal curve in 85-100%.
_DEPRESSED_ECHO_Z = 4.0


def _short_t2star_echoes(
    images: np.ndarray,
    te_ms: np.ndarray,
    mask: np.ndarray,
    first_ms: float | None,
    region: RegionOptions,
) -> tuple[np.ndarray, float] | None:
    """:func:`floor_truncation` of a region whose first estimate is short, or ``None``.

    Returned with the first estimate in ms (:func:`_first_estimate_ms`).
    """
    if first_ms is None or first_ms >= region.floor_truncation_below_ms:
        return None
    keep = floor_truncation(images[:, mask].T.astype(float), te_ms, first_ms, region)
    return None if keep is None else (keep, first_ms)


def _first_estimate_ms(
    images: np.ndarray,
    te_ms: np.ndarray,
    mask: np.ndarray,
    fits: _PixelSubset,
    options: FitOptions,
    region: RegionOptions,
    two_echo_ms: float,
) -> float | None:
    """A region's first estimate in ms; ``None`` without a trustworthy one.

    The censored median of the all-echo pixel fits (the lower fit bound when it is
    ``below_range``) or, when shorter, ``two_echo_ms``, the T2* of the decay between the first
    two echoes of the region's median curve (:func:`_two_echo_t2star`). The second catches a
    fast decay onto a plateau far above the noise floor (ghosts of bright blood, a coherent
    floor): there the all-echo fits follow the plateau (a true 2 ms read 21.6 ms ``ok`` with a
    floor of 20% of S0) while the first two echoes still show the fast decay. Where the
    all-echo fits are not short, it counts only when no later echo lies clearly above the
    second (:func:`_second_echo_depressed`): a decay onto a plateau does not rise again, while a
    second echo below a later one is depressed on its own (fat out of phase, ringing), not decayed
    (phantom seed 38, ``clinical``: normal apical sectors of 11-19 pixels, median curve 119, 86,
    85, 94, 66, ..., read 7-8 ms from their first two echoes and were ``below_range``, severe).
    ``None`` (the region stays ``fit_failed``) when fewer than ``region.min_pixels`` or
    ``region.min_usable_share`` of the pixels have a usable fit.
    """
    if _too_few_usable(fits, region):
        return None
    ok = fits.status == status_code(Status.OK)
    n_below = int((fits.status == status_code(Status.BELOW_RANGE)).sum())
    status, value, _, _ = censored_median(fits.t2star_ms[ok], n_below, 0)
    if status is Status.BELOW_RANGE:
        return options.bounds_ms(te_ms)[0]
    if status is not Status.OK:
        return None
    if value >= region.floor_truncation_below_ms and _second_echo_depressed(images, mask):
        return value
    return min(value, two_echo_ms)


def _too_few_usable(fits: _PixelSubset, region: RegionOptions) -> bool:
    """Whether too few pixels have a usable fit (a value or a bound).

    Fewer than ``region.min_pixels``, or than ``region.min_usable_share`` of the region.
    """
    usable = np.isin(fits.status, (status_code(Status.OK), status_code(Status.BELOW_RANGE)))
    n_usable = int(usable.sum())
    return n_usable < region.min_pixels or n_usable < region.min_usable_share * usable.size


def _second_echo_depressed(images: np.ndarray, mask: np.ndarray) -> bool:
    """Whether a later echo lies clearly above the second one, pixel by pixel.

    For each later echo the median over the region of its difference to the second echo
    (paired, so coil sensitivities cancel) is compared with its standard error from the median
    absolute deviation; more than :data:`_DEPRESSED_ECHO_Z` standard errors above zero is clear.
    """
    later = images[2:, mask].astype(float) - images[1, mask].astype(float)
    median = np.median(later, axis=1)
    mad = np.median(np.abs(later - median[:, None]), axis=1)
    standard_error = 1.2533 * 1.4826 * mad / math.sqrt(later.shape[1])
    return bool(np.any(median > _DEPRESSED_ECHO_Z * standard_error))


def _two_echo_t2star(first_echoes: np.ndarray, te_ms: np.ndarray) -> float:
    """T2* (ms) of the decay between the medians of the first two echoes ``[2, P]``.

    ``inf`` when the median does not decay between them. A floor only slows that decay, so it
    is an upper bound of the T2* (as long as nothing depresses the second echo).
    """
    first, second = np.median(first_echoes.astype(float), axis=1)
    if not (second > 0 and first > second):
        return math.inf
    return float((te_ms[1] - te_ms[0]) / math.log(first / second))


def _bounded_by_first_fit(
    n_pixels: int,
    truncation: tuple[np.ndarray, float],
    two_echo_ms: float,
    floor_truncation_below_ms: float,
    reasons: list[str],
    details: dict[str, Any],
    region: str,
) -> RegionResult:
    """A short-T2* region with fewer than two echoes above its floor: a bound, not a value.

    Two echoes would fit the floor as signal. The bound is the larger of the region's first
    estimate and ``two_echo_ms`` (:func:`_two_echo_t2star`, an upper bound) when the latter is
    short (below ``floor_truncation_below_ms``): the first estimate alone is no bound of the
    truth where it is the lower fit bound (the all-echo median ``below_range``: a clean true
    2.4 ms region at SNR 15 read "below 1.49 ms") or the all-echo median (close to the truth
    without an artifact floor, on either side of it). A region whose median curve shows no
    short decay at all (every echo in the floor) keeps its first estimate.
    """
    keep, first_ms = truncation
    bound_ms = max(first_ms, two_echo_ms) if two_echo_ms < floor_truncation_below_ms else first_ms
    reasons += [f"echoes_above_floor={int(keep.sum())}", f"below_{bound_ms:.3g}ms"]
    return RegionResult.without_value(
        region,
        n_pixels,
        Status.BELOW_RANGE,
        bound_ms=bound_ms,
        qc_reasons=tuple(reasons),
        **details,
    )


def quantify_region(
    images: np.ndarray,
    te_ms: np.ndarray,
    mask: np.ndarray,
    config: T2StarConfig,
    *,
    sigma: float | None = None,
    region: str = "roi",
    noise: SliceNoise | None = None,
    roi: str | None = None,
    pixel_fits: PixelFits | None = None,
    bound_failed_fits: bool = True,
) -> RegionResult:
    """T2* of the pixels in ``mask`` by the configured estimator.

    ``mean_signal`` fits the region's mean magnitude per echo (the paper's method).
    ``median_pixel`` fits every pixel and reports the censored median of the usable fits
    (:func:`censored_median`): pixels whose fit ends on the lower bound rank below every
    measured value. Pixels on the upper bound are failed fits (a myocardial curve that does not
    decay is a flat floor with ghosts, not a T2* of 200 ms; counting them as censored above
    raised a true 2.1 ms to 7-10 ms on the phantom); a region where they are the majority is
    ``out_of_range``. The region is ``fit_failed`` when fewer than ``region.min_pixels`` pixels,
    or less than ``region.min_usable_share`` of them, have a usable fit (a value or a bound);
    ``below_range`` (with the bound in ``bound_ms``) when the middle rank is below the lower
    bound. Pixel fits are accepted by R^2 (``fit.min_r2``); with ``fit.noise_test_level`` a
    pixel fit below it also counts when its residuals are noise and its signal stays above the
    noise floor (a normal heart at low SNR), but only in a region that is not short: one whose
    first estimate from the R^2-accepted fits is at least ``region.floor_truncation_below_ms``
    or that has none (there a flat ghost floor would pass the test with a long T2*). A
    region-level fit of the mean signal is no remedy for short T2*: on the phantom it
    returned 10-50 ms for a true 2-4 ms (blood partial volume dominates the late echoes).
    Instead, a region whose first estimate (from a trustworthy first fit; see
    :func:`_first_estimate_ms`) is below ``region.floor_truncation_below_ms`` is refitted on
    its echoes above the wall's own late-echo floor (:func:`floor_truncation`), and ``method``
    ends in ``/first_N_echoes``. When only the first echo is above that floor (or the second
    only just: ``region.floor_factor_two_echoes``), two echoes would fit the floor as signal
    (a true 2.1 ms read 3.6 ms, +69%): the region is ``below_range`` with its first estimate as
    the bound (:func:`_bounded_by_first_fit`;
    reason ``echoes_above_floor=1``, or 0).

    Args:
        images: Magnitude images ``[E, H, W]``.
        te_ms: Echo times [E] in ms.
        mask: Boolean ``[H, W]`` region of interest (used as given, no erosion).
        config: T2* settings.
        sigma: Noise SD per channel; see :func:`slice_noise` (ignored when ``noise`` is given).
        region: Name written into the result.
        noise: The slice's noise model; ``None`` to work it out here.
        roi: Name of the ROI for ``method`` (default ``config.region.wall``).
        pixel_fits: ``median_pixel`` only: earlier pixel fits of this slice (same options and
            noise SD) to reuse and extend; ``None`` fits every pixel of ``mask``.
        bound_failed_fits: ``median_pixel`` only: a region where neither the R^2-accepted nor
            the noise-accepted pixel fits give a first estimate (too few usable) but whose first
            two echoes decay fast (``two_echo_ms`` below ``region.floor_truncation_below_ms``,
            the second echo not depressed) is short, with that decay as its first estimate,
            instead of ``fit_failed``: the most severe iron, whose pixel fits fail on the floor
            (the paper's 2.1 ms patient, phantom seeds 37 and 48). :func:`quantify_slice` sets
            it for the global wall only: in a sector, ghost lines or fat make the first two
            echoes of a normal wall decay fast on their own (phantom seed 38, ``hard``: eight
            normal sectors read severe).

    Returns:
        :class:`RegionResult`.
    """
    images, te_ms, mask = np.asarray(images), np.asarray(te_ms, dtype=float), np.asarray(mask, bool)
    _check_slice(images, te_ms, mask)
    if noise is None:
        noise = slice_noise(images, config, sigma)
    options = noise.options
    estimator = config.region.estimator
    details: dict[str, Any] = {
        "method": f"{estimator}/{roi or config.region.wall}/{options.model if options else 'none'}",
        "noise_sigma": np.nan if noise.sigma is None else noise.sigma,
        "n_coils": np.nan if noise.sigma is None or options is None else float(options.n_coils),
    }
    reasons = list(noise.reasons)
    n_pixels = int(mask.sum())
    if n_pixels == 0:
        return RegionResult.without_value(region, 0, Status.EMPTY_MASK, **details)
    if n_pixels < config.region.min_pixels:
        return RegionResult.without_value(region, n_pixels, Status.TOO_FEW_PIXELS, **details)
    if options is None:
        return RegionResult.without_value(
            region, n_pixels, Status.NO_NOISE_ESTIMATE, qc_reasons=tuple(reasons), **details
        )
    if n_pixels < config.qc.min_pixels:
        reasons.append(f"few_pixels={n_pixels}")
    low_bound_ms = options.bounds_ms(te_ms)[0]
    if estimator == "mean_signal":
        curve = images[:, mask].T.astype(float).mean(axis=0)
        fit = fit_curves(te_ms, curve, options, noise.sigma).curve(())
        status, value, ci_low, ci_high = (
            fit.status,
            fit.t2star_ms,
            fit.ci_low_ms,
            fit.ci_high_ms,
        )
        s0, r2 = fit.s0, fit.r2
    else:
        cache = pixel_fits if pixel_fits is not None else PixelFits(mask.shape)
        fits = cache.fit(images, te_ms, mask, options, noise.sigma)
        r2_fits = fits.r2_only()
        two_echo_ms = _two_echo_t2star(images[:2, mask], te_ms)
        first_ms = _first_estimate_ms(
            images, te_ms, mask, r2_fits, options, config.region, two_echo_ms
        )
        if first_ms is not None and first_ms < config.region.floor_truncation_below_ms:
            # short by its R^2-accepted fits: a fit that passes only as noise is more likely
            # a late-echo floor (ghosts) fitted with a long T2*, so R^2 alone decides here
            fits, options = r2_fits, dataclasses.replace(options, noise_test_level=None)
        elif r2_fits is not fits:
            first_ms = _first_estimate_ms(
                images, te_ms, mask, fits, options, config.region, two_echo_ms
            )
        if (
            first_ms is None
            and bound_failed_fits
            and _too_few_usable(fits, config.region)
            and two_echo_ms < config.region.floor_truncation_below_ms
            and not _second_echo_depressed(images, mask)
        ):
            first_ms = two_echo_ms
            fits, options = r2_fits, dataclasses.replace(options, noise_test_level=None)
        truncation = _short_t2star_echoes(images, te_ms, mask, first_ms, config.region)
        if truncation is not None and truncation[0].sum() < 2:
            return _bounded_by_first_fit(
                n_pixels,
                truncation,
                two_echo_ms,
                config.region.floor_truncation_below_ms,
                reasons,
                details,
                region,
            )
        if truncation is not None:
            keep = truncation[0]
            refit = fit_curves(
                te_ms[keep],
                images[keep][:, mask].T.astype(float),
                options,
                noise.sigma,
                min_echoes=2,
            )
            fits = _PixelSubset(
                refit.t2star_ms, refit.s0, refit.r2, refit.status, refit.noise_test_only
            )
            n_kept = int(keep.sum())
            details["method"] += f"/first_{n_kept}_echoes"
            if n_kept < config.qc.min_fit_echoes:
                reasons.append(f"fit_echoes={n_kept}")
        ok = fits.status == status_code(Status.OK)
        n_below = int((fits.status == status_code(Status.BELOW_RANGE)).sum())
        n_above = int((fits.status == status_code(Status.OUT_OF_RANGE)).sum())
        # Only the lower bound censors: a myocardial pixel at the upper bound (200 ms) is a
        # curve that does not decay (flat floor with ghosts), a failed fit, not long T2*.
        if n_above > n_pixels / 2:
            reasons.append(f"non_decaying_pixels={n_above / n_pixels:.2f}")
            return RegionResult.without_value(
                region, n_pixels, Status.OUT_OF_RANGE, qc_reasons=tuple(reasons), **details
            )
        n_usable = int(ok.sum()) + n_below
        usable_share = n_usable / n_pixels
        if _too_few_usable(fits, config.region):
            reasons.append(f"usable_share={usable_share:.2f}")
            return RegionResult.without_value(
                region, n_pixels, Status.FIT_FAILED, qc_reasons=tuple(reasons), **details
            )
        if 1 - usable_share > config.qc.max_failed_share:
            reasons.append(f"failed_pixels={1 - usable_share:.2f}")
        censored_share = n_below / n_usable
        if censored_share > config.qc.max_censored_share:
            reasons.append(f"censored_pixels={censored_share:.2f}")
        status, value, ci_low, ci_high = censored_median(fits.t2star_ms[ok], n_below, 0)
        s0 = float(np.median(fits.s0[ok])) if ok.any() else np.nan
        r2 = float(np.median(fits.r2[ok])) if ok.any() else np.nan
    if status is Status.BELOW_RANGE:
        reasons.append(f"below_{low_bound_ms:.3g}ms")
        return RegionResult.without_value(
            region,
            n_pixels,
            status,
            bound_ms=low_bound_ms,
            qc_reasons=tuple(reasons),
            **details,
        )
    if status is not Status.OK:
        return RegionResult.without_value(
            region, n_pixels, status, qc_reasons=tuple(reasons), **details
        )
    if not r2 >= config.qc.min_r2:
        reasons.append(f"r2={r2:.2f}")
    reasons += _ci_width_reasons(value, ci_low, ci_high, config.qc)
    return RegionResult(
        region,
        value,
        ci_low,
        ci_high,
        s0,
        r2,
        n_pixels,
        Status.OK,
        qc_reasons=tuple(reasons),
        **details,
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
    noise: SliceNoise | None = None,
    pixel_fits: PixelFits | None = None,
) -> list[RegionResult]:
    """T2* of the global myocardium and of its six sectors in one slice.

    With ``median_pixel`` each pixel is fitted once (the sectors reuse the global fits).

    Args:
        images: Magnitude images ``[E, H, W]``.
        te_ms: Echo times [E] in ms.
        labels: ``[H, W]`` with 0 background, 1 blood pool, 2 myocardium.
        rv_insertion: ``(row, col)`` of the anterior RV insertion point; NaN or ``None`` when
            unknown (then ``config.region.rv_insertion_fallback`` decides: the sector rows say
            ``estimated_insertion_point=<confidence>`` in ``qc_reasons``, or are
            ``no_reference_point`` with the reason when the point is not found confidently).
        config: T2* settings.
        phase_encoding_axis: 0 (rows), 1 (columns) or -1 (unknown); shapes the wall core and
            the background used for the noise level.
        pixel_spacing_mm: ``[2]`` (row, column) spacing in mm; converts
            ``region.core_erosion_mm`` to pixels (:func:`~cmrseg.t2star.core_erosion_px`).
            Needed when ``region.wall`` is ``core`` with an erosion above 0 mm.
        sigma: Noise SD per channel; see :func:`slice_noise` (ignored when ``noise`` is given).
        noise: The slice's noise model from :func:`slice_noise` (it depends on the images
            only, so the masks of one slice can share it); ``None`` to work it out here.
        pixel_fits: Earlier pixel fits of this slice to reuse and extend (e.g. of its
            reference mask, when a predicted mask is quantified); ``None``: fits of this call.

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
    if noise is None:
        noise = slice_noise(images, config, sigma, phase_encoding_axis)
    if pixel_fits is None:
        pixel_fits = PixelFits(labels.shape)

    def _region(
        mask: np.ndarray, name: str, extra: tuple[str, ...] = (), roi: str | None = None
    ) -> RegionResult:
        result = quantify_region(
            images,
            te_ms,
            mask,
            config,
            region=name,
            noise=noise,
            roi=roi,
            pixel_fits=pixel_fits,
            bound_failed_fits=name == "global",
        )
        if not extra:
            return result
        return dataclasses.replace(result, qc_reasons=(*result.qc_reasons, *extra))

    results = [_region(wall, "global")]
    whole = results[0]
    off_cavity = _off_cavity_wall(wall, labels, config, phase_encoding_axis, whole)
    if off_cavity is not None:
        fewer_lines = _region(off_cavity, "global", roi=config.region.wall + OFF_CAVITY_ROI_SUFFIX)
        if fewer_lines.status is Status.OK:  # else the whole wall's row stands
            if whole.t2star_ms < config.region.floor_truncation_below_ms:
                results[0] = _geometric_mean_row(whole, fewer_lines, config.qc)
            else:
                deblurred = _deblurred_core(
                    images, te_ms, labels, wall, config, noise, phase_encoding_axis
                )
                results[0] = (
                    fewer_lines
                    if deblurred is None
                    else _geometric_mean_row(fewer_lines, deblurred, config.qc)
                )
    point, extra = sector_anchor(images, labels, rv_insertion, config)
    if point is None:
        results += [
            RegionResult.without_value(name, 0, Status.NO_REFERENCE_POINT, qc_reasons=extra)
            for name in REGIONS[1:]
        ]
        return results
    sectors = sector_map(labels, point)
    for k, name in enumerate(REGIONS[1:], start=1):
        results.append(_region(wall & (sectors == k), name, extra))
    return results


def _off_cavity_wall(
    wall: np.ndarray,
    labels: np.ndarray,
    config: T2StarConfig,
    phase_encoding_axis: int,
    whole: RegionResult,
) -> np.ndarray | None:
    """The wall on lines off the cavity for the global region, or ``None`` to keep ``whole``.

    Only with ``region.global_lines: off_cavity``, a known phase-encoding axis, at least
    ``region.global_lines_min_pixels`` such pixels and a whole-wall row that is ``ok``: where
    the whole wall was ``fit_failed`` or ``below_range`` the wall off those lines still sits on
    a floor, and on the phantom it read ``ok`` 30% to 60% long. The caller keeps ``whole`` when
    the row on these pixels is not ``ok`` (too few usable fits there), and combines the two
    when ``whole`` is short (:func:`_geometric_mean_row`).
    """
    region = config.region
    if region.global_lines != "off_cavity" or phase_encoding_axis not in (0, 1):
        return None
    if whole.status is not Status.OK:
        return None
    off_cavity = wall & off_cavity_lines_mask(labels, phase_encoding_axis)
    return off_cavity if off_cavity.sum() >= region.global_lines_min_pixels else None


def _ci_width_reasons(value: float, low: float, high: float, qc: QcOptions) -> list[str]:
    """``ci_width=<w>`` when the relative width of the 95% CI is past ``qc``'s (or unknown)."""
    width = (high - low) / value
    return [] if width <= qc.max_ci_relative_width else [f"ci_width={width:.2f}"]


def _deblurred_core(
    images: np.ndarray,
    te_ms: np.ndarray,
    labels: np.ndarray,
    wall: np.ndarray,
    config: T2StarConfig,
    noise: SliceNoise,
    phase_encoding_axis: int,
) -> RegionResult | None:
    """The whole ``wall`` read on images corrected for the blood's blur, or ``None``.

    Only with ``region.cavity_blur_correction``, an air background, a ghost ratio on the
    cavity's lines below ``region.cavity_max_ghost_ratio`` (:func:`cavity_ghost_ratio`), a
    measurable phase resolution (:func:`phase_resolution`), a blood pool and an ``ok`` row.
    The corrected images get pixel fits of their own. ``method`` names the ROI
    ``<wall>_deblurred``.
    """
    region = config.region
    if not region.cavity_blur_correction:
        return None
    try:
        background = find_background(images)
    except ValueError:
        return None
    ratio = cavity_ghost_ratio(images, labels, wall, background, phase_encoding_axis)
    if ratio is None or ratio >= region.cavity_max_ghost_ratio:
        return None
    fraction = phase_resolution(images, background, phase_encoding_axis)
    if fraction is None:
        return None
    corrected = deblurred_wall(images, labels, wall, fraction, phase_encoding_axis)
    if corrected is None:
        return None
    row = quantify_region(
        corrected,
        te_ms,
        wall,
        config,
        region="global",
        noise=noise,
        roi=region.wall + DEBLURRED_ROI_SUFFIX,
    )
    return row if row.status is Status.OK else None


def _geometric_mean_row(first: RegionResult, second: RegionResult, qc: QcOptions) -> RegionResult:
    """A global row that is the geometric mean of two reads of the wall.

    A short wall's: its whole core's and off-cavity rows. On the cavity's phase-encoding lines
    the blood's ghosts lengthen a short wall's T2*; off them the wall is a few lateral pixels,
    read short or long by the Gibbs ringing and partial volume of its own. On the phantom's
    short walls the errors of the two rows correlate at only 0.4-0.8, and their geometric mean
    was the more accurate on both presets (pre-registration 28, benchmarks/README.md); the
    off-cavity row alone was not (27). A long wall's, with ``region.cavity_blur_correction``:
    its off-cavity row and its whole core corrected for the blood's blur
    (:func:`_deblurred_core`). The CI is the geometric mean of the two rows' CI ends, about the
    mean of their widths: what the mean of two estimates needs at most, whatever their
    correlation. ``n_pixels``, the fit details and the QC reasons are ``first``'s, with
    ``ci_width`` judged on the combined CI; ``s0`` is the geometric mean, ``r2`` the lower of
    the two. ``method`` names both ROIs (``core+core_off_cavity``,
    ``core_off_cavity+core_deblurred``).
    """
    value = math.sqrt(first.t2star_ms * second.t2star_ms)
    low = math.sqrt(first.ci_low_ms * second.ci_low_ms)
    high = math.sqrt(first.ci_high_ms * second.ci_high_ms)
    reasons = [r for r in first.qc_reasons if not r.startswith("ci_width=")]
    reasons += _ci_width_reasons(value, low, high, qc)
    parts = first.method.split("/")  # estimator/roi/model[/first_N_echoes]
    parts[1] += "+" + second.method.split("/")[1]
    return dataclasses.replace(
        first,
        t2star_ms=value,
        ci_low_ms=low,
        ci_high_ms=high,
        s0=math.sqrt(first.s0 * second.s0),
        r2=min(first.r2, second.r2),
        method="/".join(parts),
        qc_reasons=tuple(reasons),
    )


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


def sector_anchor(
    images: np.ndarray,
    labels: np.ndarray,
    rv_insertion: tuple[float, float] | np.ndarray | None,
    config: T2StarConfig,
) -> tuple[tuple[float, float] | None, tuple[str, ...]]:
    """The sector anchor of a slice (``None``: no reference point) and the QC reasons it brings.

    The marked ``rv_insertion`` when finite, else ``config.region.rv_insertion_fallback``
    decides: ``image`` (:func:`~cmrseg.t2star.estimate_rv_insertion_from_image`, refused below
    ``rv_insertion_min_confidence``), ``standard_orientation`` or ``none``.

    Args:
        images: ``[E, H, W]`` magnitudes of the slice.
        labels: ``[H, W]`` contract labels.
        rv_insertion: ``(row, col)`` of the anterior RV insertion point, NaN or ``None``.
        config: T2* settings.
    """
    if rv_insertion is not None and np.all(np.isfinite(np.asarray(rv_insertion, dtype=float))):
        row, col = (float(v) for v in rv_insertion)
        return (row, col), ()
    fallback = config.region.rv_insertion_fallback
    if fallback == "none":
        return None, ()
    if fallback == "standard_orientation":
        point = estimate_rv_insertion(labels, config.region.standard_rv_angle_deg)
        if point is not None:
            log.info("rv_insertion unknown: assumed standard orientation, at (%.1f, %.1f)", *point)
        return point, ("estimated_insertion_point:standard_orientation",)
    estimate = estimate_rv_insertion_from_image(images, labels)
    if estimate is None:
        return None, ("insertion_point_not_found",)
    confidence = f"{estimate.confidence:.2f}"
    if estimate.confidence < config.region.rv_insertion_min_confidence:
        log.info("rv_insertion unknown and not found with confidence (%s)", confidence)
        return None, (f"insertion_point_confidence={confidence}",)
    log.info("rv_insertion unknown: found in the image at (%.1f, %.1f)", *estimate.point)
    return estimate.point, (f"estimated_insertion_point={confidence}",)


def t2star_map(
    images: np.ndarray,
    te_ms: np.ndarray,
    labels: np.ndarray,
    config: T2StarConfig,
    sigma: float | None = None,
) -> MapFit:
    """Pixel-wise T2* inside the myocardium (``labels == 2``); NaN elsewhere.

    Every pixel fit the fit options accept has a value (also one that ``fit.noise_test_level``
    alone accepted, which a short region's row does not count: :func:`quantify_region`).

    Args:
        images: Magnitude images ``[E, H, W]``.
        te_ms: Echo times [E] in ms.
        labels: ``[H, W]`` with 0 background, 1 blood pool, 2 myocardium.
        config: T2* settings (``fit`` and ``noise_sigma``).
        sigma: Noise SD per channel; see :func:`slice_noise` (no model that may be fitted: every
            pixel ``empty_mask``).

    Returns:
        :class:`MapFit` with arrays ``[H, W]``; ``t2star_ms`` is what ``t2star_map_ms`` stores.
    """
    images, te_ms, labels = np.asarray(images), np.asarray(te_ms, dtype=float), np.asarray(labels)
    _check_slice(images, te_ms, labels)
    noise = slice_noise(images, config, sigma)
    if noise.options is None:
        return fit_map(images, te_ms, config.fit, mask=np.zeros(labels.shape, bool))
    return fit_map(images, te_ms, noise.options, mask=labels == MYOCARDIUM, sigma=noise.sigma)
