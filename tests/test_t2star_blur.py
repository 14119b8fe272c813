"""cmrseg.t2star.blur: the window from the noise, the blood's blur and its correction, ghosts."""

from __future__ import annotations

import numpy as np
import pytest

from cmrseg.t2star import (
    cavity_ghost_ratio,
    deblurred_wall,
    load_t2star_config,
    off_cavity_lines_mask,
    phase_resolution,
    quantify_region,
    quantify_slice,
    wall_core_mask,
)
from cmrseg.t2star.blur import window_blur
from cmrseg.t2star.signal import find_background

TE_MS = 2.97 + 2.67 * np.arange(8)


def _acquire(coils: np.ndarray, fraction: float) -> np.ndarray:
    """RSS magnitude ``[8, H, W]`` of coil images ``[8, C, H, W]`` acquired on part of k-space.

    ``fraction`` of the lines along the rows, a centred window, zero-filled.
    """
    n = coils.shape[2]
    kept = round(fraction * n)
    window = np.zeros(n)
    window[(np.arange(kept) - kept // 2) % n] = 1.0
    acquired = np.fft.ifft(np.fft.fft(coils, axis=2) * window[:, None], axis=2)
    return np.sqrt((np.abs(acquired) ** 2).sum(axis=1))


def _complex_noise(shape: tuple[int, ...], sd: float, seed: int) -> np.ndarray:
    """Complex Gaussian noise, SD ``sd`` in each of the real and imaginary parts."""
    rng = np.random.default_rng(seed)
    return sd * (rng.normal(size=shape) + 1j * rng.normal(size=shape))


def _windowed_noise(fraction: float, shape: tuple[int, int], seed: int) -> np.ndarray:
    """RSS magnitude ``[8, H, W]`` of 4 coils' complex noise, ``fraction`` of k-space along rows."""
    return _acquire(_complex_noise((8, 4, *shape), 1.0, seed), fraction)


@pytest.mark.parametrize(("fraction", "axis"), [(0.4, 0), (0.6, 0), (0.4, 1)])
def test_phase_resolution_is_read_from_the_noise_correlation(fraction: float, axis: int) -> None:
    images = _windowed_noise(fraction, (128, 96), seed=1)
    if axis == 1:
        images = np.swapaxes(images, 1, 2)
    background = np.ones(images.shape[1:], bool)
    assert phase_resolution(images, background, axis) == pytest.approx(fraction, abs=0.03)
    other = phase_resolution(images, background, 1 - axis)  # white along the other axis
    assert other == 1.0


def test_phase_resolution_needs_background_pairs() -> None:
    images = _windowed_noise(0.4, (64, 64), seed=2)
    background = np.zeros((64, 64), bool)
    background[::2, 0] = True  # no two neighbours along the rows
    assert phase_resolution(images, background, 0) is None
    zero_filled = np.zeros_like(images)  # no noise left to correlate
    assert phase_resolution(zero_filled, np.ones((64, 64), bool), 0) is None


def test_window_blur_keeps_the_mean_and_is_the_identity_at_full_resolution() -> None:
    mask = np.zeros((40, 8), bool)
    mask[10:20, 3] = True
    assert np.allclose(window_blur(mask, 1.0, 0), mask)
    blurred = window_blur(mask, 0.4, 0)
    assert blurred.sum() == pytest.approx(mask.sum())
    assert blurred[:, 3].min() < 0 < blurred[9, 3] < 1  # Gibbs undershoot, spread past the edge
    assert np.allclose(blurred[:, [0, 1, 2, 4]], 0)  # nothing across the readout axis


def _ring_object() -> tuple[np.ndarray, np.ndarray]:
    """A ring LV in air: blood 800 exp(-TE/250), wall 300 exp(-TE/25); ``[8, H, W]`` and labels."""
    rows, cols = np.indices((96, 96), dtype=float)
    radius = np.hypot(rows - 48, cols - 48)
    labels = np.zeros((96, 96), np.int8)
    labels[radius < 22] = 2
    labels[radius < 14] = 1
    blood = (labels == 1)[None] * 800.0 * np.exp(-TE_MS / 250.0)[:, None, None]
    wall = (labels == 2)[None] * 300.0 * np.exp(-TE_MS / 25.0)[:, None, None]
    return blood + wall, labels


def _ring(fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The ring blurred along the rows by ``fraction`` of k-space, noise-free; and its labels."""
    scene, labels = _ring_object()
    return np.abs(np.stack([window_blur(e, fraction, 0) for e in scene])), labels


def test_deblurred_wall_undoes_the_blood_spread_of_a_real_object() -> None:
    images, labels = _ring(0.4)
    core = wall_core_mask(labels, 2, 0)
    corrected = deblurred_wall(images, labels, core, 0.4, 0)
    truth = 300.0 * np.exp(-TE_MS / 25.0)
    weight = window_blur(labels == 2, 0.4, 0)
    exact = core & (weight >= 0.3) & (images.min(axis=0) > 0)
    # the blood's curve is measured inside its pool, where the window leaves the blood whole
    # only up to its ringing: within 1% of the unmixed wall on every echo
    assert np.allclose(corrected[:, exact], truth[:, None], rtol=0.01)
    assert np.array_equal(corrected[:, ~core], images[:, ~core])  # other pixels unchanged
    config = load_t2star_config(overrides=["fit.model=mono"])
    lines = core & ~off_cavity_lines_mask(labels, 0)  # the wall on the cavity's lines
    before = quantify_region(images, TE_MS, lines, config).t2star_ms
    after = quantify_region(corrected, TE_MS, lines, config).t2star_ms
    assert abs(after - 25.0) < 0.25 < abs(before - 25.0)
    assert deblurred_wall(images, np.where(labels == 1, 0, labels), core, 0.4, 0) is None


def test_cavity_ghost_ratio_measures_the_ghosts_on_the_cavitys_lines() -> None:
    rng = np.random.default_rng(3)
    labels = np.zeros((64, 64), np.int8)
    labels[24:40, 24:40] = 2
    labels[28:36, 28:36] = 1
    images = np.abs(rng.normal(10.0, 1.0, size=(8, 64, 64)))
    images[:, labels == 2] = 100.0
    background = labels == 0
    background[16:48, 16:48] = False  # the body around the heart
    core = labels == 2
    assert cavity_ghost_ratio(images, labels, core, background, 0) == pytest.approx(0, abs=2e-3)
    ghosted = images.copy()
    ghosted[:, :, 28:36] = np.sqrt(ghosted[:, :, 28:36] ** 2 + 30.0**2 * background[:, 28:36])
    # ghost power 900 over the wall's 10,000
    assert cavity_ghost_ratio(ghosted, labels, core, background, 0) == pytest.approx(0.09, abs=4e-3)
    no_air = background & ~np.isin(np.arange(64), range(28, 36))[None, :]
    assert cavity_ghost_ratio(ghosted, labels, core, no_air, 0) is None


def _acquired_ring(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ring acquired by 4 coils, complex noise SD 2, 40% phase resolution; and its labels."""
    scene, labels = _ring_object()
    coils = scene[:, None] / 2 + _complex_noise((8, 4, 96, 96), 2.0, seed)
    return _acquire(coils, 0.4), labels


def test_quantify_slice_adds_the_deblurred_core_when_enabled_and_the_ghosts_allow() -> None:
    images, labels = _acquired_ring(seed=4)
    core = wall_core_mask(labels, 2, 0)

    def run(data: np.ndarray, *overrides: str) -> list:
        config = load_t2star_config(overrides=["fit.n_coils=4", *overrides])
        return quantify_slice(
            data,
            TE_MS,
            labels,
            (26.0, 48.0),
            config=config,
            phase_encoding_axis=0,
            pixel_spacing_mm=(1.4, 1.4),
        )

    head = run(images, "region.cavity_blur_correction=false")[0]
    assert head.method == "median_pixel/core_off_cavity/noise_corrected"
    on = run(images)  # the default
    assert on[0].method == "median_pixel/core_off_cavity+core_deblurred/noise_corrected"
    config = load_t2star_config(overrides=["fit.n_coils=4"])
    fraction = phase_resolution(images, labels == 0, 0)
    assert fraction == pytest.approx(0.4, abs=0.05)
    corrected = deblurred_wall(images, labels, core, fraction, 0)
    deblurred = quantify_region(corrected, TE_MS, core, config, sigma=head.noise_sigma)
    lines = core & ~off_cavity_lines_mask(labels, 0)
    on_lines = [
        quantify_region(data, TE_MS, lines, config, sigma=head.noise_sigma).t2star_ms
        for data in (images, corrected)
    ]
    assert abs(on_lines[1] - 25.0) < 0.5 < abs(on_lines[0] - 25.0)
    assert on[0].t2star_ms == pytest.approx(np.sqrt(head.t2star_ms * deblurred.t2star_ms), rel=0.01)
    off = run(images, "region.cavity_blur_correction=false")
    assert [r.t2star_ms for r in on[1:]] == [r.t2star_ms for r in off[1:]]  # sectors unchanged
    # ghosts of the blood along its lines: the correction would read them as wall
    cavity_lines = (labels == 1).any(axis=0)

    def ghosted(amplitude: float) -> np.ndarray:
        ghost = amplitude * np.exp(-TE_MS / 200.0)[:, None, None] * cavity_lines[None, None, :]
        return np.sqrt(images**2 + ghost**2)

    background = find_background(ghosted(25.0))
    assert cavity_ghost_ratio(ghosted(25.0), labels, core, background, 0) > 0.03  # 0.036
    assert run(ghosted(25.0))[0].method == "median_pixel/core_off_cavity/noise_corrected"
    # ghosts so bright that their air is no longer background: no ratio, no correction
    assert (
        cavity_ghost_ratio(ghosted(60.0), labels, core, find_background(ghosted(60.0)), 0) is None
    )
    assert run(ghosted(60.0))[0].method == "median_pixel/core_off_cavity/noise_corrected"
    # weak ghosts (ratio 0.007) pass the default threshold, not a stricter one
    weak = ghosted(8.0)
    assert run(weak)[0].method == "median_pixel/core_off_cavity+core_deblurred/noise_corrected"
    strict = run(weak, "region.cavity_max_ghost_ratio=0.005")[0]
    assert strict.method == "median_pixel/core_off_cavity/noise_corrected"
