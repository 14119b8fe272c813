"""The ``t2star.csv`` table of the echo-stack contract (section 2): rows and atomic writing."""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from cmrseg.core.atomic import atomic_path
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.t2star.config import T2StarConfig
from cmrseg.t2star.grading import grading_field_t
from cmrseg.t2star.quantify import PixelFits, RegionResult, quantify_slice, slice_noise
from cmrseg.t2star.status import Status

__all__ = [
    "CSV_COLUMNS",
    "qc_columns",
    "quantify_stack",
    "slice_rows",
    "with_seg_uncertainty",
    "write_t2star_csv",
]

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
    "method",
    "noise_sigma",
    "qc",
    "qc_reasons",
    "n_coils",
)


def _number(value: float, ok: bool) -> str:
    return f"{value:.6g}" if ok and np.isfinite(value) else ""


def qc_columns(status: Status, reasons: Sequence[str]) -> tuple[str, str]:
    """``(qc, qc_reasons)`` of a row: ``pass`` for a value (or a bound) with no reason.

    A row without a value and without a reason gets its status as the reason.
    """
    has_value = status in (Status.OK, Status.BELOW_RANGE)
    if not has_value and not reasons:
        reasons = (status.value,)
    return ("pass" if has_value and not reasons else "review"), ";".join(reasons)


def _field_reasons(field_strength_t: float) -> tuple[str, ...]:
    if not np.isfinite(field_strength_t):
        return ("unknown_field",)
    if grading_field_t(field_strength_t) is None:
        return (f"no_cutoffs_at_{field_strength_t:g}T",)
    return ()


def slice_rows(
    subject_id: str,
    slice_index: int,
    slice_location: str,
    results: Iterable[RegionResult],
    field_strength_t: float = float("nan"),
) -> list[dict[str, str]]:
    """CSV rows (column name -> text) of one slice's region results.

    Numbers are empty unless the status is ``ok``; a ``below_range`` row carries its bound as
    ``t2star_ci_high_ms`` (the T2* lies below it) and grades as the bound does (``severe``).
    Grades use the cut-offs of ``field_strength_t`` (:func:`~cmrseg.t2star.grade_t2star`); an
    unknown field (NaN) grades at 1.5 T with ``unknown_field`` in ``qc_reasons``; a field without
    published cut-offs (e.g. 7 T) gives no value: status ``unsupported_field``. ``qc`` is
    ``pass`` for a row with a value (or a bound) and no reason, else ``review``.
    """
    field_reasons = _field_reasons(field_strength_t)
    supported = grading_field_t(field_strength_t) is not None
    rows = []
    for result in results:
        status = result.status
        if not supported and status in (Status.OK, Status.BELOW_RANGE):
            status = Status.UNSUPPORTED_FIELD
        ok = status is Status.OK
        below = status is Status.BELOW_RANGE
        ci_high = result.bound_ms if below else result.ci_high_ms
        qc, reasons = qc_columns(status, (*result.qc_reasons, *field_reasons))
        rows.append(
            {
                "subject_id": subject_id,
                "slice_index": str(slice_index),
                "slice_location": slice_location,
                "region": result.region,
                "t2star_ms": _number(result.t2star_ms, ok),
                "t2star_ci_low_ms": _number(result.ci_low_ms, ok),
                "t2star_ci_high_ms": _number(ci_high, ok or below),
                "s0": _number(result.s0, ok),
                "r2": _number(result.r2, ok),
                "n_pixels": str(result.n_pixels),
                "grade": result.grade_at(field_strength_t) if supported else "",
                "status": status.value,
                "method": result.method,
                "noise_sigma": _number(result.noise_sigma, True),
                "qc": qc,
                "qc_reasons": reasons,
                "n_coils": _number(result.n_coils, True),
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
    field_strength_t: np.ndarray | None = None,
    progress: bool = True,
    t2star_maps: np.ndarray | None = None,
    seg_uncertainty: np.ndarray | None = None,
) -> list[dict[str, str]]:
    """Quantify every slice of an echo stack into CSV rows (global + 6 sectors per slice).

    Each slice's pixels are fitted once: its regions and, with ``t2star_maps``, its pixel map
    share one :class:`~cmrseg.t2star.PixelFits` and one noise model.

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
        field_strength_t: ``[N]`` field in tesla, NaN where unknown; ``None`` when absent
            (every slice unknown: graded at 1.5 T, ``unknown_field``).
        progress: Show a progress bar over slices.
        t2star_maps: ``[N, H, W]`` float array to fill with the pixel-wise T2* (ms) inside the
            myocardium of ``labels`` (NaN elsewhere and where a pixel's fit is not ``ok``), as
            ``t2star_map_ms`` stores it; ``None``: no maps.
        seg_uncertainty: ``[N]`` segmentation uncertainty of each slice's mask (share of the
            myocardium on which rotated passes of the network disagree, NaN where unknown);
            every row of a slice above ``qc.max_seg_uncertainty`` says
            ``seg_uncertainty=<value>`` in ``qc_reasons``. ``None``: not measured.

    Returns:
        Rows for :func:`write_t2star_csv`, 7 per slice.
    """
    rows: list[dict[str, str]] = []
    for i in tqdm(range(len(images)), desc="T2* fit", unit="slice", disable=not progress):
        point = None if rv_insertion is None else rv_insertion[i]
        axis = -1 if phase_encoding_axis is None else int(phase_encoding_axis[i])
        slice_images, slice_labels = np.asarray(images[i]), np.asarray(labels[i])
        wall = slice_labels == MYOCARDIUM
        noise = slice_noise(slice_images, config, phase_encoding_axis=axis) if wall.any() else None
        pixel_fits = PixelFits(slice_labels.shape)
        results = quantify_slice(
            slice_images,
            te_ms[i],
            slice_labels,
            point,
            config=config,
            phase_encoding_axis=axis,
            pixel_spacing_mm=None if pixel_spacing_mm is None else pixel_spacing_mm[i],
            noise=noise,
            pixel_fits=pixel_fits,
        )
        if t2star_maps is not None:
            t2star_maps[i] = np.nan
            if noise is not None and noise.options is not None:
                fits = pixel_fits.fit(slice_images, te_ms[i], wall, noise.options, noise.sigma)
                t2star_maps[i][wall] = fits.t2star_ms
        if seg_uncertainty is not None:
            results = with_seg_uncertainty(results, float(seg_uncertainty[i]), config)
        field = np.nan if field_strength_t is None else float(field_strength_t[i])
        rows += slice_rows(subject_id[i], i, slice_location[i], results, field)
    return rows


def with_seg_uncertainty(
    results: list[RegionResult], uncertainty: float, config: T2StarConfig
) -> list[RegionResult]:
    """A slice's results with ``seg_uncertainty=<value>`` among their reasons when it is high.

    Args:
        results: The region results of one slice's mask.
        uncertainty: The mask's segmentation uncertainty (share of the myocardium on which
            rotated passes of the network disagree); NaN: not measured, nothing added.
        config: ``qc.max_seg_uncertainty`` is the threshold (above it: the reason).
    """
    if not uncertainty > config.qc.max_seg_uncertainty:  # NaN: not measured
        return results
    reason = f"seg_uncertainty={uncertainty:.3f}"
    return [dataclasses.replace(r, qc_reasons=(*r.qc_reasons, reason)) for r in results]


def write_t2star_csv(path: str | os.PathLike[str], rows: Iterable[dict[str, str]]) -> None:
    """Write the contract's T2* CSV atomically (complete or not at all)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    log.info("wrote %s", path)
