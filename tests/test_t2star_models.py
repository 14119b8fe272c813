"""Signal models and fitters of cmrseg.t2star recover known T2* (and keep honest statuses)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from cmrseg.t2star import (
    SIGNAL_MODELS,
    FitOptions,
    NoiseEstimateError,
    Status,
    estimate_noise,
    fit_curve_lmfit,
    fit_curves,
    fit_loglinear,
    fit_map,
    load_t2star_config,
    mono_exp,
    noise_floor_mean,
    status_code,
    truncation_mask,
)

TE_MS = np.linspace(2.97, 21.68, 8)  # the paper's 8 echoes
N_COILS = 4
OK = status_code(Status.OK)


def _options(model: str, **changes: object) -> FitOptions:
    fit = load_t2star_config().fit
    if model == "mono_offset":
        changes.setdefault("min_echoes", max(fit.min_echoes, 4))
    changes.setdefault("n_coils", N_COILS)
    return dataclasses.replace(fit, model=model, **changes)


def multicoil_magnitude(
    t2star_ms: float, n_curves: int, snr: float, seed: int = 0
) -> tuple[np.ndarray, float]:
    """RSS magnitude of a decay seen by 4 coils with complex Gaussian noise.

    SNR is ``S0 / sigma`` (S0 = 1 at TE = 0), sigma the SD of each real/imaginary channel.
    Returns curves ``[n_curves, 8]`` and sigma.
    """
    rng = np.random.default_rng(seed)
    sigma = 1.0 / snr
    sensitivity = rng.normal(size=N_COILS) + 1j * rng.normal(size=N_COILS)
    sensitivity /= np.linalg.norm(sensitivity)
    coil = mono_exp(TE_MS, 1.0, t2star_ms)[None, :, None] * sensitivity
    noise = rng.normal(size=(n_curves, TE_MS.size, N_COILS, 2)) @ np.array([1.0, 1j]) * sigma
    return np.sqrt((np.abs(coil + noise) ** 2).sum(axis=-1)), sigma


def cramer_rao_sd_ms(t2star_ms: float, sigma: float) -> float:
    """Lower bound on the SD of T2* from Gaussian data of S0 = 1 at the 8 echoes."""
    decay = np.exp(-TE_MS / t2star_ms)
    jac = np.stack([decay, decay * TE_MS / t2star_ms**2], axis=1)
    return float(np.sqrt(np.linalg.inv(jac.T @ jac / sigma**2)[1, 1]))


@pytest.mark.parametrize("model", SIGNAL_MODELS)
@pytest.mark.parametrize("t2star_ms", [3.0, 8.0, 25.0, 60.0])
def test_noise_free_curves_are_recovered_by_every_model(model: str, t2star_ms: float) -> None:
    sigma = 0.01
    signal = 250.0 * mono_exp(TE_MS, 1.0, t2star_ms)
    if model == "noise_corrected":
        signal = noise_floor_mean(signal, 250.0 * sigma, N_COILS)
    if model == "mono_offset":
        signal = signal + 7.0
    options = _options(model)
    fit = fit_curves(TE_MS, signal, options, sigma=250.0 * sigma).curve(())
    ref = fit_curve_lmfit(TE_MS, signal, options, sigma=250.0 * sigma)
    for result in (fit, ref):
        assert result.status is Status.OK
        assert result.t2star_ms == pytest.approx(t2star_ms, rel=1e-4)
        assert result.s0 == pytest.approx(250.0, rel=1e-3)
        assert result.r2 == pytest.approx(1.0, abs=1e-6)
    if model == "mono_offset":
        assert fit.offset == pytest.approx(7.0, rel=1e-3)


@pytest.mark.parametrize("model", SIGNAL_MODELS)
def test_noisy_curves_are_recovered_at_high_snr(model: str) -> None:
    curves, sigma = multicoil_magnitude(15.0, 400, snr=200.0, seed=1)
    fits = fit_curves(TE_MS, curves, _options(model), sigma=sigma)
    assert np.all(fits.status == OK)
    assert np.median(fits.t2star_ms) == pytest.approx(15.0, rel=0.02)
    inside = (fits.ci_low_ms <= 15.0) & (fits.ci_high_ms >= 15.0)
    assert inside.mean() > 0.8


def test_loglinear_baseline_recovers_noise_free_and_noisy_decays() -> None:
    options = _options("mono")
    exact = fit_loglinear(TE_MS, mono_exp(TE_MS, 80.0, 12.0), options).curve(())
    assert exact.status is Status.OK
    assert exact.t2star_ms == pytest.approx(12.0, rel=1e-9)
    assert exact.s0 == pytest.approx(80.0, rel=1e-9)
    curves, _ = multicoil_magnitude(20.0, 300, snr=300.0, seed=2)
    assert np.median(fit_loglinear(TE_MS, curves, options).t2star_ms) == pytest.approx(20, rel=0.02)


@pytest.mark.parametrize(("t2star_ms", "plain_bias"), [(5.0, 0.37), (10.0, 0.08), (20.0, 0.026)])
def test_noise_floor_biases_plain_fit_and_corrected_model_removes_it(
    t2star_ms: float, plain_bias: float
) -> None:
    curves, sigma = multicoil_magnitude(t2star_ms, 4000, snr=30.0, seed=3)
    plain = fit_curves(TE_MS, curves, _options("mono"))
    corrected = fit_curves(TE_MS, curves, _options("noise_corrected"), sigma=sigma)
    plain_error = np.median(plain.t2star_ms) / t2star_ms - 1
    assert plain_error == pytest.approx(plain_bias, abs=0.25 * plain_bias + 0.005)
    assert abs(np.median(corrected.t2star_ms) / t2star_ms - 1) < 0.01
    # ROI averaging keeps the floor: the mean of magnitudes is biased the same way.
    roi_plain = fit_curves(TE_MS, curves.mean(axis=0), _options("mono")).t2star_ms
    roi_corrected = fit_curves(
        TE_MS, curves.mean(axis=0), _options("noise_corrected"), sigma=sigma
    ).t2star_ms
    assert float(roi_plain) / t2star_ms - 1 == pytest.approx(plain_bias, rel=0.25, abs=0.005)
    assert abs(float(roi_corrected) / t2star_ms - 1) < 0.005


@pytest.mark.parametrize(("t2star_ms", "crb_ms"), [(5.0, 0.52), (20.0, 1.45)])
def test_noise_corrected_fit_is_near_the_cramer_rao_bound(t2star_ms: float, crb_ms: float) -> None:
    curves, sigma = multicoil_magnitude(t2star_ms, 4000, snr=30.0, seed=4)
    assert cramer_rao_sd_ms(t2star_ms, sigma) == pytest.approx(crb_ms, abs=0.01)
    fits = fit_curves(TE_MS, curves, _options("noise_corrected"), sigma=sigma)
    sd = np.std(fits.t2star_ms[fits.status == OK])
    assert crb_ms * 0.9 < sd < crb_ms * 1.25


def test_truncation_drops_late_echoes_near_the_floor_and_reduces_bias() -> None:
    sigma = 1.0 / 30.0
    floor = noise_floor_mean(np.zeros(1), sigma, N_COILS)[0]
    signal = np.array([1.0, 0.5, 0.2, 2.5 * floor, 1.5 * floor, 3 * floor, floor, floor])
    keep = truncation_mask(signal, sigma, N_COILS, factor=2.0, min_echoes=3)
    assert keep.tolist() == [True] * 4 + [False] * 4
    assert truncation_mask(np.zeros(8), sigma, N_COILS, 2.0, 3).sum() == 3
    curves, sigma = multicoil_magnitude(5.0, 3000, snr=30.0, seed=5)
    plain = np.median(fit_curves(TE_MS, curves, _options("mono")).t2star_ms)
    truncated = np.median(fit_curves(TE_MS, curves, _options("truncated"), sigma=sigma).t2star_ms)
    assert abs(truncated - 5.0) < 0.5 * abs(plain - 5.0)


def test_vectorized_fitter_agrees_with_lmfit() -> None:
    curves, sigma = multicoil_magnitude(9.0, 60, snr=40.0, seed=6)
    for model in SIGNAL_MODELS:
        options = _options(model)
        fits = fit_curves(TE_MS, curves, options, sigma=sigma)
        for i in range(0, 60, 6):
            ref = fit_curve_lmfit(TE_MS, curves[i], options, sigma=sigma)
            assert ref.status is Status.OK and fits.status[i] == OK
            assert fits.t2star_ms[i] == pytest.approx(ref.t2star_ms, rel=1e-3)
            if np.isfinite(ref.ci_high_ms):  # lmfit gives no errorbars with offset on a bound
                assert fits.ci_high_ms[i] - fits.t2star_ms[i] == pytest.approx(
                    ref.ci_high_ms - ref.t2star_ms, rel=0.02
                )


def test_noise_sigma_is_estimated_from_background() -> None:
    rng = np.random.default_rng(7)
    sigma = 3.0
    images = np.zeros((8, 64, 64))
    images[:, 16:48, 16:48] = 300.0 * np.exp(-TE_MS / 20.0)[:, None, None]
    noise = rng.normal(size=(8, 64, 64, N_COILS, 2)) * sigma
    images = np.sqrt(
        ((images[..., None] / np.sqrt(N_COILS) + noise[..., 0]) ** 2).sum(-1)
        + (noise[..., 1] ** 2).sum(-1)
    )
    assert estimate_noise(images, N_COILS).sigma == pytest.approx(sigma, rel=0.03)
    background = np.ones((64, 64), dtype=bool)
    background[10:54, 10:54] = False
    assert estimate_noise(images, N_COILS, background=background).sigma == pytest.approx(
        sigma, rel=0.03
    )
    # the coil count from the background statistics alone, and sigma with it
    estimate = estimate_noise(images)
    assert estimate.n_coils == pytest.approx(N_COILS, abs=0.5)
    assert estimate.sigma == pytest.approx(sigma, rel=0.05)
    tissue_only = (
        300.0 * np.exp(-TE_MS / 20.0)[:, None, None] * np.linspace(1, 2, 64)[None, :, None]
    )
    with pytest.raises(NoiseEstimateError, match="background") as err:
        estimate_noise(np.broadcast_to(tissue_only, (8, 64, 64)).copy(), N_COILS)
    assert err.value.reason == "no_background"
    zero_filled = images.copy()
    zero_filled[:, :8] = 0.0
    with pytest.raises(NoiseEstimateError) as err:
        estimate_noise(zero_filled, N_COILS)
    assert err.value.reason == "zero_filled_background"


def test_coil_count_holds_with_a_few_bright_pixels_in_the_air() -> None:
    """Ghost or tissue pixels in 2% of the air: the quartiles barely move, the moments would."""
    rng = np.random.default_rng(11)
    sigma = 2.0
    noise = rng.normal(size=(8, 64, 64, N_COILS, 2)) * sigma
    images = np.sqrt((noise**2).sum(axis=(-1, -2)))
    bright = rng.uniform(size=(64, 64)) < 0.02
    images[:, bright] += 40.0 * sigma
    background = np.ones((64, 64), dtype=bool)
    estimate = estimate_noise(images, background=background)
    assert estimate.n_coils == pytest.approx(N_COILS, abs=0.5)  # the moments: 1.0 (clipped)
    assert estimate.sigma == pytest.approx(sigma, rel=0.05)


def test_noise_keeps_to_lines_free_of_phase_direction_artifacts() -> None:
    """Ghosts along the phase axis (rows) raise the air of the object's columns only."""
    rng = np.random.default_rng(3)
    sigma = 2.0
    clean = np.zeros((8, 96, 96))
    clean[:, 30:66, 30:66] = 300.0 * np.exp(-TE_MS / 30.0)[:, None, None]
    clean[:, :, 30:66] += 20.0  # a ghost band along the phase-encoding axis (rows)
    noise = rng.normal(size=(8, 96, 96, N_COILS, 2)) * sigma
    images = np.sqrt(
        ((clean[..., None] / np.sqrt(N_COILS) + noise[..., 0]) ** 2).sum(-1)
        + (noise[..., 1] ** 2).sum(-1)
    )
    estimate = estimate_noise(images, N_COILS, phase_encoding_axis=0)
    assert estimate.artifact_free
    assert estimate.sigma == pytest.approx(sigma, rel=0.02)


@pytest.mark.parametrize(
    ("signal", "status"),
    [
        (np.full(8, 100.0), Status.OUT_OF_RANGE),  # constant
        (100.0 * np.exp(TE_MS / 50.0), Status.OUT_OF_RANGE),  # growing, non-decaying
        (np.zeros(8), Status.FIT_FAILED),  # no signal
        (np.r_[100.0, -1.0, np.ones(6)], Status.FIT_FAILED),  # negative sample
        (np.r_[100.0, np.nan, np.ones(6)], Status.FIT_FAILED),  # non-finite sample
        (100.0 * np.exp(-TE_MS / 0.2), Status.BELOW_RANGE),  # decays faster than the bound
    ],
)
def test_failed_fits_report_nan_and_a_status(signal: np.ndarray, status: Status) -> None:
    fit = fit_curves(TE_MS, signal, _options("mono")).curve(())
    assert fit.status is status
    for model in SIGNAL_MODELS:  # other models may give another reason, never a number
        fit = fit_curves(TE_MS, signal, _options(model), sigma=1.0).curve(())
        assert fit.status is not Status.OK, model
        assert np.isnan([fit.t2star_ms, fit.s0, fit.r2, fit.ci_low_ms, fit.ci_high_ms]).all()
    if np.all(np.isfinite(signal)) and np.all(signal >= 0):
        assert fit_curve_lmfit(TE_MS, signal, _options("mono")).status is status


def test_poor_fit_is_fit_failed_and_map_marks_outside_mask() -> None:
    rng = np.random.default_rng(8)
    noise_only = rng.uniform(90, 110, size=(8, 4, 4))
    options = _options("mono", min_r2=0.9)
    images = np.concatenate(
        [noise_only, 100 * np.exp(-TE_MS / 10)[:, None, None] * np.ones((8, 4, 4))], axis=2
    )
    mask = np.ones((4, 8), dtype=bool)
    mask[0, 0] = False
    result = fit_map(images, TE_MS, options, mask=mask)
    assert result.t2star_ms.shape == (4, 8)
    assert result.status[0, 0] == status_code(Status.EMPTY_MASK)
    assert np.all(result.status[:, :4][mask[:, :4]] != OK)
    assert np.allclose(result.t2star_ms[:, 4:], 10.0)


def test_bad_inputs_are_refused() -> None:
    options = _options("mono")
    curve = mono_exp(TE_MS, 1.0, 10.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        fit_curves(TE_MS[::-1], curve, options)
    with pytest.raises(ValueError, match=">= 0"):
        fit_curves(TE_MS - 5.0, curve, options)
    with pytest.raises(ValueError, match="echoes"):
        fit_curves(TE_MS[:5], curve, options)
    with pytest.raises(ValueError, match="sigma"):
        fit_curves(TE_MS, curve, _options("noise_corrected"))
    with pytest.raises(ValueError, match="unknown T2\\* model"):
        _options("biexponential")
    with pytest.raises(ValueError, match="min_echoes"):
        _options("mono", min_echoes=2)


def test_lmfit_is_imported_only_by_the_reference_fitter():
    code = (
        "import sys, numpy as np, cmrseg.t2star as t\n"
        "assert 'lmfit' not in sys.modules, 'imported with the package'\n"
        "opts = t.FitOptions(model='mono', t2star_bounds_ms=(1.0, 200.0), min_echoes=3,"
        " low_bound_te1_fraction=0.5,"
        " min_r2=0.5, n_coils=4, truncation_factor=2.0, noise_test_level=None)\n"
        "te = np.linspace(3.0, 21.0, 8)\n"
        "fit = t.fit_curve_lmfit(te, 100 * np.exp(-te / 20.0), opts)\n"
        "assert 'lmfit' in sys.modules and abs(fit.t2star_ms - 20.0) < 1e-3\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_noise_test_accepts_shallow_decays_that_r2_rejects_but_not_a_floor() -> None:
    # 60 ms at SNR 12: the decay over 3-22 ms is about 3 noise SDs, so many right fits have
    # R^2 < 0.5; their residuals are noise and their signal stays far above the floor
    curves, sigma = multicoil_magnitude(60.0, 400, 12.0, seed=3)
    r2_only = fit_curves(TE_MS, curves, _options("noise_corrected", noise_test_level=None), sigma)
    tested = fit_curves(TE_MS, curves, _options("noise_corrected", noise_test_level=0.99), sigma)
    assert np.mean(r2_only.status == OK) < 0.75
    assert np.mean(tested.status == OK) > 0.95
    assert np.all(tested.status[r2_only.status == OK] == OK)  # it only adds
    assert np.nanmedian(tested.t2star_ms) == pytest.approx(60.0, rel=0.05)
    # pure noise (no signal): whatever its residuals, the fitted signal is not above the floor
    channels = np.random.default_rng(4).normal(0.0, sigma, (400, TE_MS.size, N_COILS, 2))
    noise = np.sqrt((channels**2).sum(axis=(-1, -2)))
    r2_only = fit_curves(TE_MS, noise, _options("noise_corrected", noise_test_level=None), sigma)
    tested = fit_curves(TE_MS, noise, _options("noise_corrected", noise_test_level=0.99), sigma)
    assert np.array_equal(tested.status, r2_only.status)
    # the lmfit reference applies the same test
    for curve in curves[:20]:
        options = _options("noise_corrected", noise_test_level=0.99)
        vectorized = fit_curves(TE_MS, curve, options, sigma).curve(())
        assert fit_curve_lmfit(TE_MS, curve, options, sigma).status is vectorized.status
    with pytest.raises(ValueError, match="noise_test_level"):
        _options("noise_corrected", noise_test_level=1.0)


@pytest.mark.parametrize("n_coils", [1.0, 3.7, 4.0, 16.0])
def test_tabulated_noise_floor_matches_the_hypergeometric_form(n_coils: float) -> None:
    # the vectorized fitter reads E[M] and its slope below the asymptotic branch from a table
    # (cubic Hermite); the lmfit reference and noise_floor_mean use 1F1 itself
    from cmrseg.t2star.signal import noise_floor_mean_and_slope

    snr = np.concatenate([[0.0, 1e-9], np.linspace(0.0, 20.0 + 2 * n_coils, 5003)[1:-1]])
    amplitude = 0.7 * snr
    exact = noise_floor_mean_and_slope(amplitude, 0.7, n_coils, exact=True)
    table = noise_floor_mean_and_slope(amplitude, 0.7, n_coils)
    np.testing.assert_allclose(table[0], exact[0], rtol=1e-10)
    np.testing.assert_allclose(table[1], exact[1], rtol=0, atol=1e-10)
    np.testing.assert_allclose(noise_floor_mean(amplitude, 0.7, n_coils), exact[0], rtol=0)
