"""Bootstrap confidence intervals that resample subjects (clusters), not slices.

Slices of one subject are not independent (same heart, same iron, same scan), so every
interval of the project resamples whole subjects with replacement and keeps all rows of each
drawn subject (the cluster bootstrap; Davison & Hinkley 1997, section 3.8). With one row per
subject this is the plain bootstrap.

Replicates are row weights (how often each row enters), so a statistic written for weights
(:mod:`cmrseg.stats.agreement`) evaluates all replicates at once. The interval is the
percentile interval of the replicates. Replicates in which a statistic is
undefined (NaN, e.g. a kappa whose resample holds a single grade) are left out of that
statistic's quantiles; when more than half are undefined its interval is NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_N_BOOT",
    "Interval",
    "bootstrap_intervals",
    "group_index",
    "replicate_weights",
]

#: Replicates of every interval unless the caller says otherwise.
DEFAULT_N_BOOT = 2000


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval.

    Attributes:
        value: The statistic on the data as observed.
        low: Lower bound of the interval (NaN when undefined).
        high: Upper bound of the interval.
    """

    value: float
    low: float
    high: float


def group_index(groups: Sequence[Hashable]) -> tuple[np.ndarray, int]:
    """Position of each row's group among the groups in order of first appearance.

    Args:
        groups: Group key of every row ``[n]``.

    Returns:
        ``[n]`` group positions and the number of groups.
    """
    index: dict[Hashable, int] = {}
    for key in groups:
        index.setdefault(key, len(index))
    return np.fromiter((index[k] for k in groups), dtype=np.int64, count=len(groups)), len(index)


def replicate_weights(groups: Sequence[Hashable], *, n_boot: int, seed: int) -> np.ndarray:
    """How often each row enters each bootstrap replicate, whole groups resampled.

    Replicate ``b`` draws as many groups as there are, with replacement, as row ``b`` of
    ``np.random.default_rng(seed).integers(0, k, size=(n_boot, k))`` (``k`` groups, numbered in
    order of first appearance); a row counts as often as its group was drawn.

    Args:
        groups: Group key of every row ``[n]``.
        n_boot: Replicates.
        seed: Seed of the resampling.

    Returns:
        ``[n_boot, n]`` float counts.
    """
    rows, k = group_index(groups)
    picks = np.random.default_rng(seed).integers(0, k, size=(n_boot, k))
    counts = np.zeros((n_boot, k))
    np.add.at(counts, (np.arange(n_boot)[:, None], picks), 1.0)
    return counts[:, rows]


def bootstrap_intervals(
    statistic: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    groups: Sequence[Hashable],
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Percentile intervals of statistics of rows, resampling whole groups (subjects).

    Args:
        statistic: Maps row weights ``[B, n]`` (how often each row counts; see
            :func:`replicate_weights`) to named values ``[B]``; it is called once with ones
            (the observed values) and once with the replicates' weights.
        groups: Group key of every row ``[n]``.
        n_boot: Replicates.
        seed: Seed of the resampling (the same seed gives the same interval).
        level: Coverage of the interval, e.g. 0.95.

    Returns:
        An :class:`Interval` per name that ``statistic`` returns.

    Raises:
        ValueError: No rows, ``n_boot < 1`` or ``level`` outside (0, 1).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if len(groups) == 0:
        raise ValueError("no rows to bootstrap")
    observed = statistic(np.ones((1, len(groups))))
    replicates = statistic(replicate_weights(groups, n_boot=n_boot, seed=seed))
    alpha = (1.0 - level) / 2.0
    names = list(observed)
    values = np.stack([np.asarray(replicates[n], dtype=float) for n in names], axis=1)
    defined = 2 * np.isfinite(values).sum(axis=0) > n_boot
    bounds = np.full((2, len(names)), np.nan)
    if defined.any():
        with np.errstate(invalid="ignore"):
            bounds[:, defined] = np.nanquantile(values[:, defined], [alpha, 1.0 - alpha], axis=0)
    return {
        name: Interval(float(np.asarray(observed[name])[0]), float(low), float(high))
        for name, low, high in zip(names, bounds[0], bounds[1], strict=True)
    }
