"""Echo times another file was not acquired with: the decay resampled to the model's echo times.

A network trained on echoes at given echo times (TEs) sees, on a file with other TEs, the
signal of each pixel resampled to the training TEs: log-linear interpolation between the two
nearest acquired echoes (exact for a mono-exponential decay, the model of the T2* fit), and
log-linear extrapolation from the two outermost echoes by at most one echo spacing of the file.
A training TE further outside the acquired range cannot be read from the file, which is refused.
"""

from __future__ import annotations

import numpy as np

from cmrseg.core.errors import InputError

__all__ = ["check_te_coverage", "resample_decay", "same_echo_times"]

_FLOOR = 1e-6  # relative to the pixel's largest echo: keeps log() finite where a pixel is zero
_TE_RTOL = 0.005  # echo times within 0.5 % are the same echo


def same_echo_times(te_ms: np.ndarray, target_te_ms: np.ndarray) -> bool:
    """Whether two TE lists are the same echoes (same length, each within 0.5 %)."""
    te, target = np.asarray(te_ms, float), np.asarray(target_te_ms, float)
    return te.shape == target.shape and bool(np.allclose(te, target, rtol=_TE_RTOL, atol=0.0))


def check_te_coverage(te_ms: np.ndarray, target_te_ms: np.ndarray, where: str) -> None:
    """Refuse a slice whose echoes cannot give the signal at ``target_te_ms``.

    Args:
        te_ms: The slice's echo times, ms ``[E]``, increasing.
        target_te_ms: The model's echo times, ms ``[E']``.
        where: Names the file (and slice) in the message.

    Raises:
        InputError: Fewer than 2 echoes, or a target TE more than one echo spacing outside
            the acquired range.
    """
    te, target = np.asarray(te_ms, float), np.asarray(target_te_ms, float)
    needs = f"the model needs echoes covering TE {target.min():.2f}-{target.max():.2f} ms"
    if te.size < 2:
        raise InputError(f"{where}: {te.size} echo; {needs} (at least 2 echoes)")
    reach = (te[-1] - te[0]) / (te.size - 1)
    if target.min() < te[0] - reach or target.max() > te[-1] + reach:
        raise InputError(
            f"{where}: echoes at TE {te[0]:.2f}-{te[-1]:.2f} ms; {needs} "
            f"(within one echo spacing, {reach:.2f} ms, of the acquired ones)"
        )


def resample_decay(images: np.ndarray, te_ms: np.ndarray, target_te_ms: np.ndarray) -> np.ndarray:
    """Each pixel's signal at other echo times, log-linear in TE.

    Args:
        images: float32 ``[E, H, W]`` magnitudes >= 0 at ``te_ms``.
        te_ms: ms ``[E]``, strictly increasing, ``E >= 2``.
        target_te_ms: ms ``[E']``.

    Returns:
        float32 ``[E', H, W]``: between two acquired echoes the geometric interpolation of
        their signals, outside the range the extrapolated line of the two outermost echoes.
    """
    te = np.asarray(te_ms, np.float64)
    target = np.asarray(target_te_ms, np.float64)
    floor = _FLOOR * max(float(images.max()), 1e-30)
    log_signal = np.log(np.maximum(images.astype(np.float64), floor))
    upper = np.clip(np.searchsorted(te, target, side="right"), 1, te.size - 1)
    lower = upper - 1
    weight = ((target - te[lower]) / (te[upper] - te[lower]))[:, None, None]
    out = (1.0 - weight) * log_signal[lower] + weight * log_signal[upper]
    return np.exp(out).astype(np.float32)
