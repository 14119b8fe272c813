"""Multi-echo GRE signal model and simulated Cartesian acquisition.

Signal of a voxel with proton-density signal ``s0``, fat fraction ``f`` and ``T2*``::

    S(TE) = s0 * exp(-TE / T2*) * ((1 - f) + f * sum_p a_p exp(2 pi i df_p TE))

with the multi-peak fat spectrum ``(df_p, a_p)``, so voxels holding fat and water oscillate
across echoes. The acquisition multiplies the fine-grid object by smooth receiver-coil
sensitivities, keeps only the acquired k-space matrix of the display grid (all readout columns,
``phase_resolution`` of the phase-encoding rows), applies motion (ghosting) and inter-echo
shifts as k-space phase, adds complex Gaussian noise per coil, zero-fills and reconstructs the
root-sum-of-squares magnitude. Blurring and Gibbs ringing along the phase direction and the
noncentral-chi noise floor follow from this, as on a scanner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import scipy.fft as sfft

from cmrseg.synth.config import AcquisitionConfig, FatSpectrum, GridConfig

__all__ = [
    "GYROMAGNETIC_MHZ_PER_T",
    "CoilArray",
    "acquire",
    "fat_phasors",
    "multi_echo_signal",
    "phase_lines",
]

GYROMAGNETIC_MHZ_PER_T = 42.577478  # proton gyromagnetic ratio / 2 pi


def fat_phasors(spectrum: FatSpectrum, field_strength_t: float, te_ms: np.ndarray) -> np.ndarray:
    """Complex fat signal relative to water at each echo time.

    Args:
        spectrum: Peaks in ppm relative to water and their relative amplitudes.
        field_strength_t: Main field in tesla (1.5 T: the -3.4 ppm peak is at -217 Hz).
        te_ms: Echo times in ms, ``[E]``.

    Returns:
        complex128 ``[E]``: ``sum_p a_p exp(2 pi i df_p TE)`` with ``sum_p a_p = 1``.
    """
    amp = np.asarray(spectrum.relative_amplitude, float)
    df_hz = np.asarray(spectrum.ppm, float) * GYROMAGNETIC_MHZ_PER_T * field_strength_t
    te_s = np.asarray(te_ms, float)[:, None] * 1e-3
    return (amp / amp.sum() * np.exp(2j * np.pi * df_hz * te_s)).sum(axis=1)


def multi_echo_signal(
    s0: np.ndarray | float,
    fat_fraction: np.ndarray | float,
    t2star_ms: np.ndarray | float,
    te_ms: np.ndarray,
    fat_phasor: np.ndarray,
) -> np.ndarray:
    """Noise-free complex multi-echo signal.

    Args:
        s0: Proton-density signal, float ``[...]``.
        fat_fraction: Signal fraction of fat in [0, 1], broadcastable to ``s0``.
        t2star_ms: T2* in ms shared by water and fat (> 0), broadcastable to ``s0``.
        te_ms: Echo times, ``[E]``.
        fat_phasor: Output of :func:`fat_phasors`, ``[E]``.

    Returns:
        complex64 ``[E, ...]``.
    """
    s0, ff, t2 = (np.asarray(a, np.float32) for a in (s0, fat_fraction, t2star_ms))
    shape = (-1,) + (1,) * np.broadcast(s0, ff, t2).ndim
    te = np.asarray(te_ms, np.float32).reshape(shape)
    chem = (1.0 - ff) + ff * np.asarray(fat_phasor, np.complex64).reshape(shape)
    return (s0 * np.exp(-te / t2) * chem).astype(np.complex64)


@dataclass(frozen=True)
class CoilArray:
    """Smooth complex sensitivities of surface receiver coils.

    Magnitude falls off as ``1 / (1 + d^2 / L^2)`` with the distance ``d`` to the coil centre;
    the phase is an offset plus a small linear ramp. ``scale`` makes the root-sum-of-squares 1
    at the reference point given to :meth:`around_torso`.

    Attributes:
        centers_mm: (y, x) of each coil, ``[C, 2]``.
        phase_offsets_rad: ``[C]``.
        phase_ramps_rad_per_mm: (d/dy, d/dx) of the phase, ``[C, 2]``.
        length_mm: Fall-off length L.
        scale: Common amplitude factor.
    """

    centers_mm: np.ndarray
    phase_offsets_rad: np.ndarray
    phase_ramps_rad_per_mm: np.ndarray
    length_mm: float
    scale: float

    @classmethod
    def around_torso(
        cls,
        n_coils: int,
        length_mm: float,
        torso_center_mm: tuple[float, float],
        torso_half_axes_mm: tuple[float, float],
        torso_angle_rad: float,
        reference_mm: tuple[float, float],
        rng: np.random.Generator,
    ) -> CoilArray:
        """Place ``ceil(C / 2)`` coils 10 mm in front of the torso and the rest behind it.

        Args:
            n_coils: C.
            length_mm: Fall-off length L.
            torso_center_mm: (y, x) of the torso centre.
            torso_half_axes_mm: (left-right, anterior-posterior) half axes.
            torso_angle_rad: Torso rotation.
            reference_mm: (y, x) where the combined sensitivity is 1 (the LV centre).
            rng: Random stream (phases).
        """
        half_x, half_y = torso_half_axes_mm
        n_front = math.ceil(n_coils / 2)
        c, s = math.cos(torso_angle_rad), math.sin(torso_angle_rad)
        centers = []
        for v, count in ((-(half_y + 10.0), n_front), (half_y + 10.0, n_coils - n_front)):
            spread = np.linspace(-0.5, 0.5, count) * half_x if count > 1 else np.zeros(count)
            for u in spread:
                centers.append(
                    (torso_center_mm[0] + c * v + s * u, torso_center_mm[1] + c * u - s * v)
                )
        coils = cls(
            centers_mm=np.asarray(centers),
            phase_offsets_rad=rng.uniform(-math.pi, math.pi, n_coils),
            phase_ramps_rad_per_mm=rng.normal(0.0, 0.01, (n_coils, 2)),
            length_mm=length_mm,
            scale=1.0,
        )
        ref = coils.sensitivities(np.array([reference_mm[0]]), np.array([reference_mm[1]]))
        return replace(coils, scale=float(1.0 / np.sqrt((np.abs(ref) ** 2).sum())))

    def sensitivities(self, y_mm: np.ndarray, x_mm: np.ndarray) -> np.ndarray:
        """Sensitivities on the grid of row coordinates ``[H]`` and columns ``[W]``.

        Returns:
            complex64 ``[C, H, W]``.
        """
        dy = np.asarray(y_mm, np.float32)[None, :, None] - self.centers_mm[:, 0, None, None]
        dx = np.asarray(x_mm, np.float32)[None, None, :] - self.centers_mm[:, 1, None, None]
        mag = (self.scale / (1.0 + (dy**2 + dx**2) / self.length_mm**2)).astype(np.float32)
        ramp = self.phase_ramps_rad_per_mm
        row_phase = np.exp(
            1j * (self.phase_offsets_rad[:, None, None] + ramp[:, 0, None, None] * dy)
        )
        col_phase = np.exp(1j * ramp[:, 1, None, None] * dx)
        return mag * row_phase.astype(np.complex64) * col_phase.astype(np.complex64)


def phase_lines(n_rows: int, phase_resolution: float) -> np.ndarray:
    """Signed phase-encoding indices acquired, centred on k = 0, ``[L]``."""
    n_lines = max(1, round(phase_resolution * n_rows))
    return np.arange(n_lines) - n_lines // 2


def acquire(
    obj: np.ndarray,
    sens: np.ndarray,
    grid: GridConfig,
    acq: AcquisitionConfig,
    sigma: float | None,
    rng: np.random.Generator,
    workers: int = -1,
) -> np.ndarray:
    """Simulate the acquisition of a fine-grid multi-echo object and reconstruct it.

    With ``acq.sampling == "area_mean"`` (the ideal reference) each coil image is the area mean
    of the fine-grid image over each display pixel, with noise added in the image domain; no
    k-space sampling, blurring or ringing. Otherwise (``"kspace"``): phase is encoded along
    image axis 0 (rows), read out along axis 1. Lines are acquired in linear order during one
    breath-hold; the object moves along the phase direction by
    ``ghosting_mm * (sin(2 pi cycles t + phi) + 0.3 * jitter_beat)`` (respiratory drift plus
    beat-to-beat jitter of the ECG-gated segments), which is the same for every echo of a line.
    Each echo after the first is shifted by ``N(0, misregistration_mm)`` per axis.

    Args:
        obj: complex64 ``[E, o*H, o*W]`` noise-free object on the fine grid.
        sens: complex64 ``[C, o*H, o*W]`` coil sensitivities on the fine grid.
        grid: Display grid (H, W, spacing, oversampling o).
        acq: Acquisition settings.
        sigma: Standard deviation of the real (and imaginary) part of each coil's image noise;
            ``None`` for no noise.
        rng: Random stream (motion, shifts, noise).
        workers: Threads for scipy.fft.

    Returns:
        float32 ``[E, H, W]`` root-sum-of-squares magnitude.
    """
    n_rows, n_cols = grid.shape
    o = grid.oversampling
    if acq.sampling == "area_mean":
        return _acquire_area_mean(obj, sens, o, sigma, rng)
    fine_rows, fine_cols = obj.shape[-2:]
    fov_y, fov_x = n_rows * grid.pixel_spacing_mm, n_cols * grid.pixel_spacing_mm
    ky = phase_lines(n_rows, acq.phase_resolution)
    kx = np.arange(n_cols) - n_cols // 2
    n_echoes = obj.shape[0]

    k = np.empty((sens.shape[0], n_echoes, ky.size, n_cols), np.complex64)
    for c, coil in enumerate(sens):  # one coil at a time keeps the working set small
        lines = sfft.fft(coil * obj, axis=-2, norm="forward", workers=workers)[:, ky % fine_rows]
        k[c] = sfft.fft(lines, axis=-1, norm="forward", workers=workers)[..., kx % fine_cols]

    # Every phase below is a sum of a row (ky) and a column (kx) term, applied as two factors.
    # Half a display pixel minus half a fine pixel: display pixel i then samples the centre of
    # its o x o block of fine pixels.
    shift = (o - 1) / 2
    t = np.arange(ky.size) / ky.size
    beat = np.minimum((t * acq.heartbeats).astype(int), acq.heartbeats - 1)
    jitter = rng.standard_normal(acq.heartbeats)[beat]
    motion_mm = acq.ghosting_mm * (
        np.sin(2 * np.pi * acq.respiratory_cycles * t + rng.uniform(0, 2 * np.pi)) + 0.3 * jitter
    )
    shifts_mm = rng.normal(0.0, 1.0, (n_echoes, 2)) * acq.misregistration_mm
    shifts_mm[0] = 0.0
    row_phase = 2 * np.pi * ky * (shift / fine_rows - (motion_mm + shifts_mm[:, :1]) / fov_y)
    col_phase = 2 * np.pi * kx * (shift / fine_cols - shifts_mm[:, 1:] / fov_x)
    k *= np.exp(1j * row_phase).astype(np.complex64)[:, :, None]
    k *= np.exp(1j * col_phase).astype(np.complex64)[:, None, :]

    if sigma is not None:
        sigma_k = np.float32(sigma / math.sqrt(ky.size * n_cols))
        noise = rng.standard_normal((2, *k.shape), dtype=np.float32) * sigma_k
        k += noise[0] + 1j * noise[1]

    lines = sfft.ifft(k, axis=-1, norm="forward", workers=workers)
    full = np.zeros((*k.shape[:2], n_rows, n_cols), np.complex64)
    full[..., ky % n_rows, :] = lines
    images = sfft.ifft(full, axis=-2, norm="forward", workers=workers)
    return np.sqrt((images.real**2 + images.imag**2).sum(axis=0)).astype(np.float32)


def _acquire_area_mean(
    obj: np.ndarray, sens: np.ndarray, o: int, sigma: float | None, rng: np.random.Generator
) -> np.ndarray:
    """Ideal voxels: area mean of each coil image over ``o x o`` fine pixels, then RSS."""
    fine = sens[:, None] * obj[None]  # [C, E, oH, oW]
    images = sum(fine[..., i::o, j::o] for i in range(o) for j in range(o)) / np.float32(o * o)
    if sigma is not None:
        noise = rng.standard_normal((2, *images.shape), dtype=np.float32) * np.float32(sigma)
        images += noise[0] + 1j * noise[1]
    return np.sqrt((images.real**2 + images.imag**2).sum(axis=0)).astype(np.float32)
