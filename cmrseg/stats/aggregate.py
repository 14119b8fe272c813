"""One value per subject (and region): means over a subject's slices, median of ordered grades."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

__all__ = ["group_means", "ordinal_median"]


def group_means(
    keys: Sequence[Hashable], values: np.ndarray | Sequence[float]
) -> tuple[list[Hashable], np.ndarray]:
    """Mean of the finite values of each key (e.g. a subject's slices).

    Args:
        keys: Group key of every value ``[n]`` (e.g. subject id, or (subject, region)).
        values: ``[n]`` or ``[n, k]`` values; NaN values are left out of their group's mean.

    Returns:
        The keys in order of first appearance and their means ``[g]`` or ``[g, k]`` (NaN for
        a group without a finite value).
    """
    x = np.asarray(values, dtype=float)
    if len(keys) != x.shape[0]:
        raise ValueError(f"{len(keys)} keys for {x.shape[0]} values")
    index: dict[Hashable, int] = {}
    for key in keys:
        index.setdefault(key, len(index))
    rows = np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))
    flat = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
    finite = np.isfinite(flat)
    sums = np.zeros((len(index), flat.shape[1]))
    counts = np.zeros((len(index), flat.shape[1]))
    np.add.at(sums, rows, np.where(finite, flat, 0.0))
    np.add.at(counts, rows, finite)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return list(index), means.reshape((len(index), *x.shape[1:]))


def ordinal_median(grades: Sequence[str], categories: Sequence[str]) -> str:
    """Median of ordered grades (``categories`` from one end to the other, e.g. normal..severe).

    Empty grades are left out; with an even count the later of the two middle categories is
    taken (with normal..severe: the more severe, the cautious choice).

    Returns:
        The median grade, or ``""`` when no grade is given.
    """
    index = {c: i for i, c in enumerate(categories)}
    ranks = sorted(index[g] for g in grades if g not in (None, ""))
    if not ranks:
        return ""
    return categories[ranks[len(ranks) // 2]]
