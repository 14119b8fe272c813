"""Agreement between two methods of measuring T2*: Bland-Altman, ICC and Cohen's kappa.

Plain numpy functions on paired measurements (e.g. T2* on the predicted versus the reference
mask). Pairs in which either value is missing (NaN, or an empty grade) are dropped first.

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

__all__ = ["BlandAltman", "bland_altman", "cohen_kappa", "icc"]

#: Standard-normal quantile of the 95% limits of agreement.
_Z_95 = 1.959963984540054


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
    """Stack two 1-D series into ``[n, 2]`` and drop rows with a non-finite value."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"expected two 1-D series of equal length, got {a.shape} and {b.shape}")
    pairs = np.stack([a, b], axis=1)
    return pairs[np.isfinite(pairs).all(axis=1)]


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
    diff = pairs[:, 0] - pairs[:, 1]
    n = int(diff.size)
    bias = float(diff.mean()) if n else np.nan
    sd = float(diff.std(ddof=1)) if n >= 2 else np.nan
    return BlandAltman(bias, sd, bias - _Z_95 * sd, bias + _Z_95 * sd, n)


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
    if kind not in ("2,1", "3,1"):
        raise ValueError(f"kind must be '2,1' or '3,1', got {kind!r}")
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"ratings must be [n, k] with k >= 2, got shape {x.shape}")
    x = x[np.isfinite(x).all(axis=1)]
    n, k = x.shape
    if n < 2:
        return np.nan
    grand = x.mean()
    ss_rows = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((x.mean(axis=0) - grand) ** 2)
    ss_error = np.sum((x - grand) ** 2) - ss_rows - ss_cols
    ms_rows = ss_rows / (n - 1)
    ms_cols = ss_cols / (k - 1)
    ms_error = max(ss_error, 0.0) / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_error
    if kind == "2,1":
        denominator += k * (ms_cols - ms_error) / n
    if denominator <= 0:
        return np.nan
    return float((ms_rows - ms_error) / denominator)


def cohen_kappa(
    a: Sequence[Hashable],
    b: Sequence[Hashable],
    *,
    categories: Sequence[Hashable],
    weights: Literal["linear", "quadratic"] | None = None,
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
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    index = {c: i for i, c in enumerate(categories)}
    c = len(index)
    pairs = [
        (x, y) for x, y in zip(a, b, strict=True) if x not in (None, "") and y not in (None, "")
    ]
    unknown = {v for pair in pairs for v in pair if v not in index}
    if unknown:
        raise ValueError(f"ratings {sorted(map(str, unknown))} are not in categories {categories}")
    if not pairs:
        return np.nan
    observed = np.zeros((c, c))
    for x, y in pairs:
        observed[index[x], index[y]] += 1.0
    observed /= len(pairs)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    distance = np.abs(np.subtract.outer(np.arange(c), np.arange(c))).astype(float)
    if weights is None:
        w = (distance > 0).astype(float)
    else:
        w = distance / max(c - 1, 1)
        if weights == "quadratic":
            w = w**2
    chance = float(np.sum(w * expected))
    if chance <= 0:
        return np.nan
    return float(1.0 - np.sum(w * observed) / chance)
