"""The T2* agreement report of one evaluation: figures, files and W&B media (no torch).

Files: the rows of :func:`cmrseg.t2star.mask_agreement.agreement_rows` as ``<tag>_table.csv``,
one row per subject and region (:func:`~cmrseg.t2star.mask_agreement.subject_rows`) as
``<tag>_subjects.csv``, the figures as ``<tag>_bland_altman.png`` and ``<tag>_scatter.png``,
the summary as ``<tag>_summary.json``, each written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from cmrseg.core.atomic import atomic_path
from cmrseg.report.figures import agreement_pngs
from cmrseg.report.tables import csv_text, json_number
from cmrseg.t2star.mask_agreement import AGREEMENT_COLUMNS, SUBJECT_COLUMNS, subject_rows

__all__ = [
    "MetricsLogger",
    "format_agreement_summary",
    "log_agreement_media",
    "write_agreement_files",
    "write_agreement_report",
]

log = logging.getLogger(__name__)

_STATISTIC_KINDS = {
    "icc_kind": "ICC(2,1): two-way random effects, absolute agreement, single measurement",
    "kappa_kind": "Cohen's unweighted kappa of the grades",
    "kappa_linear_kind": "Cohen's linearly weighted kappa (normal, mild, moderate, severe)",
    "subject_kind": "t2star_subject_*: one value per subject, the mean over its slices",
    "interval_kind": "*_ci_low/_ci_high: 95% percentile bootstrap over subjects (seed 0)",
}


class MetricsLogger(Protocol):
    """A tracker that takes a dict of values at a step (e.g. Lightning's ``WandbLogger``)."""

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Log ``metrics`` at ``step``."""
        ...


def write_agreement_files(
    folder: str | os.PathLike[str],
    tag: str,
    rows: Sequence[Mapping[str, Any]],
    pngs: Mapping[str, bytes],
    summary: Mapping[str, Any],
) -> list[Path]:
    """Write the table, subject table, figures and summary of one report into ``folder``.

    Files: ``<tag>_table.csv``, ``<tag>_subjects.csv``, ``<tag>_<name>.png``,
    ``<tag>_summary.json``.

    Args:
        folder: Output folder (created if needed).
        tag: File name prefix, e.g. ``val_epoch0005`` or ``test``.
        rows: Agreement rows (keys :data:`~cmrseg.t2star.mask_agreement.AGREEMENT_COLUMNS`).
        pngs: PNG bytes by figure name.
        summary: The summary scalars and their context (stage, epoch...); NaN is written as
            ``null``. The kinds of ICC and kappa are added.

    Returns:
        The paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / f"{tag}_table.csv"
    with atomic_path(table) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=AGREEMENT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: csv_text(row[k]) for k in AGREEMENT_COLUMNS} for row in rows)
    subjects = folder / f"{tag}_subjects.csv"
    with atomic_path(subjects) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUBJECT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            {k: csv_text(row[k]) for k in SUBJECT_COLUMNS} for row in subject_rows(rows)
        )
    written = [table, subjects]
    for name, png in pngs.items():
        written.append(folder / f"{tag}_{name}.png")
        with atomic_path(written[-1]) as tmp:
            tmp.write_bytes(png)
    record = {**summary, **_STATISTIC_KINDS}
    text = json.dumps({k: json_number(v) for k, v in record.items()}, indent=2, allow_nan=False)
    written.append(folder / f"{tag}_summary.json")
    with atomic_path(written[-1]) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return written


def write_agreement_report(
    folder: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    summary: Mapping[str, float],
    *,
    stage: str,
    epoch: int,
    global_step: int,
    has_true: bool,
    figures: bool,
) -> tuple[str, dict[str, bytes]]:
    """Write the files of one stage's agreement, with its figures if asked.

    Args:
        folder: Output folder.
        rows: Agreement rows (:func:`~cmrseg.t2star.mask_agreement.agreement_rows`).
        summary: Their :func:`~cmrseg.t2star.mask_agreement.agreement_summary`.
        stage: ``val`` (files tagged ``val_epoch<epoch>``) or ``test`` (tagged ``test``).
        epoch: Training epoch (0-based).
        global_step: Optimizer steps so far.
        has_true: Whether the rows carry the true T2* (adds the panel against the truth).
        figures: Draw the Bland-Altman and scatter PNGs (about 0.2 s); ``False``: table and
            summary only.

    Returns:
        The figures' title and their PNG bytes by name (none without ``figures``).
    """
    n_slices = len({row["slice_index"] for row in rows})
    title = (
        f"{stage} epoch {epoch}: {n_slices} slices, bias {summary['t2star_bias_ms']:.2f} ms, "
        f"ICC(2,1) {summary['t2star_icc']:.3f}"
    )
    pngs = agreement_pngs(rows, has_true, title) if figures else {}
    tag = f"{stage}_epoch{epoch:04d}" if stage == "val" else stage
    context = {"stage": stage, "epoch": epoch, "global_step": global_step}
    write_agreement_files(folder, tag, rows, pngs, {**context, **summary})
    return title, pngs


def log_agreement_media(
    logger: MetricsLogger,
    stage: str,
    rows: Sequence[Mapping[str, Any]],
    pngs: Mapping[str, bytes],
    step: int,
) -> None:
    """Log the table and figures to W&B as ``<stage>/t2star_table``, ``<stage>/t2star_<name>``.

    Any failure (no ``wandb``, a broken run) is logged as a warning, never raised: W&B must
    never stop training.
    """
    try:
        import wandb
        from PIL import Image

        data = [[json_number(row[c]) for c in AGREEMENT_COLUMNS] for row in rows]
        payload: dict[str, Any] = {
            f"{stage}/t2star_table": wandb.Table(columns=list(AGREEMENT_COLUMNS), data=data)
        }
        for name, png in pngs.items():
            payload[f"{stage}/t2star_{name}"] = wandb.Image(Image.open(io.BytesIO(png)))
        logger.log_metrics(payload, step=step)
    except Exception as err:  # anything W&B raises is logged
        log.warning("T2* agreement not logged to W&B: %s: %s", type(err).__name__, err)


def _interval(summary: Mapping[str, float], key: str, fmt: str) -> str:
    """``value [low, high]`` of a summary key and its interval keys."""
    low, high = summary.get(f"{key}_ci_low", math.nan), summary.get(f"{key}_ci_high", math.nan)
    return f"{summary[key]:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def format_agreement_summary(summary: Mapping[str, float]) -> str:
    """Plain-text lines of the global T2* agreement, per slice and per subject, with 95% CIs.

    Args:
        summary: :func:`~cmrseg.t2star.mask_agreement.agreement_summary` of a report.
    """
    lines = ["T2* agreement, global region (value [95% bootstrap CI over subjects]):"]
    for label, other in (
        ("predicted vs reference masks", ""),
        ("predicted masks vs truth", "true_"),
    ):
        for level, prefix in (("per slice", "t2star_"), ("per subject", "t2star_subject_")):
            key = f"{prefix}{other}"
            if not summary.get(f"{key}n"):
                lines.append(f"  {label}, {level}: no pair with both values")
                continue
            lines.append(
                f"  {label}, {level} (n={int(summary[f'{key}n'])}): "
                f"bias {_interval(summary, f'{key}bias_ms', '+.2f')} ms, "
                f"95% LoA {_interval(summary, f'{key}loa_low_ms', '+.2f')} .. "
                f"{_interval(summary, f'{key}loa_high_ms', '+.2f')} ms, "
                f"bias {_interval(summary, f'{key}bias_pct', '+.1f')}%, "
                f"ICC(2,1) {_interval(summary, f'{key}icc', '.3f')}, "
                f"kappa {_interval(summary, f'{key}kappa', '.2f')}, "
                f"linearly weighted {_interval(summary, f'{key}kappa_linear', '.2f')}"
            )
    return "\n".join(lines)
