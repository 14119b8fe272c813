"""T2* fitters: a batched Levenberg-Marquardt for whole maps, lmfit per curve, log-linear.

All fitters share :class:`FitOptions` and report NaN plus a :class:`~cmrseg.t2star.Status`
where no trustworthy value exists (too few echoes, no convergence, T2* at a bound, poor R^2).

The batched fitter works on every curve at once in numpy: a closed-form weighted log-linear
start, then projected Levenberg-Marquardt on ``(S0, R2* = 1/T2*)`` with per-curve damping.
:func:`fit_curve_lmfit` is the per-curve reference it is benchmarked and tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
from scipy import stats

from cmrseg.t2star.signal import (
    chi_floor_factor,
    mono_exp,
    mono_exp_noise_corrected,
    mono_exp_offset,
    noise_floor_mean_and_slope,
    truncation_mask,
)
from cmrseg.t2star.status import Status, status_code

if TYPE_CHECKING:
    import lmfit

__all__ = [
    "SIGNAL_MODELS",
    "CurveFit",
    "FitOptions",
    "MapFit",
    "SignalModel",
    "fit_curve_lmfit",
    "fit_curves",
    "fit_loglinear",
    "fit_map",
]

SignalModel = Literal["mono", "mono_offset", "truncated", "noise_corrected"]
SIGNAL_MODELS: tuple[str, ...] = get_args(SignalModel)
_NEEDS_SIGMA = ("truncated", "noise_corrected")
_CI_LEVEL = 0.95
_MAX_ITER = 100
_TOL = 1e-10
#: ``noise_test_level``: the fitted amplitude at the last echo must be at least this multiple of
#: the mean of pure noise (fixed before it was measured: benchmarks/README.md, issue 14).
_NOISE_TEST_FLOOR_MULTIPLE = 2.0


@dataclass
class FitOptions:
    """How to fit one decay curve (values come from ``conf/t2star``).

    Attributes:
        model: One of :data:`SIGNAL_MODELS`: ``mono`` (S0 exp(-TE/T2*)), ``mono_offset``
            (+ C), ``truncated`` (mono on the echoes above ``truncation_factor`` x noise floor)
            or ``noise_corrected`` (noncentral-chi mean of the mono decay; needs ``sigma``).
        t2star_bounds_ms: ``(low, high)`` fit bounds in ms. The lower bound actually used is
            the larger of ``low`` and ``low_bound_te1_fraction`` x the first echo time
            (:meth:`bounds_ms`): a T2* far below the first TE leaves no signal to measure. A T2*
            on the lower bound is ``below_range``, on the upper bound ``out_of_range``.
        low_bound_te1_fraction: Lower bound as a fraction of the first echo time (0: only
            ``low``).
        min_echoes: Fewest echoes a fit may use.
        min_r2: Fits with a lower coefficient of determination are ``fit_failed``, unless
            ``noise_test_level`` accepts them.
        n_coils: Effective number of receiver coils combined by RSS (noise model of
            ``truncated``/``noise_corrected``; may be fractional); ``None``: estimated per slice
            from the background (:func:`~cmrseg.t2star.estimate_noise`). A fit needs a number.
        truncation_factor: Echo threshold of ``truncated`` in units of the noise-floor mean.
        noise_test_level: ``noise_corrected`` only, or ``None``: a fit below ``min_r2`` is
            still accepted when its residuals are what the noise gives and its signal stays
            above the noise floor (:func:`_residuals_are_noise`). A shallow decay (a normal
            heart over 3-22 ms) has a low R^2 at low SNR even when the fit is right.
    """

    model: str
    t2star_bounds_ms: tuple[float, float]
    low_bound_te1_fraction: float
    min_echoes: int
    min_r2: float
    n_coils: float | None
    truncation_factor: float
    noise_test_level: float | None

    def __post_init__(self) -> None:
        if self.model not in SIGNAL_MODELS:
            raise ValueError(f"unknown T2* model {self.model!r}; choose from {SIGNAL_MODELS}")
        if len(self.t2star_bounds_ms) != 2:
            raise ValueError(f"t2star_bounds_ms must be [low, high], got {self.t2star_bounds_ms}")
        low, high = self.t2star_bounds_ms
        if not 0 < low < high:
            raise ValueError(f"t2star_bounds_ms must satisfy 0 < low < high, got {low}, {high}")
        if self.min_echoes < self.n_params + 1:
            raise ValueError(f"model {self.model} needs min_echoes >= {self.n_params + 1}")
        if self.n_coils is not None and not self.n_coils >= 1:
            raise ValueError(f"n_coils must be >= 1 or null, got {self.n_coils}")
        if not 0 <= self.low_bound_te1_fraction < 1:
            raise ValueError(
                f"low_bound_te1_fraction must be in [0, 1), got {self.low_bound_te1_fraction}"
            )
        if self.noise_test_level is not None and not 0 < self.noise_test_level < 1:
            raise ValueError(
                f"noise_test_level must be in (0, 1) or null, got {self.noise_test_level}"
            )
        self.t2star_bounds_ms = (float(low), float(high))

    def bounds_ms(self, te_ms: np.ndarray) -> tuple[float, float]:
        """Fit bounds ``(low, high)`` in ms for these echo times (see ``t2star_bounds_ms``)."""
        low, high = self.t2star_bounds_ms
        return max(low, self.low_bound_te1_fraction * float(np.asarray(te_ms)[0])), high

    @property
    def n_params(self) -> int:
        """Number of free parameters of the model."""
        return 3 if self.model == "mono_offset" else 2

    @property
    def needs_sigma(self) -> bool:
        """Whether the model needs the noise SD."""
        return self.model in _NEEDS_SIGMA


@dataclass(frozen=True)
class CurveFit:
    """Fit of one decay curve; numbers are NaN unless ``status`` is ``ok``.

    Attributes:
        t2star_ms: T2* in ms.
        s0: Signal at TE = 0 (image units).
        offset: Constant of ``mono_offset`` (NaN for other models).
        r2: Coefficient of determination over the echoes used.
        ci_low_ms: Lower end of the 95% confidence interval of T2* (from the covariance).
        ci_high_ms: Upper end of that interval.
        n_echoes: Echoes used by the fit.
        status: Outcome.
    """

    t2star_ms: float
    s0: float
    offset: float
    r2: float
    ci_low_ms: float
    ci_high_ms: float
    n_echoes: int
    status: Status


@dataclass(frozen=True)
class MapFit:
    """Fits of many curves; every array has the batch shape (``[P]`` or ``[H, W]``).

    Numbers are NaN where ``status`` is not 0 (``ok``); ``status`` holds
    :func:`~cmrseg.t2star.status_code` values (``uint8``). Fields as in :class:`CurveFit`, and
    ``noise_test_only`` (bool): ``ok`` fits below ``min_r2`` that ``noise_test_level`` accepted.
    """

    t2star_ms: np.ndarray
    s0: np.ndarray
    offset: np.ndarray
    r2: np.ndarray
    ci_low_ms: np.ndarray
    ci_high_ms: np.ndarray
    n_echoes: np.ndarray
    status: np.ndarray
    noise_test_only: np.ndarray

    def curve(self, index: int | tuple[int, ...]) -> CurveFit:
        """Return the fit of one curve as a :class:`CurveFit`."""
        return CurveFit(
            t2star_ms=float(self.t2star_ms[index]),
            s0=float(self.s0[index]),
            offset=float(self.offset[index]),
            r2=float(self.r2[index]),
            ci_low_ms=float(self.ci_low_ms[index]),
            ci_high_ms=float(self.ci_high_ms[index]),
            n_echoes=int(self.n_echoes[index]),
            status=tuple(Status)[int(self.status[index])],
        )

    def reshape(self, shape: tuple[int, ...]) -> MapFit:
        """Return the same fits with every array reshaped to ``shape``."""
        return MapFit(**{k: v.reshape(shape) for k, v in vars(self).items()})


# --------------------------------------------------------------------------- input checks


def _check_inputs(
    te_ms: np.ndarray,
    signals: np.ndarray,
    options: FitOptions,
    sigma: float | None,
    needs_sigma: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    te = np.asarray(te_ms, dtype=float)
    y = np.asarray(signals, dtype=float)
    if te.ndim != 1 or te.size < 2:
        raise ValueError(f"te_ms must be 1-D with >= 2 echoes, got shape {te.shape}")
    if not np.all(np.isfinite(te)) or te[0] < 0 or np.any(np.diff(te) <= 0):
        raise ValueError(f"te_ms must be finite, >= 0 and strictly increasing, got {te.tolist()}")
    if y.shape[-1] != te.size:
        raise ValueError(f"signals have {y.shape[-1]} echoes but te_ms has {te.size}")
    needs_sigma = options.needs_sigma if needs_sigma is None else needs_sigma
    if needs_sigma and (sigma is None or not np.isfinite(sigma) or sigma < 0):
        raise ValueError(f"model {options.model} needs a finite noise sigma >= 0, got {sigma}")
    if needs_sigma and options.n_coils is None:
        raise ValueError(f"model {options.model} needs n_coils (estimate it: estimate_noise)")
    return te, y


# --------------------------------------------------------------------------- log-linear


def _loglinear(te: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of ``log y = log S0 - R2* TE`` for every row of ``y`` [P, E].

    Returns ``(s0, r2star_per_ms)`` [P]; NaN where fewer than two echoes carry weight.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        log_y = np.log(np.where(y > 0, y, 1.0))
        w = np.where(y > 0, weights, 0.0)
        sw = w.sum(axis=1)
        mean_te = (w * te).sum(axis=1) / sw
        mean_log = (w * log_y).sum(axis=1) / sw
        dte = te - mean_te[:, None]
        sxx = (w * dte**2).sum(axis=1)
        slope = (w * dte * (log_y - mean_log[:, None])).sum(axis=1) / sxx
        s0 = np.exp(mean_log - slope * mean_te)
    ok = ((w > 0).sum(axis=1) >= 2) & (sxx > 0)
    return np.where(ok, s0, np.nan), np.where(ok, -slope, np.nan)


def fit_loglinear(
    te_ms: np.ndarray, signals: np.ndarray, options: FitOptions, sigma: float | None = None
) -> MapFit:
    """Log-linear baseline: unweighted straight line through ``log S`` versus TE.

    Echoes with signal <= 0 are skipped; truncation applies when ``options.model`` is
    ``truncated``. The confidence interval is that of the slope of the line.

    Args:
        te_ms: Echo times [E] in ms.
        signals: Magnitude curves ``[..., E]``.
        options: Bounds, ``min_echoes`` and ``min_r2`` are honoured; the model only for truncation.
        sigma: Noise SD (``truncated`` only).

    Returns:
        :class:`MapFit` with the batch shape of ``signals``.
    """
    te, y = _check_inputs(te_ms, signals, options, sigma, options.model == "truncated")
    batch = y.shape[:-1]
    y = y.reshape(-1, te.size)
    weights = _echo_weights(y, options, sigma)
    s0, rate = _loglinear(te, y, weights)
    low_ms, high_ms = options.bounds_ms(te)
    rate = np.clip(rate, 1.0 / high_ms, 1.0 / low_ms)
    used = weights * (y > 0)
    n_used = used.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = n_used - 2
        log_fit = np.log(s0)[:, None] - rate[:, None] * te
        log_y = np.log(np.where(y > 0, y, 1.0))
        resid_var = (used * (log_y - log_fit) ** 2).sum(axis=1) / dof
        mean_te = (used * te).sum(axis=1) / n_used
        sxx = (used * (te - mean_te[:, None]) ** 2).sum(axis=1)
        rate_se = np.sqrt(resid_var / sxx)
    model = s0[:, None] * np.exp(-rate[:, None] * te)
    fit = _finish(te, y, used, model, np.stack([s0, rate], axis=1), rate_se, n_used, options)
    return fit.reshape(batch)


# --------------------------------------------------------------------------- batched LM


def _echo_weights(y: np.ndarray, options: FitOptions, sigma: float | None) -> np.ndarray:
    """0/1 weights [P, E] of the echoes each curve's fit uses."""
    valid = np.isfinite(y).all(axis=1, keepdims=True) & (y >= 0).all(axis=1, keepdims=True)
    if options.model == "truncated":
        keep = truncation_mask(
            np.nan_to_num(y), sigma, options.n_coils, options.truncation_factor, options.min_echoes
        )
    else:
        keep = np.ones_like(y, dtype=bool)
    return (keep & valid).astype(float)


def _evaluate(
    model: str, te: np.ndarray, p: np.ndarray, sigma: np.ndarray, n_coils: int
) -> tuple[np.ndarray, np.ndarray]:
    """Model values [P, E] and Jacobian [P, E, K] at parameters ``p`` [P, K] = (S0, R2*, [C])."""
    decay = np.exp(-te * p[:, 1:2])
    amplitude = p[:, 0:1] * decay
    jac = np.stack([decay, -te * amplitude], axis=-1)
    if model == "mono_offset":
        jac = np.concatenate([jac, np.ones_like(decay)[..., None]], axis=-1)
        return amplitude + p[:, 2:3], jac
    if model == "noise_corrected":
        mean, slope = noise_floor_mean_and_slope(amplitude, sigma[:, None], n_coils)
        return mean, jac * slope[..., None]
    return amplitude, jac


def _levenberg_marquardt(
    model: str,
    te: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    p: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    sigma: np.ndarray,
    n_coils: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projected LM on all rows at once; returns ``(params, jacobian, converged)``."""
    n_curves, n_params = p.shape
    f, jac = _evaluate(model, te, p, sigma, n_coils)
    resid = w * (y - f)
    cost = (resid**2).sum(axis=1)
    scale = (w * y**2).sum(axis=1)
    damping = np.full(n_curves, 1e-3)
    active = np.isfinite(cost) & np.isfinite(p).all(axis=1)
    converged = np.zeros(n_curves, dtype=bool)
    eye = np.eye(n_params)
    for _ in range(_MAX_ITER):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        jw = jac[idx] * w[idx, :, None]
        jtj = np.einsum("pek,pel->pkl", jw, jw)
        grad = np.einsum("pek,pe->pk", jw, resid[idx])
        # Active set: a parameter on a bound whose gradient points outward stays there.
        fixed = ((p[idx] <= bounds[0]) & (grad < 0)) | ((p[idx] >= bounds[1]) & (grad > 0))
        free = (~fixed).astype(float)
        jtj = jtj * free[:, :, None] * free[:, None, :] + fixed[:, :, None] * eye
        grad = grad * free
        diag = np.einsum("pkk->pk", jtj)
        diag = np.maximum(diag, 1e-12 * diag.max(axis=1, keepdims=True) + 1e-300)
        lhs = jtj + (damping[idx, None] * diag)[..., None] * eye
        step = np.linalg.solve(lhs, grad[..., None])[..., 0]
        p_new = np.clip(p[idx] + step, bounds[0], bounds[1])
        f_new, jac_new = _evaluate(model, te, p_new, sigma[idx], n_coils)
        resid_new = w[idx] * (y[idx] - f_new)
        cost_new = (resid_new**2).sum(axis=1)
        better = np.isfinite(cost_new) & (cost_new <= cost[idx])
        gain = cost[idx] - cost_new
        moved = np.abs(p_new - p[idx]) > _TOL * (np.abs(p[idx]) + _TOL)
        acc = idx[better]
        p[acc], jac[acc], resid[acc] = p_new[better], jac_new[better], resid_new[better]
        cost[acc] = cost_new[better]
        damping[acc] = np.maximum(damping[acc] * 0.1, 1e-12)
        damping[idx[~better]] *= 10.0
        done = better & (
            (gain <= _TOL * cost_new) | ~moved.any(axis=1) | (cost_new <= 1e-24 * scale[idx])
        )
        converged[idx[done]] = True
        stuck = ~better & (damping[idx] > 1e12)
        converged[idx[stuck]] = True
        active[idx[done | stuck]] = False
    return p, jac, converged


def fit_curves(
    te_ms: np.ndarray,
    signals: np.ndarray,
    options: FitOptions,
    sigma: float | None = None,
    *,
    min_echoes: int | None = None,
) -> MapFit:
    """Fit every curve of ``signals`` at once (vectorized Levenberg-Marquardt).

    Args:
        te_ms: Echo times [E] in ms, strictly increasing.
        signals: Magnitude curves ``[..., E]`` (image units, >= 0). Curves with a negative or
            non-finite sample get ``fit_failed``.
        options: Model, bounds and acceptance thresholds.
        sigma: Noise SD per channel, required by ``truncated`` and ``noise_corrected``.
        min_echoes: Fewest echoes a fit may use, instead of ``options.min_echoes`` (a region
            refitted on the echoes above its own floor may use 2: an exactly determined fit).

    Returns:
        :class:`MapFit` with the batch shape of ``signals``.
    """
    te, y = _check_inputs(te_ms, signals, options, sigma)
    batch = y.shape[:-1]
    y = y.reshape(-1, te.size)
    weights = _echo_weights(y, options, sigma)
    y = np.nan_to_num(y)
    # Normalize every curve to its largest used sample: the fit is scale-free, LM better posed.
    norm = np.max(weights * y, axis=1)
    norm = np.where(norm > 0, norm, 1.0)
    y_n = y / norm[:, None]
    sigma_n = (0.0 if sigma is None else float(sigma)) / norm
    s0, rate = _loglinear(te, y_n, weights * y_n**2)
    low_ms, high_ms = options.bounds_ms(te)
    lower = [0.0, 1.0 / high_ms] + ([0.0] if options.model == "mono_offset" else [])
    upper = [1e6, 1.0 / low_ms] + ([1e6] if options.model == "mono_offset" else [])
    p0 = np.column_stack(
        [np.nan_to_num(s0, nan=1.0), np.nan_to_num(rate, nan=1.0 / np.sqrt(low_ms * high_ms))]
        + (
            [0.5 * np.min(np.where(weights > 0, y_n, np.inf), axis=1)]
            if options.model == "mono_offset"
            else []
        )
    )
    p0 = np.clip(p0, lower, upper)
    params, jac, converged = _levenberg_marquardt(
        options.model,
        te,
        y_n,
        weights,
        p0,
        (np.array(lower), np.array(upper)),
        sigma_n,
        options.n_coils,
    )
    f, _ = _evaluate(options.model, te, params, sigma_n, options.n_coils)
    n_used = weights.sum(axis=1)
    noise_consistent = None
    if options.model == "noise_corrected" and options.noise_test_level is not None:
        noise_consistent = _residuals_are_noise(
            te, y_n, f, weights, params, sigma_n, options, n_used
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        jw = jac * weights[..., None]
        cov_unscaled = np.linalg.pinv(np.einsum("pek,pel->pkl", jw, jw))
        resid_var = (weights * (y_n - f) ** 2).sum(axis=1) / (n_used - options.n_params)
        rate_se = np.sqrt(resid_var * cov_unscaled[:, 1, 1])
    params[:, 0] *= norm
    if options.model == "mono_offset":
        params[:, 2] *= norm
    fit = _finish(
        te,
        y,
        weights,
        f * norm[:, None],
        params,
        rate_se,
        n_used,
        options,
        converged,
        min_echoes,
        noise_consistent,
    )
    return fit.reshape(batch)


def _residuals_are_noise(
    te: np.ndarray,
    y: np.ndarray,
    f: np.ndarray,
    weights: np.ndarray,
    params: np.ndarray,
    sigma: np.ndarray,
    options: FitOptions,
    n_used: np.ndarray,
) -> np.ndarray:
    """[P] whether noise-corrected fits pass as noise: the test of ``noise_test_level``.

    Two conditions: the residuals are what the noise gives, ``sum((y - f)**2 / Var[M]) <=
    chi2.ppf(level, echoes - 2)`` with ``Var[M] = A**2 + 2 N sigma**2 - E[M]**2`` the variance
    of the RSS magnitude of the fitted amplitude ``A`` (``f = E[M]``); and that amplitude at the
    last used echo is at least :data:`_NOISE_TEST_FLOOR_MULTIPLE` times the mean of pure noise.
    Without the second, a curve whose late echoes are a flat floor (severe iron under ghosts)
    passes the first with a long T2* (phantom `hard`: true 2-4 ms read 11-21 ms).

    Args:
        te: Echo times [E].
        y: Curves [P, E] (any scale shared with ``f``, ``params`` and ``sigma``).
        f: Fitted ``E[M]`` [P, E].
        weights: 0/1 echo weights [P, E].
        params: Fitted ``(S0, R2*)`` [P, 2].
        sigma: Noise SD per channel [P].
        options: Coil count and ``noise_test_level``.
        n_used: Echoes used [P].
    """
    amplitude = params[:, 0:1] * np.exp(-te * params[:, 1:2])
    variance = amplitude**2 + 2 * options.n_coils * sigma[:, None] ** 2 - f**2
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = (weights * (y - f) ** 2 / np.maximum(variance, 1e-12 * sigma[:, None] ** 2)).sum(1)
    dof = np.maximum(n_used - options.n_params, 1)
    passes = np.isfinite(chi2) & (chi2 <= stats.chi2.ppf(options.noise_test_level, dof))
    last = np.where(weights > 0, amplitude, np.inf).min(axis=1)
    floor = _NOISE_TEST_FLOOR_MULTIPLE * chi_floor_factor(options.n_coils) * sigma
    return passes & (last >= floor)


def _finish(
    te: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    model_values: np.ndarray,
    params: np.ndarray,
    rate_se: np.ndarray,
    n_used: np.ndarray,
    options: FitOptions,
    converged: np.ndarray | None = None,
    min_echoes: int | None = None,
    noise_consistent: np.ndarray | None = None,
) -> MapFit:
    """Turn fitted ``(S0, R2*, [C])`` [P, K] into a :class:`MapFit` with statuses.

    ``min_echoes`` overrides ``options.min_echoes``; ``noise_consistent`` [P] accepts fits
    below ``options.min_r2`` (:func:`_residuals_are_noise`).
    """
    low_ms, high_ms = options.bounds_ms(te)
    s0, rate = params[:, 0], params[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t2star = 1.0 / rate
        sw = weights.sum(axis=1)
        mean_y = (weights * y).sum(axis=1) / sw
        ss_tot = (weights * (y - mean_y[:, None]) ** 2).sum(axis=1)
        ss_res = (weights * (y - model_values) ** 2).sum(axis=1)
        r2 = 1.0 - ss_res / ss_tot
        dof = np.maximum(n_used - options.n_params, 1)
        half_width = stats.t.ppf(0.5 + _CI_LEVEL / 2, dof) * rate_se / rate**2
    finite = np.isfinite(t2star) & np.isfinite(s0) & np.all(np.isfinite(y), axis=1)
    tol = 1e-6
    not_converged = np.zeros(len(y), dtype=bool) if converged is None else ~converged
    fewest = options.min_echoes if min_echoes is None else min_echoes
    failed = (n_used < fewest) | ~finite | (s0 <= 0) | not_converged
    below = ~failed & (t2star <= low_ms * (1 + tol))
    above = ~failed & ~below & ((t2star >= high_ms * (1 - tol)) | ~np.isfinite(t2star))
    accepted = r2 >= options.min_r2
    if noise_consistent is not None:
        accepted |= noise_consistent
    failed |= ~below & ~above & ~accepted
    status = np.full(len(y), status_code(Status.OK), dtype=np.uint8)
    status[failed] = status_code(Status.FIT_FAILED)
    status[below] = status_code(Status.BELOW_RANGE)
    status[above] = status_code(Status.OUT_OF_RANGE)
    ok = status == status_code(Status.OK)

    def _masked(values: np.ndarray) -> np.ndarray:
        return np.where(ok, values, np.nan)

    offset = params[:, 2] if params.shape[1] > 2 else np.full(len(y), np.nan)
    ci_half = np.where(np.isfinite(half_width), half_width, np.nan)
    return MapFit(
        t2star_ms=_masked(t2star),
        s0=_masked(s0),
        offset=_masked(offset),
        r2=_masked(r2),
        ci_low_ms=_masked(t2star - ci_half),
        ci_high_ms=_masked(t2star + ci_half),
        n_echoes=n_used.astype(np.int16),
        status=status,
        noise_test_only=ok & ~(r2 >= options.min_r2),
    )


def fit_map(
    images: np.ndarray,
    te_ms: np.ndarray,
    options: FitOptions,
    mask: np.ndarray | None = None,
    sigma: float | None = None,
) -> MapFit:
    """Pixel-wise T2* map of one slice.

    Args:
        images: Magnitude images ``[E, H, W]``.
        te_ms: Echo times [E] in ms.
        options: Model, bounds and acceptance thresholds.
        mask: Boolean ``[H, W]``; pixels outside are not fitted (NaN, status ``empty_mask``).
        sigma: Noise SD per channel (``truncated`` and ``noise_corrected``).

    Returns:
        :class:`MapFit` with arrays ``[H, W]``.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be [E, H, W], got shape {images.shape}")
    n_echoes, height, width = images.shape
    curves = np.moveaxis(images, 0, -1).reshape(-1, n_echoes)
    inside = np.ones(height * width, dtype=bool) if mask is None else np.ravel(mask).astype(bool)
    if mask is not None and np.shape(mask) != (height, width):
        raise ValueError(f"mask shape {np.shape(mask)} != image shape {(height, width)}")
    fitted = fit_curves(te_ms, curves[inside], options, sigma)
    out = MapFit(
        t2star_ms=np.full(height * width, np.nan),
        s0=np.full(height * width, np.nan),
        offset=np.full(height * width, np.nan),
        r2=np.full(height * width, np.nan),
        ci_low_ms=np.full(height * width, np.nan),
        ci_high_ms=np.full(height * width, np.nan),
        n_echoes=np.zeros(height * width, dtype=np.int16),
        status=np.full(height * width, status_code(Status.EMPTY_MASK), dtype=np.uint8),
        noise_test_only=np.zeros(height * width, dtype=bool),
    )
    for name, values in vars(fitted).items():
        getattr(out, name)[inside] = values
    return out.reshape((height, width))


# --------------------------------------------------------------------------- lmfit reference


def _lmfit_model(model: str) -> lmfit.Model:
    # imported here: only this reference fitter needs lmfit (about 0.5 s to import)
    import lmfit

    if model == "mono_offset":
        return lmfit.Model(mono_exp_offset, independent_vars=["te_ms"])
    if model == "noise_corrected":
        return lmfit.Model(mono_exp_noise_corrected, independent_vars=["te_ms"])
    return lmfit.Model(mono_exp, independent_vars=["te_ms"])


def fit_curve_lmfit(
    te_ms: np.ndarray, signal: np.ndarray, options: FitOptions, sigma: float | None = None
) -> CurveFit:
    """Reference fit of one curve with :mod:`lmfit` (bounded least squares, log-linear start).

    Args:
        te_ms: Echo times [E] in ms.
        signal: Magnitude curve [E].
        options: Model, bounds and acceptance thresholds.
        sigma: Noise SD per channel (``truncated`` and ``noise_corrected``).

    Returns:
        :class:`CurveFit`; the CI is ``T2* +- t(0.975, dof) * stderr`` from the covariance.
    """
    te, y = _check_inputs(te_ms, signal, options, sigma)
    if y.ndim != 1:
        raise ValueError(f"signal must be 1-D [E], got shape {y.shape}")
    failed = CurveFit(*(np.nan,) * 6, n_echoes=0, status=Status.FIT_FAILED)
    used = _echo_weights(y[None], options, sigma)[0].astype(bool)
    if used.sum() < options.min_echoes or not np.any(y[used] > 0):
        return failed
    te_used, y_used = te[used], y[used]
    s0_start, rate_start = _loglinear(te_used, y_used[None], y_used[None] ** 2)
    low_ms, high_ms = options.bounds_ms(te)
    s0_start = float(s0_start[0]) if np.isfinite(s0_start[0]) else float(y_used.max())
    t2_start = 1.0 / rate_start[0] if rate_start[0] > 0 else np.sqrt(low_ms * high_ms)
    model = _lmfit_model(options.model)
    params = model.make_params()
    params["s0"].set(value=max(s0_start, 1e-12), min=0.0)
    t2_start = float(np.clip(t2_start, low_ms, high_ms))
    params["t2star_ms"].set(value=t2_start, min=low_ms, max=high_ms)
    if options.model == "mono_offset":
        params["offset"].set(value=0.5 * float(y_used.min()), min=0.0)
    if options.model == "noise_corrected":
        params["sigma"].set(value=float(sigma), vary=False)
        params["n_coils"].set(value=options.n_coils, vary=False)
    result = model.fit(y_used, params, te_ms=te_used, nan_policy="raise")
    t2 = result.params["t2star_ms"]
    rel_tol = 1e-6
    at_bound = t2.value <= low_ms * (1 + rel_tol) or t2.value >= high_ms * (1 - rel_tol)
    r2 = float(result.rsquared)
    if not result.success or not np.isfinite(t2.value) or result.params["s0"].value <= 0:
        return failed
    if at_bound:
        status = Status.BELOW_RANGE if t2.value <= low_ms * (1 + rel_tol) else Status.OUT_OF_RANGE
        return CurveFit(*(np.nan,) * 6, n_echoes=int(used.sum()), status=status)
    if not r2 >= options.min_r2 and not (
        options.model == "noise_corrected"
        and options.noise_test_level is not None
        and _residuals_are_noise(
            te_used,
            y_used[None],
            result.best_fit[None],
            np.ones((1, te_used.size)),
            np.array([[result.params["s0"].value, 1.0 / t2.value]]),
            np.array([float(sigma)]),
            options,
            np.array([te_used.size]),
        )[0]
    ):
        return failed
    dof = int(used.sum()) - options.n_params
    if t2.stderr is not None and np.isfinite(t2.stderr):
        half_width = float(stats.t.ppf(0.5 + _CI_LEVEL / 2, dof) * t2.stderr)
    else:
        half_width = np.nan
    offset = result.params["offset"].value if options.model == "mono_offset" else np.nan
    return CurveFit(
        t2star_ms=float(t2.value),
        s0=float(result.params["s0"].value),
        offset=float(offset),
        r2=r2,
        ci_low_ms=float(t2.value - half_width),
        ci_high_ms=float(t2.value + half_width),
        n_echoes=int(used.sum()),
        status=Status.OK,
    )
