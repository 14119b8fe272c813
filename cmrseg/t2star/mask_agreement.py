"""T2* on a predicted versus the reference mask: the agreement table and its summary.

For each slice, T2* of the global myocardium and of its six sectors (contract section 2) is
fitted with :func:`~cmrseg.t2star.quantify_slice` on the predicted and on the reference mask;
where the data has the true map ``t2star_ms`` (synthetic data), the mean true T2* of each
reference region is added. One row per slice and region (:data:`AGREEMENT_COLUMNS`);
:func:`agreement_summary` turns the rows into the scalars of :data:`SUMMARY_KEYS` (per slice
and per subject, :func:`subject_rows`) and their bootstrap intervals over subjects
(:data:`INTERVAL_KEYS`, :mod:`cmrseg.stats`).

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

from cmrseg.core.geometry import sector_map
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.stats import (
    DEFAULT_N_BOOT,
    agreement_intervals,
    bland_altman,
    cohen_kappa,
    group_means,
    icc,
    ordinal_median,
)
from cmrseg.t2star.config import T2StarConfig
from cmrseg.t2star.grading import GRADE_LOWER_BOUNDS_MS, grade_t2star
from cmrseg.t2star.quantify import (
    REGIONS,
    PixelFits,
    RegionResult,
    SliceNoise,
    quantify_slice,
    sector_anchor,
    slice_noise,
)
from cmrseg.t2star.status import Status
from cmrseg.t2star.table import qc_columns, with_seg_uncertainty

if TYPE_CHECKING:
    from cmrseg.data.echo_stack import EchoStackInfo

__all__ = [
    "AGREEMENT_COLUMNS",
    "INTERVAL_KEYS",
    "SUBJECT_COLUMNS",
    "SUMMARY_KEYS",
    "MaskAgreement",
    "ReferenceSlice",
    "SliceSource",
    "agreement_rows",
    "agreement_summary",
    "merge_rows",
    "reference_slice",
    "subject_rows",
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

#: Columns of :func:`subject_rows`: one row per subject and region.
SUBJECT_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "region",
    "n_slices",
    "t2star_pred_ms",
    "t2star_ref_ms",
    "t2star_true_ms",
    "grade_pred",
    "grade_ref",
    "grade_true",
)

# key suffix of each statistic of cmrseg.stats.agreement_intervals
_STATISTIC_KEYS = {
    "bias": "bias_ms",
    "loa_low": "loa_low_ms",
    "loa_high": "loa_high_ms",
    "bias_pct": "bias_pct",
    "loa_low_pct": "loa_low_pct",
    "loa_high_pct": "loa_high_pct",
    "icc": "icc",
    "kappa": "kappa",
    "kappa_linear": "kappa_linear",
}
# (key prefix, per subject, compared with): the global region, with bootstrap intervals
_COMPARISONS = (
    ("t2star_", False, "ref"),
    ("t2star_true_", False, "true"),
    ("t2star_subject_", True, "ref"),
    ("t2star_subject_true_", True, "true"),
)
_SECTOR_KEYS = ("n", "bias_ms", "loa_low_ms", "loa_high_ms", "icc", "kappa", "kappa_linear")

#: Scalars of :func:`agreement_summary` (logged by the T2* callback). ``pred`` is T2* on the
#: predicted mask, ``ref`` on the reference mask, ``true`` the mean true T2*. On the global
#: region: ``t2star_`` compares pred with ref per slice (bias = mean of pred - ref; ``_pct``:
#: Bland-Altman in percent of the pair's mean), ``t2star_true_`` pred with true per slice (NaN
#: without a true map), ``t2star_subject_`` and ``t2star_subject_true_`` the same with one
#: value per subject (:func:`subject_rows`); ``t2star_sectors_`` compares pred with ref on the
#: pooled sector rows per slice. ``_n`` counts the pairs with both values. ICC is ICC(2,1)
#: (two-way random effects, absolute agreement, single measurement); ``kappa`` is Cohen's
#: unweighted kappa of the grades, ``kappa_linear`` the linearly weighted one (grades ordered
#: normal, mild, moderate, severe).
SUMMARY_KEYS: tuple[str, ...] = (
    *(
        f"{prefix}{key}"
        for prefix, _, _ in _COMPARISONS
        for key in ("n", *_STATISTIC_KEYS.values())
    ),
    *(f"t2star_sectors_{key}" for key in _SECTOR_KEYS),
    "t2star_pred_ok_fraction",
)
#: 95% bootstrap intervals (whole subjects resampled, seeded) of the statistics of the
#: global comparisons in :data:`SUMMARY_KEYS`: ``<key>_ci_low`` and ``<key>_ci_high``.
INTERVAL_KEYS: tuple[str, ...] = tuple(
    f"{prefix}{key}_ci_{end}"
    for prefix, _, _ in _COMPARISONS
    for key in _STATISTIC_KEYS.values()
    for end in ("low", "high")
)

# normal, mild, moderate, severe: the order of the weighted kappa and of the median grade
_GRADES = tuple(grade for grade, _ in GRADE_LOWER_BOUNDS_MS)


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


def true_region_means(
    true_map_ms: np.ndarray, labels: np.ndarray, point: tuple[float, float] | None
) -> list[float]:
    """Mean true T2* (ms) over the myocardium of ``labels`` and each of its six sectors.

    Args:
        true_map_ms: True T2* ``[H, W]`` in ms (NaN outside tissue).
        labels: ``[H, W]`` contract labels.
        point: Sector anchor (:func:`~cmrseg.t2star.quantify.sector_anchor`); ``None``: sectors
            are NaN.

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
        anchor, _ = sector_anchor(images, labels, rv_insertion, config)
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
    reference: ReferenceSlice,
    images: np.ndarray,
    pred_labels: np.ndarray,
    config: T2StarConfig,
    seg_uncertainty: float = float("nan"),
) -> list[dict[str, Any]]:
    """Agreement rows of one slice: fit the predicted mask, pair it with the reference.

    Args:
        reference: The slice's :func:`reference_slice` (made with the same ``config``).
        images: Magnitude images ``[E, H, W]`` of the slice.
        pred_labels: Predicted labels ``[H, W]``.
        config: T2* settings.
        seg_uncertainty: The predicted mask's segmentation uncertainty (NaN: not measured);
            above ``qc.max_seg_uncertainty`` the ``pred`` rows say it in ``qc_reasons_pred``.

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
    pred = with_seg_uncertainty(pred, seg_uncertainty, config)
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
        self,
        source: SliceSource,
        pred_labels: Mapping[int, np.ndarray],
        *,
        progress: bool,
        seg_uncertainty: Mapping[int, float] | None = None,
    ) -> list[dict[str, Any]]:
        """Agreement rows of the given slices of ``source`` (:func:`agreement_rows`).

        Args:
            source: The echo stack the slices come from (with ``labels``).
            pred_labels: Predicted labels ``[H, W]`` by 0-based slice index.
            progress: Show a progress bar over slices.
            seg_uncertainty: Segmentation uncertainty of the predicted masks by slice index
                (slices missing: not measured).

        Returns:
            Seven rows per slice, in slice order.
        """
        rows: list[dict[str, Any]] = []
        for i in tqdm(sorted(pred_labels), "T2* agreement", unit="slice", disable=not progress):
            key = (str(source.info.path), i)
            if key not in self._references:
                self._references[key] = reference_slice(source, i, self.config)
            images = source.read("images", i)
            uncertainty = (seg_uncertainty or {}).get(i, float("nan"))
            rows += agreement_rows(
                self._references[key], images, pred_labels[i], self.config, uncertainty
            )
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


def subject_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per subject and region (:data:`SUBJECT_COLUMNS`) from agreement rows.

    T2* values are the means of the subject's slices that have a value (NaN when none has);
    grades are the median grade of its slices (:func:`~cmrseg.stats.ordinal_median`: with two
    middle grades the more severe), which needs no field strength to re-grade a mean.

    Args:
        rows: Rows of :func:`agreement_rows` (keys :data:`AGREEMENT_COLUMNS`).

    Returns:
        Rows in order of first appearance of (subject, region).
    """
    keys = [(str(r["subject_id"]), str(r["region"])) for r in rows]
    values = [[float(r[f"t2star_{m}_ms"]) for m in ("pred", "ref", "true")] for r in rows]
    groups, means = group_means(keys, np.array(values, dtype=float).reshape(len(rows), 3))
    members: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for key, row in zip(keys, rows, strict=True):
        members.setdefault(key, []).append(row)
    out = []
    for (subject, region), mean in zip(groups, means, strict=True):
        group = members[(subject, region)]
        out.append(
            {
                "subject_id": subject,
                "region": region,
                "n_slices": len(group),
                "t2star_pred_ms": float(mean[0]),
                "t2star_ref_ms": float(mean[1]),
                "t2star_true_ms": float(mean[2]),
                **{
                    f"grade_{m}": ordinal_median([r[f"grade_{m}"] for r in group], _GRADES)
                    for m in ("pred", "ref", "true")
                },
            }
        )
    return out


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows], dtype=float)


def agreement_summary(
    rows: Sequence[Mapping[str, Any]], *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> dict[str, float]:
    """Agreement scalars of an agreement table and their intervals.

    Args:
        rows: Rows of :func:`agreement_rows`.
        n_boot: Bootstrap replicates of the intervals.
        seed: Seed of the bootstrap (its own generator: no global random state is touched).

    Returns:
        The keys of :data:`SUMMARY_KEYS` and then :data:`INTERVAL_KEYS`; NaN where undefined
        (e.g. no pair, or kappa with a single grade everywhere).
    """
    glob = [r for r in rows if r["region"] == "global"]
    levels = {False: glob, True: subject_rows(glob)}
    out: dict[str, float] = {}
    for prefix, per_subject, other in _COMPARISONS:
        subset = levels[per_subject]
        n, intervals = agreement_intervals(
            _column(subset, "t2star_pred_ms"),
            _column(subset, f"t2star_{other}_ms"),
            [str(r["subject_id"]) for r in subset],
            grades=([r["grade_pred"] for r in subset], [r[f"grade_{other}"] for r in subset]),
            categories=_GRADES,
            n_boot=n_boot,
            seed=seed,
        )
        out[f"{prefix}n"] = float(n)
        for name, suffix in _STATISTIC_KEYS.items():
            interval = intervals[name]
            out[f"{prefix}{suffix}"] = interval.value
            out[f"{prefix}{suffix}_ci_low"] = interval.low
            out[f"{prefix}{suffix}_ci_high"] = interval.high
    sectors = [r for r in rows if r["region"] != "global"]
    pred, ref = _column(sectors, "t2star_pred_ms"), _column(sectors, "t2star_ref_ms")
    ba = bland_altman(pred, ref)
    grades = ([r["grade_pred"] for r in sectors], [r["grade_ref"] for r in sectors])
    out |= {
        "t2star_sectors_n": float(ba.n),
        "t2star_sectors_bias_ms": ba.bias,
        "t2star_sectors_loa_low_ms": ba.loa_low,
        "t2star_sectors_loa_high_ms": ba.loa_high,
        "t2star_sectors_icc": icc(np.stack([pred, ref], axis=1), "2,1"),
        "t2star_sectors_kappa": cohen_kappa(*grades, categories=_GRADES),
        "t2star_sectors_kappa_linear": cohen_kappa(*grades, categories=_GRADES, weights="linear"),
    }
    ok = [r["status_pred"] == "ok" for r in rows]
    out["t2star_pred_ok_fraction"] = float(np.mean(ok)) if ok else math.nan
    return {key: out[key] for key in (*SUMMARY_KEYS, *INTERVAL_KEYS)}
