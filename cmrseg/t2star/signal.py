r"""Signal models of multi-echo gradient-echo magnitude data and the noise floor.

Notation: ``te_ms`` echo times [E] in ms, ``s0`` the signal at TE = 0 (image units),
``t2star_ms`` the transverse relaxation time, ``sigma`` the standard deviation of the
Gaussian noise of each real and imaginary coil channel (image units), ``n_coils`` the number
of receiver coils combined by root-sum-of-squares (RSS).

A noise-free amplitude :math:`A` measured through ``n_coils`` coils and RSS follows a
noncentral chi distribution with :math:`2N` degrees of freedom, whose first moment is

.. math::

    E[M] = \sigma \sqrt{2} \frac{\Gamma(N + 1/2)}{\Gamma(N)}
           \, {}_1F_1\!\left(-\tfrac12; N; -\frac{A^2}{2\sigma^2}\right),

which tends to :math:`A` at high SNR and to the noise floor
:math:`\sigma \sqrt{2}\,\Gamma(N+1/2)/\Gamma(N)` (2.74 sigma for 4 coils) where the signal
has decayed. Averaging magnitudes over a region keeps this floor, so the correction is needed
for region fits as much as for pixel fits.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats
from skimage.filters import threshold_otsu

__all__ = [
    "estimate_noise_sigma",
    "mono_exp",
    "mono_exp_noise_corrected",
    "mono_exp_offset",
    "noise_floor_mean",
    "truncation_mask",
]


def mono_exp(te_ms: np.ndarray, s0: float, t2star_ms: float) -> np.ndarray:
    """Mono-exponential decay ``S(TE) = s0 * exp(-TE / T2*)``.

    Args:
        te_ms: Echo times in ms, any shape.
        s0: Signal at TE = 0.
        t2star_ms: T2* in ms (> 0).

    Returns:
        Signal, shape of ``te_ms``.
    """
    return s0 * np.exp(-np.asarray(te_ms) / t2star_ms)


def mono_exp_offset(te_ms: np.ndarray, s0: float, t2star_ms: float, offset: float) -> np.ndarray:
    """Mono-exponential decay plus a constant: ``S(TE) = s0 * exp(-TE / T2*) + offset``.

    The offset absorbs a noise floor (or a long-T2* component) empirically.
    """
    return mono_exp(te_ms, s0, t2star_ms) + offset


def _chi_floor_factor(n_coils: int) -> float:
    """``sqrt(2) * Gamma(N + 1/2) / Gamma(N)``: mean of pure-noise RSS magnitude over sigma."""
    return float(np.sqrt(2.0) * np.exp(special.gammaln(n_coils + 0.5) - special.gammaln(n_coils)))


def noise_floor_mean(amplitude: np.ndarray, sigma: np.ndarray | float, n_coils: int) -> np.ndarray:
    """Expected RSS magnitude (noncentral-chi first moment) of a noise-free amplitude.

    Args:
        amplitude: Noise-free signal amplitude ``A >= 0``, any shape.
        sigma: Noise SD per real/imaginary channel, broadcastable to ``amplitude``.
        n_coils: Number of coils combined by root-sum-of-squares (>= 1).

    Returns:
        ``E[M]``, shape of ``amplitude``; ``amplitude`` itself where ``sigma == 0``.
    """
    return _noise_floor_mean_and_slope(np.asarray(amplitude, dtype=float), sigma, n_coils)[0]


def _noise_floor_mean_and_slope(
    amplitude: np.ndarray, sigma: np.ndarray | float, n_coils: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``E[M]`` and ``dE[M]/dA`` of :func:`noise_floor_mean` (same shape)."""
    if n_coils < 1:
        raise ValueError(f"n_coils must be >= 1, got {n_coils}")
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), amplitude.shape)
    noiseless = sigma <= 0
    safe_sigma = np.where(noiseless, 1.0, sigma)
    snr = amplitude / safe_sigma
    mean = amplitude.astype(float, copy=True)
    slope = np.ones_like(mean)
    # High SNR: the asymptotic series (exact to ~1e-14 there, and much cheaper than 1F1).
    high = ~noiseless & (snr >= 20.0 + 2.0 * n_coils)
    mean[high], slope[high] = _floor_mean_asymptotic(amplitude[high], snr[high], n_coils)
    low = ~noiseless & ~high
    if np.any(low):
        factor = _chi_floor_factor(n_coils)
        x = -0.5 * snr[low] ** 2
        mean[low] = safe_sigma[low] * factor * special.hyp1f1(-0.5, n_coils, x)
        slope[low] = factor * snr[low] / (2.0 * n_coils) * special.hyp1f1(0.5, n_coils + 1, x)
    return mean, slope


def _floor_mean_asymptotic(
    amplitude: np.ndarray, snr: np.ndarray, n_coils: int, n_terms: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """Large-SNR series ``E[M] = A * sum_n c_n x^-n``, ``x = SNR^2 / 2``, and its derivative."""
    inv_x = 2.0 / snr**2
    series = np.ones_like(snr)
    slope = np.ones_like(snr)
    coefficient = 1.0
    power = np.ones_like(snr)
    for n in range(1, n_terms):
        coefficient *= (n - 1.5) * (n - 0.5 - n_coils) / n
        power = power * inv_x
        series += coefficient * power
        slope += coefficient * (1 - 2 * n) * power
    return amplitude * series, slope


def mono_exp_noise_corrected(
    te_ms: np.ndarray, s0: float, t2star_ms: float, sigma: float, n_coils: int
) -> np.ndarray:
    """Expected RSS magnitude of a mono-exponential decay: noise floor included.

    ``S(TE) = E[M](s0 * exp(-TE / T2*); sigma, n_coils)``, see :func:`noise_floor_mean`.
    """
    return noise_floor_mean(mono_exp(te_ms, s0, t2star_ms), sigma, n_coils)


def truncation_mask(
    signal: np.ndarray, sigma: np.ndarray | float, n_coils: int, factor: float, min_echoes: int
) -> np.ndarray:
    """Echoes kept by the clinical truncation method: drop late echoes near the noise floor.

    An echo is kept while the signal of it and of every earlier echo exceeds ``factor`` times
    the pure-noise floor ``sigma * sqrt(2) Gamma(N + 1/2) / Gamma(N)``; the first ``min_echoes``
    are always kept so that a fit remains possible.

    Args:
        signal: Magnitude curves ``[..., E]``.
        sigma: Noise SD per channel, broadcastable to ``signal[..., 0]``.
        n_coils: Number of RSS-combined coils.
        factor: Threshold in units of the noise-floor mean.
        min_echoes: Leading echoes that are always kept.

    Returns:
        Boolean mask ``[..., E]``, a prefix of ``True`` along the echo axis.
    """
    threshold = factor * _chi_floor_factor(n_coils) * np.asarray(sigma, dtype=float)
    above = signal > np.expand_dims(threshold, -1)
    keep = np.logical_and.accumulate(above, axis=-1)
    keep[..., :min_echoes] = True
    return keep


def estimate_noise_sigma(
    images: np.ndarray, n_coils: int, background: np.ndarray | None = None
) -> float:
    """Estimate the per-channel noise SD from signal-free background pixels.

    Background magnitudes follow a chi distribution with ``2 * n_coils`` degrees of freedom:
    ``M**2 / sigma**2 ~ chi2(2N)``. The median of ``M**2`` over every echo of the background
    is matched to the median of that law, which tolerates a few tissue pixels in the mask.

    Without ``background`` the air is found automatically: the darkest class of Otsu's
    threshold on the log first echo, split again while its mean signal decays across echoes
    like tissue (noise does not decay). Images without air (tight field of view) are refused.

    Args:
        images: Magnitude images ``[E, H, W]``.
        n_coils: Number of RSS-combined coils.
        background: Boolean mask ``[H, W]`` of signal-free pixels, or ``None`` to detect it.

    Returns:
        Noise SD per channel in image units.

    Raises:
        ValueError: No usable background (too few pixels, or the candidate air decays like tissue).
    """
    if images.ndim != 3:
        raise ValueError(f"images must be [E, H, W], got shape {images.shape}")
    if background is None:
        background = _find_background(images)
    background = np.asarray(background, dtype=bool)
    if background.shape != images.shape[1:]:
        raise ValueError(f"background mask {background.shape} != image {images.shape[1:]}")
    n_pixels = int(background.sum())
    if n_pixels < 50:
        raise ValueError(f"only {n_pixels} background pixels; need >= 50 to estimate noise")
    squares = images[:, background].astype(float) ** 2
    return float(np.sqrt(np.median(squares) / stats.chi2.median(2 * n_coils)))


def _find_background(images: np.ndarray, max_splits: int = 3) -> np.ndarray:
    """Boolean ``[H, W]`` mask of air: dark pixels whose mean signal does not decay."""
    first = images[0].astype(float)
    log_first = np.log(first + 1e-6 * max(float(first.max()), 1e-30))
    candidates = np.ones(first.shape, dtype=bool)
    for _ in range(max_splits):
        values = log_first[candidates]
        if values.size < 50 or values.min() == values.max():
            break
        candidates &= log_first < threshold_otsu(values)
        echo_means = images[:, candidates].mean(axis=1)
        if echo_means[-1] >= 0.8 * echo_means[0]:
            return candidates
    raise ValueError("no signal-free background found (dark pixels decay like tissue); pass sigma")
