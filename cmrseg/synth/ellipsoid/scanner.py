"""Acquisition of the ellipsoid phantom: receive coils, k-space sampling, motion, noise, RSS.

Each slice's complex echo images (already integrated over the voxel) are weighted by the
sensitivities of loop coils on the torso surface, Fourier transformed along the phase-encoding
axis, cut to the acquired central lines (phase resolution), given a respiratory displacement
per line (ghosts along phase) and complex Gaussian noise on the acquired samples, zero-filled,
transformed back and combined by root-sum-of-squares. The full readout resolution is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

__all__ = ["Scanner", "acquire", "draw_scanner"]


@dataclass(frozen=True)
class Scanner:
    """One subject's receive chain and sampling.

    Attributes:
        coil_positions_mm: Loop-coil centres ``[C, 3]`` in the scene frame.
        coil_radius_mm: Loop radii ``[C]``.
        coil_phase_rad: Constant phase of each coil ``[C]``.
        coil_phase_ramp: Phase ramp of each coil ``[C, 3]`` in rad per mm.
        phase_axis: Image axis of phase encoding (0 rows, 1 columns).
        phase_resolution: Fraction of the matrix's phase-encoding lines acquired (central).
        ghost_mm: Amplitude of the respiratory displacement along the phase axis.
        ghost_period_lines: Lines per breathing cycle.
        ghost_phase_rad: Breathing phase at the first line.
        snr: Myocardial S0 (the signal extrapolated to TE = 0) times the coils'
            root-sum-of-squares sensitivity at the LV centre, over the per-coil noise SD;
            ``None`` means noise-free.
    """

    coil_positions_mm: np.ndarray
    coil_radius_mm: np.ndarray
    coil_phase_rad: np.ndarray
    coil_phase_ramp: np.ndarray
    phase_axis: int
    phase_resolution: float
    ghost_mm: float
    ghost_period_lines: float
    ghost_phase_rad: float
    snr: float | None

    def sensitivity(self, points: np.ndarray) -> np.ndarray:
        """Complex coil sensitivities ``[C, N]`` at scene points ``[N, 3]``.

        The magnitude follows the on-axis field of a circular loop of radius R (Biot-Savart),
        ``(R^2 / (R^2 + d^2))^(3/2)`` with d the distance to the loop centre.
        """
        d2 = ((points[None] - self.coil_positions_mm[:, None]) ** 2).sum(-1)
        r2 = self.coil_radius_mm[:, None] ** 2
        magnitude = (r2 / (r2 + d2)) ** 1.5
        phase = self.coil_phase_rad[:, None] + self.coil_phase_ramp @ points.T
        return magnitude * np.exp(1j * phase)


def draw_scanner(
    rng: np.random.Generator,
    torso_centre: np.ndarray,
    torso_a_mm: float,
    torso_b_mm: float,
    snr: float | None,
    ideal: bool,
) -> Scanner:
    """Draw one subject's coils (4-8 on the anterior and posterior surface) and sampling.

    Args:
        rng: The subject's generator (consumed in a fixed order, whatever ``snr``/``ideal``).
        torso_centre: Centre of the torso's cross-section at the LV ``[3]``, mm.
        torso_a_mm: Its horizontal semi-axis, mm.
        torso_b_mm: Its vertical semi-axis, mm.
        snr: The subject's SNR, or ``None`` for noise-free.
        ideal: Acquire every line without motion (the truth check).
    """
    n_coils = int(rng.integers(4, 9))
    n_anterior = n_coils // 2
    angles = np.concatenate(
        [
            np.linspace(-150.0, -30.0, n_anterior),
            np.linspace(30.0, 150.0, n_coils - n_anterior),
        ]
    )
    angles = np.deg2rad(angles + rng.uniform(-10.0, 10.0, n_coils))
    positions = np.stack(
        [
            torso_centre[0] + 1.05 * torso_a_mm * np.cos(angles),
            torso_centre[1] + 1.05 * torso_b_mm * np.sin(angles),
            rng.uniform(-40.0, 40.0, n_coils),
        ],
        axis=1,
    )
    radius = rng.uniform(90.0, 150.0, n_coils)
    phase = rng.uniform(0.0, 2.0 * np.pi, n_coils)
    ramp = rng.normal(0.0, 0.01, (n_coils, 3))
    phase_axis = int(rng.uniform() < 0.3)
    phase_resolution = rng.uniform(0.5, 0.75)
    ghost = rng.uniform(0.2, 1.2) if rng.uniform() < 0.5 else 0.0
    period = rng.uniform(15.0, 40.0)
    ghost_phase = rng.uniform(0.0, 2.0 * np.pi)
    return Scanner(
        coil_positions_mm=positions,
        coil_radius_mm=radius,
        coil_phase_rad=phase,
        coil_phase_ramp=ramp,
        phase_axis=phase_axis,
        phase_resolution=1.0 if ideal else phase_resolution,
        ghost_mm=0.0 if ideal else ghost,
        ghost_period_lines=period,
        ghost_phase_rad=ghost_phase,
        snr=snr,
    )


def acquire(
    images: np.ndarray,
    sensitivities: np.ndarray,
    scanner: Scanner,
    noise_sd: float,
    spacing_mm: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Acquire complex echo images and reconstruct root-sum-of-squares magnitudes.

    Args:
        images: Complex voxel signal ``[E, H, W]``.
        sensitivities: Complex coil sensitivities ``[C, H, W]``.
        scanner: The subject's sampling and motion.
        noise_sd: SD of the complex noise per coil and per real/imaginary part (0: none),
            in image units (orthonormal Fourier transforms keep it across domains).
        spacing_mm: Pixel spacing along the phase axis, mm.
        rng: Generator for the noise.

    Returns:
        Magnitude images ``[E, H, W]`` (float32, >= 0).
    """
    coil_images = sensitivities.astype(np.complex64)[:, None] * images.astype(np.complex64)[None]
    if scanner.phase_axis == 1:
        coil_images = coil_images.swapaxes(2, 3)  # phase lines along axis 2 from here on
    # Sampling, motion and noise act on whole phase-encoding lines, and white noise stays
    # white under the unitary readout transform, so one transform along phase is enough.
    kspace = scipy.fft.fft(coil_images, axis=2, norm="ortho", workers=1)
    n_lines = kspace.shape[2]
    freq = scipy.fft.fftfreq(n_lines, d=spacing_mm)  # cycles per mm
    n_acquired = max(1, round(scanner.phase_resolution * n_lines))
    order = np.argsort(np.argsort(freq))  # acquisition order: sequential from -k_max
    first = n_lines // 2 - n_acquired // 2  # the rank of k = 0 is n_lines // 2
    lines = np.flatnonzero((order >= first) & (order < first + n_acquired))
    acquired = kspace[:, :, lines]
    if scanner.ghost_mm > 0:
        shift = scanner.ghost_mm * np.sin(
            2.0 * np.pi * order[lines] / scanner.ghost_period_lines + scanner.ghost_phase_rad
        )
        acquired *= np.exp(-2j * np.pi * freq[lines] * shift).astype(np.complex64)[:, None]
    if noise_sd > 0:
        noise = rng.standard_normal((2, *acquired.shape), dtype=np.float32)
        noise *= np.float32(noise_sd)
        acquired += noise[0] + 1j * noise[1]
    kspace = np.zeros_like(kspace)
    kspace[:, :, lines] = acquired
    coil_images = scipy.fft.ifft(kspace, axis=2, norm="ortho", workers=1)
    magnitude = np.sqrt((coil_images.real**2 + coil_images.imag**2).sum(axis=0))
    return (magnitude.swapaxes(1, 2) if scanner.phase_axis == 1 else magnitude).astype(np.float32)
