"""The LV blood's blur into the wall along the phase-encoding axis, and its correction.

At reduced phase resolution (40% on the phantom, typical of clinical T2* scans) each pixel is
the image convolved along the phase-encoding axis with the point-spread function of the acquired
k-space window. The bright, slowly decaying blood pool then spreads into the wall on the lines
that cross it (the cavity's lines): the blur's main lobe adds blood signal, its Gibbs side lobes
take some away (a constant over the echoes, while the wall decays), and the wall there reads off
its true T2* (on the phantom, walls of 10-45 ms read 4.5% to 8.6% short in the 30-degree bins on
the cavity's lines, benchmarks/README.md). This module estimates the window from the background
noise, corrects the wall for the blood that the window spreads into it, and measures how
strongly motion ghosts load the same lines (where they dominate, the correction would read the
ghosts as wall).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from cmrseg.core.labels import BLOOD_POOL, MYOCARDIUM
from cmrseg.t2star.regions import off_cavity_lines_mask, wall_core_mask
from cmrseg.t2star.signal import artifact_free_background

__all__ = [
    "DEBLURRED_ROI_SUFFIX",
    "blood_curve",
    "cavity_ghost_ratio",
    "deblurred_wall",
    "phase_resolution",
    "window_blur",
]

#: Ends the ROI part of a row's ``method`` when the ROI was read on images corrected for the
#: blood's blur (:func:`deblurred_wall`), e.g. ``core_deblurred``.
DEBLURRED_ROI_SUFFIX = "_deblurred"
#: Fewest pixel pairs (phase resolution) or pixels (ghost ratio) an estimate needs.
_MIN_SAMPLES = 20
#: Blood is measured this many pixels inside the pool along the phase-encoding axis.
_BLOOD_EROSION_PX = 3
#: The wall's own blurred weight is floored here: a pixel that the window leaves with less of
#: its wall is mostly something else, and dividing by less would amplify its noise.
_MIN_WALL_WEIGHT = 0.3


def phase_resolution(
    images: np.ndarray, background: np.ndarray, phase_encoding_axis: int
) -> float | None:
    """Share of the k-space lines acquired along the phase-encoding axis, from the noise.

    Noise acquired in a window of ``f x N`` of ``N`` phase-encoding lines and zero-filled
    is correlated between neighbouring pixels along that axis by ``rho = sinc(f)`` (the
    Dirichlet kernel of the window); for root-sum-of-squares magnitude ``M`` of complex
    Gaussian noise the correlation of ``M^2`` is ``rho^2``. It is measured on the artifact-free
    background (:func:`~cmrseg.t2star.signal.artifact_free_background`) and inverted.

    Args:
        images: Magnitude images ``[E, H, W]`` (every echo is a noise sample).
        background: Boolean ``[H, W]`` air mask.
        phase_encoding_axis: 0 (rows) or 1 (columns).

    Returns:
        ``f`` in ``(0, 1]`` (1: no measurable correlation), or ``None`` with fewer than
        :data:`_MIN_SAMPLES` neighbouring pairs, a constant background (zero-filled) or a
        correlation too close to 1 to invert.
    """
    clean = artifact_free_background(background, phase_encoding_axis)
    power = np.moveaxis(images.astype(float) ** 2, phase_encoding_axis + 1, 1)
    clean = np.moveaxis(clean, phase_encoding_axis, 0)
    pairs = clean[:-1] & clean[1:]
    if pairs.sum() < _MIN_SAMPLES:
        return None
    first, second = power[:, :-1][:, pairs], power[:, 1:][:, pairs]
    first, second = first - first.mean(), second - second.mean()
    spread = math.sqrt(float((first**2).mean() * (second**2).mean()))
    if not spread > 0:  # a constant (zero-filled) background
        return None
    correlation = float((first * second).mean()) / spread
    # white noise: a correlation within 3 standard errors of 0 is none (its square root would
    # turn chance into a window of 0.9 and ring where nothing rang)
    if correlation <= 3.0 / math.sqrt(first.size):
        return 1.0
    rho = math.sqrt(correlation)
    if rho >= 0.999:
        return None
    return float(optimize.brentq(lambda f: np.sinc(f) - rho, 1e-3, 1.0))


def window_blur(mask: np.ndarray, fraction: float, phase_encoding_axis: int) -> np.ndarray:
    """``mask`` blurred along the phase-encoding axis by a centred window of its k-space.

    Args:
        mask: ``[H, W]`` (boolean or float).
        fraction: Share of the phase-encoding lines the window keeps, in ``(0, 1]``.
        phase_encoding_axis: 0 (rows) or 1 (columns).

    Returns:
        Float ``[H, W]``: the mask as an acquisition with that window would show it (with the
        Gibbs ringing of the window's sinc, so values below 0 and above 1 occur).
    """
    n = mask.shape[phase_encoding_axis]
    kept = max(1, round(fraction * n))
    window = np.zeros(n)
    window[(np.arange(kept) - kept // 2) % n] = 1.0
    shape = [1, 1]
    shape[phase_encoding_axis] = n
    spectrum = np.fft.fft(mask.astype(float), axis=phase_encoding_axis) * window.reshape(shape)
    return np.real(np.fft.ifft(spectrum, axis=phase_encoding_axis))


def blood_curve(
    images: np.ndarray, labels: np.ndarray, phase_encoding_axis: int
) -> np.ndarray | None:
    """Median signal per echo ``[E]`` of the LV blood away from the wall; ``None`` without blood.

    The pool is eroded :data:`_BLOOD_EROSION_PX` pixels along the phase-encoding axis (its own
    blur with the wall); the whole pool when fewer than :data:`_MIN_SAMPLES` pixels remain.
    """
    blood = labels == BLOOD_POOL
    if not blood.any():
        return None
    inner = wall_core_mask(np.where(blood, MYOCARDIUM, 0), _BLOOD_EROSION_PX, phase_encoding_axis)
    use = inner if inner.sum() >= _MIN_SAMPLES else blood
    return np.median(images[:, use].astype(float), axis=1)


def deblurred_wall(
    images: np.ndarray,
    labels: np.ndarray,
    region: np.ndarray,
    fraction: float,
    phase_encoding_axis: int,
) -> np.ndarray | None:
    """Images whose ``region`` pixels are corrected for the blood the window spreads into them.

    Each pixel of ``region`` becomes ``(M - B(TE) x b) / max(w, 0.3)``, clipped at 0, where
    ``B`` is the blood's curve (:func:`blood_curve`), ``b`` the blood pool and ``w`` the
    myocardium, each blurred by the window (:func:`window_blur`): a linear unmixing that
    takes the blood and the wall as uniform. Other pixels are unchanged. A first-order
    correction of magnitude data: exact for real, in-phase signals; the blood's ghosts are
    not in it (see :func:`cavity_ghost_ratio`).

    Args:
        images: Magnitude images ``[E, H, W]``.
        labels: ``[H, W]`` contract labels (1 blood pool, 2 myocardium).
        region: Boolean ``[H, W]`` pixels to correct (e.g. the wall core).
        fraction: Phase resolution (:func:`phase_resolution`).
        phase_encoding_axis: 0 (rows) or 1 (columns).

    Returns:
        Float ``[E, H, W]``, or ``None`` without a blood pool.
    """
    blood = blood_curve(images, labels, phase_encoding_axis)
    if blood is None:
        return None
    spread = window_blur(labels == BLOOD_POOL, fraction, phase_encoding_axis)[region]
    weight = np.maximum(
        window_blur(labels == MYOCARDIUM, fraction, phase_encoding_axis)[region], _MIN_WALL_WEIGHT
    )
    out = images.astype(float)
    out[:, region] = np.maximum(
        (out[:, region] - blood[:, None] * spread[None]) / weight[None], 0.0
    )
    return out


def cavity_ghost_ratio(
    images: np.ndarray,
    labels: np.ndarray,
    core: np.ndarray,
    background: np.ndarray,
    phase_encoding_axis: int,
) -> float | None:
    """Ghost power on the cavity's lines relative to the wall there, at the last echo.

    Motion ghosts spread along the phase-encoding axis, so the air on the lines that cross the
    blood pool carries them, and the artifact-free air (lines through no tissue) only the noise.
    The ratio is (mean ``M^2`` of the first minus that of the second) over the median ``M^2``
    of the wall ``core`` on the cavity's lines, at the last echo (where the wall is faintest and
    the ghosts of the long-T2* blood strongest). On the phantom the median over slices was
    0.013-0.015 on `clinical` and about 0.05 on `hard` (session 23, benchmarks/README.md).

    Returns:
        The ratio, or ``None`` with fewer than :data:`_MIN_SAMPLES` pixels in any of the three
        sets or a wall without signal there.
    """
    clean = artifact_free_background(background, phase_encoding_axis)
    cavity_lines = ~off_cavity_lines_mask(labels, phase_encoding_axis)
    ghost_air = background & ~clean & cavity_lines
    wall = core & cavity_lines
    if min(clean.sum(), ghost_air.sum(), wall.sum()) < _MIN_SAMPLES:
        return None
    last = images[-1].astype(float) ** 2
    wall_power = float(np.median(last[wall]))
    if wall_power <= 0:
        return None
    return (float(last[ghost_air].mean()) - float(last[clean].mean())) / wall_power
