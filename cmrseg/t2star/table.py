"""The ``t2star.csv`` table of the echo-stack contract (section 2): rows and atomic writing."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from cmrseg.core.atomic import atomic_path
from cmrseg.t2star.config import T2StarConfig
from cmrseg.t2star.quantify import RegionResult, quantify_slice
from cmrseg.t2star.status import Status

__all__ = ["CSV_COLUMNS", "quantify_stack", "slice_rows", "write_t2star_csv"]

log = logging.getLogger(__name__)

CSV_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "slice_index",
    "slice_location",
    "region",
    "t2star_ms",
    "t2star_ci_low_ms",
    "t2star_ci_high_ms",
    "s0",
    "r2",
    "n_pixels",
    "grade",
    "status",
)


def _number(value: float, ok: bool) -> str:
    return f"{value:.6g}" if ok and np.isfinite(value) else ""


def slice_rows(
    subject_id: str, slice_index: int, slice_location: str, results: Iterable[RegionResult]
) -> list[dict[str, str]]:
    """CSV rows (column name -> text) of one slice's region results.

    Numbers are empty unless the status is ``ok``; the grade is empty then too.
    """
    rows = []
    for result in results:
        ok = result.status is Status.OK
        rows.append(
            {
                "subject_id": subject_id,
                "slice_index": str(slice_index),
                "slice_location": slice_location,
                "region": result.region,
                "t2star_ms": _number(result.t2star_ms, ok),
                "t2star_ci_low_ms": _number(result.ci_low_ms, ok),
                "t2star_ci_high_ms": _number(result.ci_high_ms, ok),
                "s0": _number(result.s0, ok),
                "r2": _number(result.r2, ok),
                "n_pixels": str(result.n_pixels),
                "grade": result.grade,
                "status": result.status.value,
            }
        )
    return rows


def quantify_stack(
    images: Sequence[np.ndarray],
    te_ms: np.ndarray,
    labels: Sequence[np.ndarray],
    subject_id: Sequence[str],
    slice_location: Sequence[str],
    *,
    config: T2StarConfig,
    rv_insertion: np.ndarray | None = None,
    phase_encoding_axis: np.ndarray | None = None,
    pixel_spacing_mm: np.ndarray | None = None,
    progress: bool = True,
) -> list[dict[str, str]]:
    """Quantify every slice of an echo stack into CSV rows (global + 6 sectors per slice).

    Args:
        images: ``[N, E, H, W]`` array, or any sequence of ``[E, H, W]`` slices (read lazily).
        te_ms: Echo times ``[N, E]`` in ms.
        labels: ``[N, H, W]`` masks (``labels`` or ``labels_pred``), or a sequence of them.
        subject_id: ``[N]`` subject keys.
        slice_location: ``[N]`` ``base``/``mid``/``apex``/``""``.
        config: T2* settings.
        rv_insertion: ``[N, 2]`` (row, col), NaN where unknown; ``None`` when absent.
        phase_encoding_axis: ``[N]`` 0, 1 or -1; ``None`` when absent.
        pixel_spacing_mm: ``[N, 2]`` (row, column) spacing in mm; sizes the wall core (needed
            when ``region.wall`` is ``core``, see :func:`~cmrseg.t2star.quantify_slice`).
        progress: Show a progress bar over slices.

    Returns:
        Rows for :func:`write_t2star_csv`, 7 per slice.
    """
    rows: list[dict[str, str]] = []
    for i in tqdm(range(len(images)), desc="T2* fit", unit="slice", disable=not progress):
        point = None if rv_insertion is None else rv_insertion[i]
        axis = -1 if phase_encoding_axis is None else int(phase_encoding_axis[i])
        results = quantify_slice(
            images[i],
            te_ms[i],
            labels[i],
            point,
            config=config,
            phase_encoding_axis=axis,
            pixel_spacing_mm=None if pixel_spacing_mm is None else pixel_spacing_mm[i],
        )
        rows += slice_rows(subject_id[i], i, slice_location[i], results)
    return rows


def write_t2star_csv(path: str | os.PathLike[str], rows: Iterable[dict[str, str]]) -> None:
    """Write the contract's T2* CSV atomically (complete or not at all)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    log.info("wrote %s", path)
