"""Agreement between two methods of measuring a quantity: Bland-Altman, ICC and Cohen's kappa.

Plain numpy functions on paired measurements (e.g. T2* on the predicted versus the reference
mask). Pairs in which either value is missing (NaN, or an empty grade) are dropped first.

Each statistic is computed by a kernel that takes row weights ``[B, n]`` (how often each row
counts) and returns ``B`` values at once: the public functions call it with one row of ones,
the bootstrap (:mod:`cmrseg.stats.intervals`) with the counts of its replicates, so the two
share one formula and thousands of replicates cost a few matrix products.

References:
    Bland JM, Altman DG. Statistical methods for assessing agreement between two methods of
    clinical measurement. Lancet 1986.
    Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater reliability.
    Psychol Bull 1979 (ICC(2,1) = McGraw & Wong's ICC(A,1), ICC(3,1) = ICC(C,1)).
    Cohen J. Weighted kappa. Psychol Bull 1968.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "Z_95",
    "BlandAltman",
    "bland_altman",
    "bland_altman_percent",
    "cohen_kappa",
    "icc",
    "kappa_from_counts",
    "weighted_bland_altman",
    "weighted_icc",
    "weighted_kappa",
]

#: Standard-normal quantile of the 95% limits of agreement.
Z_95 = 1.959963984540054

Weights = Literal["linear", "quadratic"] | None


@dataclass(frozen=True)
class BlandAltman:
    """Bland-Altman summary of differences ``a - b``, in the unit of the inputs.

    Attributes:
        bias: Mean difference.
        sd: Sample standard deviation of the differences (``ddof=1``).
        loa_low: Lower 95% limit of agreement, ``bias - 1.96 sd``.
        loa_high: Upper 95% limit of agreement, ``bias + 1.96 sd``.
        n: Pairs used.
    """

    bias: float
    sd: float
    loa_low: float
    loa_high: float
    n: int


def _paired(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> np.ndarray:
    """Stack two 1-D series into ``[n, 2]`` (non-finite values kept)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"expected two 1-D series of equal length, got {a.shape} and {b.shape}")
    return np.stack([a, b], axis=1)


def _complete(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero the weight of rows with a non-finite value (and the values, so ``0 * NaN`` is 0)."""
    ok = np.isfinite(x).all(axis=1)
    return np.where(ok[:, None], x, 0.0), weights * ok[None, :]


def weighted_bland_altman(
    pairs: np.ndarray, weights: np.ndarray, *, percent: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bias, SD and pair count of ``pairs[:, 0] - pairs[:, 1]`` for each row of weights.

    Args:
        pairs: ``[n, 2]`` measurements of methods A and B (rows with NaN count for nothing).
        weights: ``[B, n]`` non-negative row counts.
        percent: Differences in percent of the pair's mean (pairs with a mean <= 0 dropped).

    Returns:
        ``bias [B]``, ``sd [B]`` (``ddof=1`` over the counted rows; NaN below 2) and
        ``n [B]`` (the weight sum); bias NaN where ``n`` is 0.
    """
    x, w = _complete(pairs, weights)
    diff = x[:, 0] - x[:, 1]
    if percent:
        mean = x.mean(axis=1)
        w = w * (mean > 0)[None, :]
        diff = 100.0 * diff / np.where(mean > 0, mean, 1.0)
    n = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        bias = (w @ diff) / n
        ss = np.einsum("bn,bn->b", w, (diff[None, :] - bias[:, None]) ** 2)
        sd = np.where(n >= 2, np.sqrt(ss / (n - 1)), np.nan)
    return np.where(n > 0, bias, np.nan), sd, n


def _summary(bias: float, sd: float, n: float) -> BlandAltman:
    return BlandAltman(
        float(bias), float(sd), float(bias - Z_95 * sd), float(bias + Z_95 * sd), int(n)
    )


def bland_altman(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> BlandAltman:
    """Bias and 95% limits of agreement of ``a`` against ``b``.

    Args:
        a: Measurements of method A ``[n]`` (e.g. T2* in ms on predicted masks).
        b: Measurements of method B ``[n]`` (e.g. on reference masks).

    Returns:
        :class:`BlandAltman` of ``a - b``; ``sd`` and the limits are NaN with fewer than
        2 pairs, everything is NaN with none.
    """
    pairs = _paired(a, b)
    bias, sd, n = weighted_bland_altman(pairs, np.ones((1, len(pairs))))
    return _summary(bias[0], sd[0], n[0])


def bland_altman_percent(
    a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]
) -> BlandAltman:
    """Bland-Altman of ``a`` against ``b`` in percent of the pair's mean.

    The differences are ``100 (a - b) / ((a + b) / 2)``, which suits measurements whose error
    grows with their size (T2*); pairs whose mean is not positive are dropped.

    Args:
        a: Measurements of method A ``[n]``.
        b: Measurements of method B ``[n]``.

    Returns:
        :class:`BlandAltman` in percent.
    """
    pairs = _paired(a, b)
    bias, sd, n = weighted_bland_altman(pairs, np.ones((1, len(pairs))), percent=True)
    return _summary(bias[0], sd[0], n[0])


def weighted_icc(
    ratings: np.ndarray, weights: np.ndarray, kind: Literal["2,1", "3,1"]
) -> np.ndarray:
    """:func:`icc` for each row of weights (a row counted ``w`` times enters ``w`` times).

    Args:
        ratings: ``[n, k]`` measurements of ``n`` targets by ``k >= 2`` methods.
        weights: ``[B, n]`` non-negative row counts.
        kind: ``2,1`` or ``3,1``.

    Returns:
        ``[B]`` ICCs (NaN with fewer than 2 counted rows or without any spread).
    """
    if kind not in ("2,1", "3,1"):
        raise ValueError(f"kind must be '2,1' or '3,1', got {kind!r}")
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"ratings must be [n, k] with k >= 2, got shape {x.shape}")
    x, w = _complete(x, np.asarray(weights, dtype=float))
    k = x.shape[1]
    n = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        col_means = (w @ x) / n[:, None]  # [B, k]
        grand = col_means.mean(axis=1)  # [B]
        dev = x[None, :, :] - grand[:, None, None]  # [B, n, k]
        ss_total = np.einsum("bn,bnk->b", w, dev**2)
        ss_rows = k * np.einsum("bn,bn->b", w, dev.mean(axis=2) ** 2)
        ss_cols = n * np.sum((col_means - grand[:, None]) ** 2, axis=1)
        ss_error = np.maximum(ss_total - ss_rows - ss_cols, 0.0)
        ms_rows = ss_rows / (n - 1)
        ms_cols = ss_cols / (k - 1)
        ms_error = ss_error / ((n - 1) * (k - 1))
        denominator = ms_rows + (k - 1) * ms_error
        if kind == "2,1":
            denominator = denominator + k * (ms_cols - ms_error) / n
        out = (ms_rows - ms_error) / denominator
    return np.where((n >= 2) & (denominator > 0), out, np.nan)


def icc(ratings: np.ndarray, kind: Literal["2,1", "3,1"]) -> float:
    """Intraclass correlation of single measurements from a two-way ANOVA.

    With mean squares of rows (targets) ``MSR``, columns (methods) ``MSC`` and error ``MSE``
    for ``n`` targets and ``k`` methods:

    - ``2,1``: two-way random effects, absolute agreement,
      ``(MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)``; a systematic bias between
      methods lowers it;
    - ``3,1``: two-way mixed effects, consistency, ``(MSR - MSE) / (MSR + (k - 1) MSE)``;
      blind to a constant bias.

    Args:
        ratings: ``[n, k]`` measurements of ``n`` targets by ``k >= 2`` methods; rows with a
            non-finite value are dropped.
        kind: ``2,1`` or ``3,1``.

    Returns:
        The ICC; NaN with fewer than 2 complete rows or when every value is the same.
    """
    x = np.asarray(ratings, dtype=float)
    return float(weighted_icc(x, np.ones((1, x.shape[0] if x.ndim else 0)), kind)[0])


def weighted_kappa(counts: np.ndarray, weights: Weights = None) -> np.ndarray:
    """Cohen's kappa of each of ``B`` tables of counts ``[B, c, c]`` (see :func:`cohen_kappa`).

    Returns:
        ``[B]`` kappas; NaN for an empty table or when chance agreement is certain.
    """
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    counts = np.asarray(counts, dtype=float)
    c = counts.shape[-1]
    total = counts.sum(axis=(1, 2))
    distance = np.abs(np.subtract.outer(np.arange(c), np.arange(c))).astype(float)
    if weights is None:
        w = (distance > 0).astype(float)
    else:
        w = distance / max(c - 1, 1)
        if weights == "quadratic":
            w = w**2
    with np.errstate(invalid="ignore", divide="ignore"):
        rows, cols = counts.sum(axis=2), counts.sum(axis=1)  # [B, c] marginal counts
        chance = np.einsum("bi,ij,bj->b", rows, w, cols) / total**2
        kappa = 1.0 - (counts.reshape(len(counts), -1) @ w.ravel()) / total / chance
    return np.where((total > 0) & (chance > 0), kappa, np.nan)


def kappa_from_counts(counts: np.ndarray, weights: Weights = None) -> float:
    """Cohen's kappa of one ``[c, c]`` table of counts (rows: method A, columns: method B)."""
    return float(weighted_kappa(np.asarray(counts, dtype=float)[None], weights)[0])


def cohen_kappa(
    a: Sequence[Hashable],
    b: Sequence[Hashable],
    *,
    categories: Sequence[Hashable],
    weights: Weights = None,
) -> float:
    """Cohen's kappa of two categorical ratings of the same items.

    ``kappa = 1 - sum(W * O) / sum(W * E)`` with observed proportions ``O``, chance proportions
    ``E`` (product of the marginals) and disagreement weights ``W``: 1 off the diagonal
    (unweighted, equal to ``(p_o - p_e) / (1 - p_e)``), ``|i - j| / (c - 1)`` (linear) or its
    square (quadratic) for ordered ``categories``.

    Args:
        a: Ratings by method A ``[n]``; pairs where either rating is ``None`` or ``""`` are
            dropped.
        b: Ratings by method B ``[n]``.
        categories: Every possible rating, in order (order matters for weighted kappa).
        weights: ``None``, ``linear`` or ``quadratic``.

    Returns:
        Kappa in ``[-1, 1]``; NaN with no pairs or when chance agreement is certain (both
        methods always give the same single category).

    Raises:
        ValueError: Lengths differ, a rating is not in ``categories``, or unknown weights.
    """
    if len(a) != len(b):
        raise ValueError(f"ratings differ in length: {len(a)} and {len(b)}")
    index = {c: i for i, c in enumerate(categories)}
    pairs = [
        (x, y) for x, y in zip(a, b, strict=True) if x not in (None, "") and y not in (None, "")
    ]
    unknown = {v for pair in pairs for v in pair if v not in index}
    if unknown:
        raise ValueError(f"ratings {sorted(map(str, unknown))} are not in categories {categories}")
    counts = np.zeros((len(index), len(index)))
    for x, y in pairs:
        counts[index[x], index[y]] += 1.0
    return kappa_from_counts(counts, weights)
