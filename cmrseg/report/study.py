"""The study's tables from its runs: Table 1 (overlap) and Table 2 (T2*) analogs, with statistics.

Pooling (Table 1): each method's slices are first averaged over the method's runs that scored
them (its seeds: a slice is in the test fold of one fold per seed), then pooled over folds; the
mean (SD) is over these slices. The per-fold spread is the range of the fold means, the 95% CI
a bootstrap over subjects (whole subjects resampled, all their slices kept), and the paired
test compares per-subject means (the mean of a subject's pooled slices) of each method with
the proposed one on the subjects both scored (Wilcoxon signed-rank, Holm-corrected over the
methods of one metric).

Table 2: a subject's global T2* per method is the mean over its slices (and seeds) of the
method's ``t2star/test_table.csv``; the reference-mask and true T2* likewise; grades are the
median grade of those slices (:func:`cmrseg.t2star.mask_agreement.subject_rows`). Agreement per
method against the reference masks and against the truth is computed over subjects with
bootstrap intervals (:func:`cmrseg.stats.agreement_intervals`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from cmrseg.report.runs import Run
from cmrseg.stats import (
    AGREEMENT_STATISTICS,
    agreement_intervals,
    group_means,
    holm,
    mean_interval,
    wilcoxon_signed_rank,
)
from cmrseg.t2star.grading import GRADE_LOWER_BOUNDS_MS
from cmrseg.t2star.mask_agreement import subject_rows

__all__ = [
    "PAPER_NOTE",
    "PAPER_TABLE1",
    "STUDY_METRICS",
    "method_order",
    "pool_slices",
    "subject_t2star",
    "table1",
    "table2_agreement",
    "table2_subjects",
]

#: Table-1 metrics: (``slices.csv`` column, label, unit, scale of the reported value).
STUDY_METRICS: tuple[tuple[str, str, str, float], ...] = (
    ("jaccard", "Jaccard", "%", 100.0),
    ("sensitivity", "Sensitivity", "%", 100.0),
    ("specificity", "Specificity", "%", 100.0),
    ("ppv", "PPV", "%", 100.0),
    ("npv", "NPV", "%", 100.0),
    ("dice", "Dice", "%", 100.0),
    ("hd95_mm", "HD95", "mm", 1.0),
)

#: The paper's Table 1 (mean, SD) in the units of :data:`STUDY_METRICS`, by (method, metric).
PAPER_TABLE1: dict[tuple[str, str], tuple[float, float]] = {
    ("unet", "jaccard"): (95.0, 11.0),
    ("martini_unet", "jaccard"): (82.0, 9.0),
    ("gac", "jaccard"): (64.0, 27.0),
    ("region_growing", "jaccard"): (58.0, 23.0),
}
PAPER_NOTE = (
    "paper: Bakhshali et al., Iran J Med Phys 2025, Table 1, Jaccard mean (SD) on its patients "
    "(0.95 (0.11), 0.82 (0.09), 0.64 (0.27), 0.58 (0.23) for the proposed U-Net, Martini's "
    "U-Net, GAC and region growing, as quoted in this project's README); the paper's other "
    "Table-1 metrics were not found by this project and are left empty, not guessed"
)

_GRADES = tuple(grade for grade, _ in GRADE_LOWER_BOUNDS_MS)  # normal .. severe


def method_order(runs: Sequence[Run], proposed: str) -> list[str]:
    """Methods of ``runs``: the proposed one first, then in order of first appearance."""
    methods = list(dict.fromkeys(r.method for r in runs))
    return sorted(methods, key=lambda m: m != proposed)


def pool_slices(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per slice of the runs: each metric averaged over the runs that scored the slice.

    Args:
        runs: Runs of one method (its folds and seeds).

    Returns:
        Rows ``subject_id``, ``slice_index``, ``slice_location``, ``fold`` (of the first run
        that scored it; ``-1`` when it has none), ``n_runs`` and the metrics of
        :data:`STUDY_METRICS` (NaN where no run has a value), in order of first appearance.
    """
    keys: list[Hashable] = []
    values: list[list[float]] = []
    first: dict[Hashable, dict[str, Any]] = {}
    counts: dict[Hashable, int] = {}
    for run in runs:
        for row in run.slices:
            key = (row["subject_id"], row["slice_index"])
            keys.append(key)
            values.append([row[m] for m, *_ in STUDY_METRICS])
            counts[key] = counts.get(key, 0) + 1
            first.setdefault(
                key,
                {
                    "subject_id": row["subject_id"],
                    "slice_index": row["slice_index"],
                    "slice_location": row["slice_location"],
                    "fold": -1 if run.fold is None else run.fold,
                },
            )
    if not keys:
        return []
    groups, means = group_means(keys, np.array(values, dtype=float))
    return [
        {
            **first[key],
            "n_runs": counts[key],
            **dict(zip([m for m, *_ in STUDY_METRICS], mean, strict=True)),
        }
        for key, mean in zip(groups, means, strict=True)
    ]


def _sd(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.std(ddof=1)) if finite.size >= 2 else math.nan


def table1(
    runs: Sequence[Run], *, proposed: str, n_boot: int, seed: int, paper: bool = True
) -> list[dict[str, Any]]:
    """The Table-1 analog: one row per method and metric.

    Args:
        runs: The runs of one cohort (all methods, folds and seeds).
        proposed: The method the others are tested against (``unet``).
        n_boot: Bootstrap replicates of the CIs.
        seed: Seed of the bootstrap.
        paper: Put the paper's numbers beside (``False`` for runs on another cohort, which
            the paper's numbers do not describe).

    Returns:
        Rows with ``method``, ``metric``, ``label``, ``unit``, ``n_runs``, ``seeds``,
        ``folds``, ``n_subjects``, ``n_slices``, ``mean``, ``sd``, ``fold_min``,
        ``fold_max``, ``ci_low``, ``ci_high``, ``wilcoxon_n``, ``wilcoxon_p``,
        ``wilcoxon_p_holm`` (NaN for the proposed method or without it), ``paper_mean``,
        ``paper_sd`` (NaN where the paper's number is not known).
    """
    methods = method_order(runs, proposed)
    by_method = {m: [r for r in runs if r.method == m] for m in methods}
    pooled = {m: pool_slices(by_method[m]) for m in methods}
    out: list[dict[str, Any]] = []
    for metric, label, unit, scale in STUDY_METRICS:
        subject_means: dict[str, dict[Hashable, float]] = {}
        rows: list[dict[str, Any]] = []
        for method in methods:
            slices = pooled[method]
            values = np.array([s[metric] for s in slices], dtype=float) * scale
            subjects = [s["subject_id"] for s in slices]
            _, fold_means = group_means([s["fold"] for s in slices], values)
            fold_means = fold_means[np.isfinite(fold_means)]
            interval = mean_interval(values, subjects, n_boot=n_boot, seed=seed)
            keys, means = group_means(subjects, values)
            subject_means[method] = dict(zip(keys, means.tolist(), strict=True))
            known = PAPER_TABLE1.get((method, metric)) if paper else None
            paper_mean, paper_sd = known or (math.nan, math.nan)
            mine = by_method[method]
            # the models behind the runs: an external run scores its training run's model
            models = {r.trained_as if r.external else (r.seed, r.fold) for r in mine}
            rows.append(
                {
                    "method": method,
                    "metric": metric,
                    "label": label,
                    "unit": unit,
                    "n_runs": len(mine),
                    "seeds": len({seed for seed, _ in models}),
                    "folds": len({fold for _, fold in models}),
                    "n_subjects": len(keys),
                    "n_slices": int(np.isfinite(values).sum()),
                    "mean": interval.value,
                    "sd": _sd(values),
                    "fold_min": float(fold_means.min()) if fold_means.size else math.nan,
                    "fold_max": float(fold_means.max()) if fold_means.size else math.nan,
                    "ci_low": interval.low,
                    "ci_high": interval.high,
                    "wilcoxon_n": 0,
                    "wilcoxon_p": math.nan,
                    "paper_mean": paper_mean,
                    "paper_sd": paper_sd,
                }
            )
        if proposed in subject_means:
            reference = subject_means[proposed]
            for row in rows:
                if row["method"] == proposed:
                    continue
                common = [s for s in subject_means[row["method"]] if s in reference]
                row["wilcoxon_p"], row["wilcoxon_n"] = wilcoxon_signed_rank(
                    [subject_means[row["method"]][s] for s in common],
                    [reference[s] for s in common],
                )
        adjusted = holm([row["wilcoxon_p"] for row in rows])
        for row, p in zip(rows, adjusted, strict=True):
            row["wilcoxon_p_holm"] = float(p)
        out += rows
    return out


def _t2star_rows(run: Run) -> list[dict[str, Any]]:
    """The global rows of a run's T2* table."""
    return [row for row in run.t2star or [] if row["region"] == "global"]


def subject_t2star(
    runs: Sequence[Run], proposed: str
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    """Global T2* per subject: the reference and truth, and each method's.

    Args:
        runs: Runs of one cohort; those without a T2* table are left out.
        proposed: Listed first.

    Returns:
        ``{subject: {t2star_ref_ms, grade_ref, t2star_true_ms, grade_true}}`` (from every
        method's rows; the reference fit does not depend on the method) and
        ``{method: {subject: {t2star_pred_ms, grade_pred, n_slices}}}``.
    """
    pooled: list[dict[str, Any]] = []
    methods: dict[str, dict[str, dict[str, Any]]] = {}
    for method in method_order([r for r in runs if r.t2star is not None], proposed):
        rows = [row for r in runs if r.method == method for row in _t2star_rows(r)]
        pooled += rows
        methods[method] = {s["subject_id"]: s for s in subject_rows(rows)}
    reference = {
        s["subject_id"]: {
            k: s[k] for k in ("t2star_ref_ms", "grade_ref", "t2star_true_ms", "grade_true")
        }
        for s in subject_rows(pooled)
    }
    return reference, methods


def table2_subjects(
    reference: Mapping[str, Mapping[str, Any]],
    methods: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """The Table-2 analog: one row per subject, reference and true T2*, then each method's.

    Returns:
        Rows ``subject_id``, ``t2star_ref_ms``, ``grade_ref``, ``t2star_true_ms``,
        ``grade_true``, then ``t2star_<method>_ms`` and ``grade_<method>`` (NaN / ``""`` for
        a subject the method did not score), sorted by subject.
    """
    out = []
    for subject in sorted(reference):
        row: dict[str, Any] = {"subject_id": subject, **reference[subject]}
        for method, subjects in methods.items():
            mine = subjects.get(subject, {})
            row[f"t2star_{method}_ms"] = mine.get("t2star_pred_ms", math.nan)
            row[f"grade_{method}"] = mine.get("grade_pred", "")
        out.append(row)
    return out


def table2_agreement(
    subjects: Sequence[Mapping[str, Any]], methods: Sequence[str], *, n_boot: int, seed: int
) -> list[dict[str, Any]]:
    """Per method, agreement over subjects with the reference masks and with the truth.

    Args:
        subjects: Rows of :func:`table2_subjects`.
        methods: The methods to compare.
        n_boot: Bootstrap replicates.
        seed: Seed of the bootstrap.

    Returns:
        Rows ``method``, ``against`` (``reference`` or ``truth``), ``n`` (subjects with both
        values) and, for each name of :data:`cmrseg.stats.AGREEMENT_STATISTICS`, ``<name>``,
        ``<name>_ci_low``, ``<name>_ci_high``; no truth rows when no subject has a true T2*.
    """
    ids = [s["subject_id"] for s in subjects]
    out = []
    for method in methods:
        pred = np.array([s[f"t2star_{method}_ms"] for s in subjects], dtype=float)
        for against, key in (("reference", "ref"), ("truth", "true")):
            other = np.array([s[f"t2star_{key}_ms"] for s in subjects], dtype=float)
            if not np.isfinite(other).any():
                continue
            grades = (
                [s[f"grade_{method}"] for s in subjects],
                [s[f"grade_{key}"] for s in subjects],
            )
            n, intervals = agreement_intervals(
                pred, other, ids, grades=grades, categories=_GRADES, n_boot=n_boot, seed=seed
            )
            row: dict[str, Any] = {"method": method, "against": against, "n": n}
            for name in AGREEMENT_STATISTICS:
                interval = intervals[name]
                row |= {
                    name: interval.value,
                    f"{name}_ci_low": interval.low,
                    f"{name}_ci_high": interval.high,
                }
            out.append(row)
    return out
