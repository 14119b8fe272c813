"""Agreement and means with bootstrap confidence intervals over subjects.

:func:`agreement_intervals` gives the Bland-Altman bias and 95% limits of agreement (in the
unit of the data and in percent of the pair's mean), ICC(2,1) and, for graded values, Cohen's
kappa plain and linearly weighted, each with a percentile interval from
:func:`~cmrseg.stats.bootstrap.bootstrap_intervals` (whole subjects resampled).
:func:`mean_interval` does the same for a mean over rows.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from cmrseg.stats.agreement import Z_95, weighted_bland_altman, weighted_icc, weighted_kappa
from cmrseg.stats.bootstrap import DEFAULT_N_BOOT, Interval, bootstrap_intervals

__all__ = ["AGREEMENT_STATISTICS", "agreement_intervals", "mean_interval"]

#: Names of :func:`agreement_intervals` (the kappas only with grades).
AGREEMENT_STATISTICS: tuple[str, ...] = (
    "bias",
    "loa_low",
    "loa_high",
    "bias_pct",
    "loa_low_pct",
    "loa_high_pct",
    "icc",
    "kappa",
    "kappa_linear",
)


def _grade_codes(grades: Sequence[str], categories: Sequence[str]) -> np.ndarray:
    """Index of each grade in ``categories``; -1 for an empty grade."""
    index = {c: i for i, c in enumerate(categories)}
    unknown = {g for g in grades if g not in (None, "") and g not in index}
    if unknown:
        raise ValueError(f"grades {sorted(unknown)} are not in categories {list(categories)}")
    return np.array([index.get(g, -1) if g else -1 for g in grades], dtype=np.int64)


def agreement_intervals(
    a: np.ndarray | Sequence[float],
    b: np.ndarray | Sequence[float],
    subjects: Sequence[Hashable],
    *,
    grades: tuple[Sequence[str], Sequence[str]] | None = None,
    categories: Sequence[str] = (),
    n_boot: int = DEFAULT_N_BOOT,
    seed: int,
) -> tuple[int, dict[str, Interval]]:
    """Agreement of ``a`` with ``b`` and 95% intervals, resampling subjects.

    Args:
        a: Values of method A ``[n]`` (e.g. T2* in ms on predicted masks; NaN where missing).
        b: Values of method B ``[n]``.
        subjects: Subject of every row ``[n]`` (one row per subject for per-subject statistics,
            several for per-slice statistics).
        grades: Grades of A and B ``([n], [n])`` (``""`` where missing) for the kappas.
        categories: The ordered grades (for the weighted kappa), e.g. normal..severe.
        n_boot: Bootstrap replicates.
        seed: Seed of the resampling.

    Returns:
        The complete pairs of values, and an :class:`~cmrseg.stats.bootstrap.Interval` per name
        of :data:`AGREEMENT_STATISTICS` (no kappas without ``grades``); everything NaN without
        a row.
    """
    x = np.stack([np.asarray(a, dtype=float), np.asarray(b, dtype=float)], axis=1)
    if x.shape[0] != len(subjects):
        raise ValueError(f"{len(subjects)} subjects for {x.shape[0]} rows")
    names = AGREEMENT_STATISTICS if grades is not None else AGREEMENT_STATISTICS[:7]
    n_pairs = int(np.isfinite(x).all(axis=1).sum())
    if x.shape[0] == 0:
        return 0, {name: Interval(np.nan, np.nan, np.nan) for name in names}
    c = len(categories)
    onehot = None
    if grades is not None:
        codes = np.stack([_grade_codes(g, categories) for g in grades], axis=1)
        graded = (codes >= 0).all(axis=1)
        onehot = np.zeros((x.shape[0], c * c))
        onehot[graded, codes[graded, 0] * c + codes[graded, 1]] = 1.0

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for suffix, percent in (("", False), ("_pct", True)):
            bias, sd, _ = weighted_bland_altman(x, weights, percent=percent)
            out |= {
                f"bias{suffix}": bias,
                f"loa_low{suffix}": bias - Z_95 * sd,
                f"loa_high{suffix}": bias + Z_95 * sd,
            }
        out["icc"] = weighted_icc(x, weights, "2,1")
        if onehot is not None:
            counts = (weights @ onehot).reshape(-1, c, c)
            out["kappa"] = weighted_kappa(counts)
            out["kappa_linear"] = weighted_kappa(counts, "linear")
        return {name: out[name] for name in names}

    return n_pairs, bootstrap_intervals(statistic, subjects, n_boot=n_boot, seed=seed)


def mean_interval(
    values: np.ndarray | Sequence[float],
    subjects: Sequence[Hashable],
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int,
) -> Interval:
    """Mean of the finite values and its 95% interval, resampling subjects.

    Args:
        values: ``[n]`` values (e.g. per-slice Jaccard; NaN left out).
        subjects: Subject of every value ``[n]``.
        n_boot: Bootstrap replicates.
        seed: Seed of the resampling.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return Interval(np.nan, np.nan, np.nan)

    finite = np.isfinite(x)
    x = np.where(finite, x, 0.0)

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        weights = weights * finite[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"mean": (weights @ x) / weights.sum(axis=1)}

    return bootstrap_intervals(statistic, subjects, n_boot=n_boot, seed=seed)["mean"]
