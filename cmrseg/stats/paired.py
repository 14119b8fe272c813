"""Paired comparison of methods over subjects: Wilcoxon signed-rank and Holm's correction.

References:
    Wilcoxon F. Individual comparisons by ranking methods. Biometrics Bulletin 1945.
    Holm S. A simple sequentially rejective multiple test procedure. Scand J Stat 1979.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["holm", "wilcoxon_signed_rank"]


def wilcoxon_signed_rank(
    a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]
) -> tuple[float, int]:
    """Two-sided Wilcoxon signed-rank test of paired values ``a`` and ``b`` (one pair a subject).

    ``scipy.stats.wilcoxon`` on the differences ``a - b``: pairs with a non-finite value are
    dropped, zero differences are dropped (Wilcoxon's own treatment), and the p-value is exact
    for up to 50 pairs without ties (the normal approximation otherwise, as scipy decides).

    Args:
        a: Per-subject values of one method ``[n]``.
        b: Per-subject values of the other method, same subjects in the same order ``[n]``.

    Returns:
        The p-value (NaN when no non-zero difference is left) and the pairs used.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two 1-D series of equal length, got {a.shape} and {b.shape}")
    diff = (a - b)[np.isfinite(a) & np.isfinite(b)]
    if not np.any(diff != 0):
        return np.nan, int(diff.size)
    result = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
    return float(result.pvalue), int(diff.size)


def holm(pvalues: np.ndarray | Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values of a family of tests (NaN entries stay NaN and do not count).

    With the ``m`` finite p-values sorted ascending, ``p_(i)`` becomes
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; rejecting where the adjusted value is below
    ``alpha`` controls the family-wise error rate at ``alpha``.

    Args:
        pvalues: Unadjusted p-values ``[k]``.

    Returns:
        Adjusted p-values ``[k]`` in the input order.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
