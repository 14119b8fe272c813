"""T2* on a predicted versus the reference mask: the agreement table and its summary.

For each slice, T2* of the global myocardium and of its six sectors (contract section 2) is
fitted with :func:`~cmrseg.t2star.quantify_slice` on the predicted and on the reference mask;
where the data has the true map ``t2star_ms`` (synthetic data), the mean true T2* of each
reference region is added. One row per slice and region (:data:`AGREEMENT_COLUMNS`);
:func:`agreement_summary` turns the rows into the scalars of :data:`SUMMARY_KEYS`.

Everything that does not depend on the prediction (the reference fit, the true T2*, the noise
SD) is computed once per slice by :func:`reference_slice`; :class:`MaskAgreement` keeps it, so
that a training run that compares new predictions every few epochs fits only the predicted
masks again, and of those (``median_pixel``) only the pixels no earlier mask of the slice had
(:class:`~cmrseg.t2star.quantify.PixelFits`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from cmrseg.core.geometry import estimate_rv_insertion, sector_map
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.t2star.agreement import bland_altman, cohen_kappa, icc
from cmrseg.t2star.config import T2StarConfig
from cmrseg.t2star.grading import GRADE_LOWER_BOUNDS_MS, grade_t2star
from cmrseg.t2star.quantify import (
    REGIONS,
    PixelFits,
    RegionResult,
    SliceNoise,
    quantify_slice,
    slice_noise,
)
from cmrseg.t2star.status import Status
from cmrseg.t2star.table import qc_columns

if TYPE_CHECKING:
    from cmrseg.data.echo_stack import EchoStackInfo

__all__ = [
    "AGREEMENT_COLUMNS",
    "SUMMARY_KEYS",
    "MaskAgreement",
    "ReferenceSlice",
    "SliceSource",
    "agreement_rows",
    "agreement_summary",
    "merge_rows",
    "reference_point",
    "reference_slice",
    "true_region_means",
]

#: Columns of the agreement table, one row per slice and region.
AGREEMENT_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "slice_index",
    "slice_location",
    "region",
    "t2star_pred_ms",
    "t2star_ref_ms",
    "t2star_true_ms",
    "grade_pred",
    "grade_ref",
    "grade_true",
    "status_pred",
    "status_ref",
    "n_pixels_pred",
    "n_pixels_ref",
    "method_pred",
    "method_ref",
    "noise_sigma",
    "qc_pred",
    "qc_reasons_pred",
    "qc_ref",
    "qc_reasons_ref",
)

#: Scalars of :func:`agreement_summary`. ``pred`` is T2* on the predicted mask, ``ref`` on the
#: reference mask, ``true`` the mean true T2*; unprefixed keys compare pred with ref on the
#: global rows (bias = mean of pred - ref), ``sectors_`` the same on the pooled sector rows,
#: ``true_`` pred with true on the global rows (NaN without a true map). ``_n`` counts the pairs
#: with both values. ICC is ICC(2,1) (two-way random effects, absolute agreement, single
#: measurement); kappa is Cohen's unweighted kappa of the grades.
SUMMARY_KEYS: tuple[str, ...] = (
    "t2star_n",
    "t2star_bias_ms",
    "t2star_loa_low_ms",
    "t2star_loa_high_ms",
    "t2star_icc",
    "t2star_kappa",
    "t2star_sectors_n",
    "t2star_sectors_bias_ms",
    "t2star_sectors_loa_low_ms",
    "t2star_sectors_loa_high_ms",
    "t2star_sectors_icc",
    "t2star_sectors_kappa",
    "t2star_true_n",
    "t2star_true_bias_ms",
    "t2star_true_loa_low_ms",
    "t2star_true_loa_high_ms",
    "t2star_true_icc",
    "t2star_pred_ok_fraction",
)

_GRADES = tuple(grade for grade, _ in reversed(GRADE_LOWER_BOUNDS_MS))


@dataclass(frozen=True)
class ReferenceSlice:
    """The part of one slice's agreement rows that does not depend on the prediction.

    Attributes:
        subject_id: Subject key.
        slice_index: 0-based slice in its file.
        slice_location: ``base``/``mid``/``apex``/``""``.
        te_ms: Echo times ``[E]`` in ms.
        rv_insertion: ``(row, col)`` of the anterior RV insertion point, or ``None``.
        phase_encoding_axis: 0, 1 or -1 (unknown).
        pixel_spacing_mm: ``[2]`` (row, column) spacing in mm.
        noise: The slice's noise model (:func:`~cmrseg.t2star.quantify.slice_noise`), used
            for both fits.
        reference: The seven region results on the reference mask (:data:`REGIONS` order).
        true_ms: Mean true T2* (ms) of the seven reference regions; NaN without a true map.
        pixel_fits: The slice's pixel fits (``median_pixel``), reused and extended by the fits
            of predicted masks.
    """

    subject_id: str
    slice_index: int
    slice_location: str
    te_ms: np.ndarray
    rv_insertion: np.ndarray | None
    phase_encoding_axis: int
    pixel_spacing_mm: np.ndarray
    noise: SliceNoise
    reference: tuple[RegionResult, ...]
    true_ms: tuple[float, ...]
    pixel_fits: PixelFits


def reference_point(
    labels: np.ndarray, rv_insertion: np.ndarray | None, config: T2StarConfig
) -> tuple[float, float] | None:
    """The sector anchor that :func:`~cmrseg.t2star.quantify_slice` uses for ``labels``.

    Args:
        labels: ``[H, W]`` contract labels.
        rv_insertion: ``(row, col)`` of the anterior RV insertion point; NaN or ``None`` when
            unknown (then ``config.region.rv_insertion_fallback`` decides).
        config: T2* settings.
    """
    if rv_insertion is not None and np.isfinite(rv_insertion).all():
        return float(rv_insertion[0]), float(rv_insertion[1])
    if config.region.rv_insertion_fallback == "none" or not (labels == MYOCARDIUM).any():
        return None
    return estimate_rv_insertion(labels, config.region.standard_rv_angle_deg)


def true_region_means(
    true_map_ms: np.ndarray, labels: np.ndarray, point: tuple[float, float] | None
) -> list[float]:
    """Mean true T2* (ms) over the myocardium of ``labels`` and each of its six sectors.

    Args:
        true_map_ms: True T2* ``[H, W]`` in ms (NaN outside tissue).
        labels: ``[H, W]`` contract labels.
        point: Sector anchor (:func:`reference_point`); ``None``: sectors are NaN.

    Returns:
        Seven values in :data:`REGIONS` order; NaN where a region has no finite value.
    """
    myo = labels == MYOCARDIUM

    def mean(mask: np.ndarray) -> float:
        values = true_map_ms[mask]
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else math.nan

    out = [mean(myo)]
    if point is None or not myo.any():
        return out + [math.nan] * (len(REGIONS) - 1)
    sectors = sector_map(labels, point)
    return out + [mean(sectors == k) for k in range(1, len(REGIONS))]


class SliceSource(Protocol):
    """Where :func:`reference_slice` reads a slice: an echo-stack file's info and slice reads.

    :class:`~cmrseg.data.echo_stack.EchoStackFile` is the implementation for files.
    """

    info: EchoStackInfo

    def read(self, name: str, index: int) -> np.ndarray:
        """Read slice ``index`` of dataset ``name`` (``images``, ``labels``, ``t2star_ms``)."""
        ...


def reference_slice(source: SliceSource, index: int, config: T2StarConfig) -> ReferenceSlice:
    """Fit the reference mask of one slice and average its true T2* map (if the file has one).

    Args:
        source: The echo stack; needs ``images`` and ``labels``.
        index: 0-based slice.
        config: T2* settings.
    """
    info = source.info
    images, labels = source.read("images", index), source.read("labels", index)
    rv_insertion = None if info.rv_insertion is None else info.rv_insertion[index]
    axis = -1 if info.phase_encoding_axis is None else int(info.phase_encoding_axis[index])
    noise = slice_noise(images, config, phase_encoding_axis=axis)
    pixel_fits = PixelFits(labels.shape)
    reference = quantify_slice(
        images,
        info.te_ms[index],
        labels,
        rv_insertion,
        config=config,
        phase_encoding_axis=axis,
        pixel_spacing_mm=info.pixel_spacing_mm[index],
        noise=noise,
        pixel_fits=pixel_fits,
    )
    true_ms = [math.nan] * len(REGIONS)
    if "t2star_ms" in info.datasets:
        anchor = reference_point(labels, rv_insertion, config)
        true_ms = true_region_means(source.read("t2star_ms", index), labels, anchor)
    return ReferenceSlice(
        subject_id=info.subject_id[index],
        slice_index=int(index),
        slice_location=info.slice_location[index],
        te_ms=np.asarray(info.te_ms[index], dtype=float),
        rv_insertion=rv_insertion,
        phase_encoding_axis=axis,
        pixel_spacing_mm=np.asarray(info.pixel_spacing_mm[index], dtype=float),
        noise=noise,
        reference=tuple(reference),
        true_ms=tuple(true_ms),
        pixel_fits=pixel_fits,
    )


def _value(result: RegionResult) -> float:
    return result.t2star_ms if result.status is Status.OK else math.nan


def _qc(suffix: str, result: RegionResult) -> dict[str, str]:
    qc, reasons = qc_columns(result.status, result.qc_reasons)
    return {f"qc_{suffix}": qc, f"qc_reasons_{suffix}": reasons}


def agreement_rows(
    reference: ReferenceSlice, images: np.ndarray, pred_labels: np.ndarray, config: T2StarConfig
) -> list[dict[str, Any]]:
    """Agreement rows of one slice: fit the predicted mask, pair it with the reference.

    Args:
        reference: The slice's :func:`reference_slice` (made with the same ``config``).
        images: Magnitude images ``[E, H, W]`` of the slice.
        pred_labels: Predicted labels ``[H, W]``.
        config: T2* settings.

    Returns:
        Seven rows (:data:`REGIONS` order) with the keys of :data:`AGREEMENT_COLUMNS`; T2*
        values are floats (NaN where missing), grades strings (``""`` where missing);
        ``method_*``, ``noise_sigma`` and ``qc_*`` as in ``t2star.csv`` (grading at 1.5 T here).
    """
    pred = quantify_slice(
        images,
        reference.te_ms,
        pred_labels,
        reference.rv_insertion,
        config=config,
        phase_encoding_axis=reference.phase_encoding_axis,
        pixel_spacing_mm=reference.pixel_spacing_mm,
        noise=reference.noise,
        pixel_fits=reference.pixel_fits,
    )
    return [
        {
            "subject_id": reference.subject_id,
            "slice_index": reference.slice_index,
            "slice_location": reference.slice_location,
            "region": p.region,
            "t2star_pred_ms": _value(p),
            "t2star_ref_ms": _value(r),
            "t2star_true_ms": t,
            "grade_pred": p.grade,
            "grade_ref": r.grade,
            "grade_true": grade_t2star(t),
            "status_pred": p.status.value,
            "status_ref": r.status.value,
            "n_pixels_pred": p.n_pixels,
            "n_pixels_ref": r.n_pixels,
            "method_pred": p.method,
            "method_ref": r.method,
            "noise_sigma": p.noise_sigma,
            **_qc("pred", p),
            **_qc("ref", r),
        }
        for p, r, t in zip(pred, reference.reference, reference.true_ms, strict=True)
    ]


class MaskAgreement:
    """Agreement rows of predicted masks, with each slice's reference part computed once.

    Args:
        config: T2* settings of both fits.
    """

    def __init__(self, config: T2StarConfig) -> None:
        self.config = config
        self._references: dict[tuple[str, int], ReferenceSlice] = {}

    def rows(
        self, source: SliceSource, pred_labels: Mapping[int, np.ndarray], *, progress: bool
    ) -> list[dict[str, Any]]:
        """Agreement rows of the given slices of ``source`` (:func:`agreement_rows`).

        Args:
            source: The echo stack the slices come from (with ``labels``).
            pred_labels: Predicted labels ``[H, W]`` by 0-based slice index.
            progress: Show a progress bar over slices.

        Returns:
            Seven rows per slice, in slice order.
        """
        rows: list[dict[str, Any]] = []
        for i in tqdm(sorted(pred_labels), "T2* agreement", unit="slice", disable=not progress):
            key = (str(source.info.path), i)
            if key not in self._references:
                self._references[key] = reference_slice(source, i, self.config)
            images = source.read("images", i)
            rows += agreement_rows(self._references[key], images, pred_labels[i], self.config)
        return rows


def merge_rows(parts: Iterable[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of several workers (e.g. DDP ranks), once per slice and region, in slice order.

    A slice that appears in several parts (DDP pads its last batches with repeats) keeps the
    rows of the first part that has it.
    """
    unique: dict[tuple[int, str], dict[str, Any]] = {}
    for part in parts:
        for row in part:
            unique.setdefault((row["slice_index"], row["region"]), dict(row))
    return sorted(unique.values(), key=lambda row: row["slice_index"])


def _pair_stats(
    prefix: str, a: np.ndarray, b: np.ndarray, grades: tuple[list[str], list[str]] | None
) -> dict[str, float]:
    """Bias, limits of agreement, ICC(2,1) and (given grades) kappa of pairs ``a`` vs ``b``."""
    ba = bland_altman(a, b)
    out = {
        f"{prefix}n": float(ba.n),
        f"{prefix}bias_ms": ba.bias,
        f"{prefix}loa_low_ms": ba.loa_low,
        f"{prefix}loa_high_ms": ba.loa_high,
        f"{prefix}icc": icc(np.stack([a, b], axis=1), "2,1"),
    }
    if grades is not None:
        out[f"{prefix}kappa"] = cohen_kappa(*grades, categories=_GRADES)
    return out


def agreement_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Agreement scalars of an agreement table (keys :data:`SUMMARY_KEYS`).

    Args:
        rows: Rows of :func:`agreement_rows`.

    Returns:
        Scalars; NaN where undefined (e.g. no pair, or kappa with a single grade everywhere).
    """

    def column(subset: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
        return np.array([float(r[key]) for r in subset], dtype=float)

    glob = [r for r in rows if r["region"] == "global"]
    sectors = [r for r in rows if r["region"] != "global"]
    out: dict[str, float] = {}
    for prefix, subset in (("t2star_", glob), ("t2star_sectors_", sectors)):
        grades = ([r["grade_pred"] for r in subset], [r["grade_ref"] for r in subset])
        out |= _pair_stats(
            prefix, column(subset, "t2star_pred_ms"), column(subset, "t2star_ref_ms"), grades
        )
    out |= _pair_stats(
        "t2star_true_", column(glob, "t2star_pred_ms"), column(glob, "t2star_true_ms"), None
    )
    ok = [r["status_pred"] == "ok" for r in rows]
    out["t2star_pred_ok_fraction"] = float(np.mean(ok)) if ok else math.nan
    return {key: out[key] for key in SUMMARY_KEYS}
