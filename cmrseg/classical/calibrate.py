"""Calibration of a classical segmenter: a small grid search scored by myocardial Jaccard.

The candidates are the method's given parameters and the grid of the search space (every
combination, or ``max_trials`` of them drawn with ``seed``). Each candidate segments every
given (training) slice and is scored by the mean myocardial Jaccard index over them; the best
wins, ties going to the earlier candidate (the given parameters come first). Slices are
processed in parallel by a process pool; the result depends only on the inputs and ``seed``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from typing import Any

import numpy as np
from tqdm import tqdm

from cmrseg.classical.methods import METHODS, make_params
from cmrseg.core.labels import MYOCARDIUM

__all__ = ["CalibrationResult", "calibrate", "myocardium_jaccard"]

#: Slices per task sent to a worker: few enough tasks to keep the pool busy, each worth sending.
_CHUNK = 8


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of :func:`calibrate`.

    Attributes:
        params: The best candidate's parameters.
        jaccard: Its mean myocardial Jaccard over the slices.
        table: One row per candidate, in trial order: the searched parameters' values,
            ``jaccard_mean``, ``jaccard_sd`` and ``n_empty`` (slices with no prediction).
        seconds_per_slice: Mean time of one ``segment`` call over the whole search.
    """

    params: Any
    jaccard: float
    table: list[dict[str, Any]]
    seconds_per_slice: float


def myocardium_jaccard(pred: np.ndarray, ref: np.ndarray) -> float:
    """Jaccard index of the myocardium of two ``[H, W]`` label images (1.0 when both lack one)."""
    p, r = pred == MYOCARDIUM, ref == MYOCARDIUM
    union = np.count_nonzero(p | r)
    return float(np.count_nonzero(p & r) / union) if union else 1.0


def _candidates(
    base: Any, search_space: Mapping[str, Sequence[Any]], max_trials: int | None, seed: int
) -> list[Any]:
    """The given parameters, then the grid (or ``max_trials`` of it drawn with ``seed``)."""
    names = sorted(search_space)
    for name in names:
        if name not in asdict(base):
            raise ValueError(f"search_space: {name} is not a parameter of {type(base).__name__}")
        if len(search_space[name]) == 0:
            raise ValueError(f"search_space: {name} has no values")
    grid = list(itertools.product(*(list(search_space[n]) for n in names)))
    if max_trials is not None:
        if max_trials < 1:
            raise ValueError(f"max_trials must be >= 1, got {max_trials}")
        if max_trials < len(grid):
            chosen = np.random.default_rng(seed).choice(len(grid), max_trials, replace=False)
            grid = [grid[i] for i in sorted(chosen)]
    candidates = [base]
    for values in grid:
        params = replace(base, **dict(zip(names, values, strict=True)))
        if params not in candidates:
            candidates.append(params)
    return candidates


# Per-worker copy of the slices, set once by the pool initializer instead of sent per task.
_SLICES: dict[str, np.ndarray] = {}


def _set_slices(
    images: np.ndarray, te_ms: np.ndarray, spacing: np.ndarray, labels: np.ndarray
) -> None:
    _SLICES.update(images=images, te_ms=te_ms, spacing=spacing, labels=labels)


def _score(method: str, params: Any, indices: list[int]) -> tuple[list[float], list[bool], float]:
    """Jaccard and emptiness of ``params`` on the slices ``indices``, and the time it took."""
    segment = METHODS[method].segment
    jaccards, empty = [], []
    start = time.perf_counter()
    for i in indices:
        result = segment(_SLICES["images"][i], _SLICES["te_ms"][i], _SLICES["spacing"][i], params)
        jaccards.append(myocardium_jaccard(result.labels, _SLICES["labels"][i]))
        empty.append(not result.found)
    return jaccards, empty, time.perf_counter() - start


def calibrate(
    method: str,
    images: np.ndarray,
    te_ms: np.ndarray,
    pixel_spacing_mm: np.ndarray,
    labels: np.ndarray,
    params: Any,
    search_space: Mapping[str, Sequence[Any]],
    *,
    max_trials: int | None = None,
    seed: int = 0,
    n_workers: int = 1,
    progress: bool = True,
) -> CalibrationResult:
    """Choose a method's parameters by mean myocardial Jaccard on labelled slices.

    Args:
        method: ``gac`` or ``region_growing``.
        images: ``[N, E, H, W]`` magnitude of the (training) slices.
        te_ms: ``[N, E]`` echo times in ms.
        pixel_spacing_mm: ``[N, 2]`` (row, column) spacing in mm.
        labels: ``[N, H, W]`` reference labels (echo-stack coding).
        params: The method's parameters (a mapping or its dataclass): the first candidate and
            the values of every parameter not searched.
        search_space: Parameter name -> values to try.
        max_trials: At most this many grid points, drawn with ``seed`` (``None``: the whole
            grid).
        seed: Random seed of the drawing.
        n_workers: Worker processes (1: in this process).
        progress: Show a progress bar.

    Returns:
        The best parameters, their score, the score table and the time per slice.

    Raises:
        ValueError: Unknown method or parameter, empty search values, or arrays that do not fit.
    """
    if isinstance(params, Mapping):
        params = make_params(method, params)
    elif method not in METHODS or not isinstance(params, METHODS[method].params_type):
        raise ValueError(f"params must be the parameters of method {method!r}")
    images, te_ms = np.asarray(images), np.asarray(te_ms)
    spacing, labels = np.asarray(pixel_spacing_mm), np.asarray(labels)
    n = images.shape[0]
    if images.ndim != 4 or n == 0:
        raise ValueError(f"images must be [N, E, H, W] with N >= 1, got shape {images.shape}")
    if te_ms.shape != images.shape[:2] or spacing.shape != (n, 2):
        raise ValueError("te_ms must be [N, E] and pixel_spacing_mm [N, 2] like images")
    if labels.shape != (n, *images.shape[2:]):
        raise ValueError(f"labels must be [N, H, W] = {(n, *images.shape[2:])}, got {labels.shape}")
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")

    candidates = _candidates(params, search_space, max_trials, seed)
    chunks = [list(range(i, min(i + _CHUNK, n))) for i in range(0, n, _CHUNK)]
    jaccard = np.zeros((len(candidates), n))
    empty = np.zeros((len(candidates), n), bool)
    seconds = 0.0
    bar = tqdm(total=len(candidates) * n, desc=f"calibrate {method}", disable=not progress)
    if n_workers == 1:
        _set_slices(images, te_ms, spacing, labels)
        try:
            for k, candidate in enumerate(candidates):
                for chunk in chunks:
                    jaccard[k, chunk], empty[k, chunk], dt = _score(method, candidate, chunk)
                    seconds += dt
                    bar.update(len(chunk))
        finally:
            _SLICES.clear()
    else:
        # spawn: no fork of a parent that may hold threads (torch, a DataLoader)
        with ProcessPoolExecutor(
            n_workers,
            mp_context=get_context("spawn"),
            initializer=_set_slices,
            initargs=(images, te_ms, spacing, labels),
        ) as pool:
            futures = {
                pool.submit(_score, method, candidate, chunk): (k, chunk)
                for k, candidate in enumerate(candidates)
                for chunk in chunks
            }
            for future in as_completed(futures):
                k, chunk = futures[future]
                jaccard[k, chunk], empty[k, chunk], dt = future.result()
                seconds += dt
                bar.update(len(chunk))
    bar.close()

    searched = sorted(search_space)
    table = [
        {
            **{name: getattr(candidate, name) for name in searched},
            "jaccard_mean": float(jaccard[k].mean()),
            "jaccard_sd": float(jaccard[k].std()),
            "n_empty": int(empty[k].sum()),
        }
        for k, candidate in enumerate(candidates)
    ]
    best = int(np.argmax(jaccard.mean(axis=1)))
    return CalibrationResult(
        params=candidates[best],
        jaccard=float(jaccard[best].mean()),
        table=table,
        seconds_per_slice=seconds / jaccard.size,
    )
