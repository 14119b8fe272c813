"""Result tables: Table 1 (overlap metrics, mean (SD) over slices) as text, CSV and JSON.

``cmrseg-eval`` prints Table 1 and writes ``metrics.csv`` and ``metrics.json`` (atomically);
:func:`json_number` and :func:`csv_text` format values for any JSON or CSV result file.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.core.atomic import atomic_path

__all__ = [
    "TABLE1_METRICS",
    "csv_text",
    "format_table1",
    "json_number",
    "table1_rows",
    "write_table1",
]

# (metric key, row label, scale): overlap scores in percent as in the paper, HD95 in mm.
TABLE1_METRICS: tuple[tuple[str, str, float], ...] = (
    ("jaccard", "Jaccard (%)", 100.0),
    ("dice", "Dice (%)", 100.0),
    ("sensitivity", "Sensitivity (%)", 100.0),
    ("specificity", "Specificity (%)", 100.0),
    ("ppv", "PPV (%)", 100.0),
    ("npv", "NPV (%)", 100.0),
    ("hd95", "HD95 (mm)", 1.0),
)


def table1_rows(metrics: Mapping[str, float], prefix: str) -> list[dict[str, object]]:
    """Pick the Table-1 metrics out of a logged metric dict.

    Args:
        metrics: Logged values, e.g. ``{"test/jaccard": 0.87, "test/jaccard_sd": 0.04, ...}``.
        prefix: Key prefix, e.g. ``"test/"``.

    Returns:
        One row per metric present: ``metric``, ``label``, ``mean``, ``sd`` (scaled), ``key``.
    """
    rows: list[dict[str, object]] = []
    for key, label, scale in TABLE1_METRICS:
        if f"{prefix}{key}" not in metrics:
            continue
        mean = float(metrics[f"{prefix}{key}"]) * scale
        sd = float(metrics.get(f"{prefix}{key}_sd", math.nan)) * scale
        rows.append({"metric": key, "label": label, "mean": mean, "sd": sd})
    return rows


def format_table1(rows: list[dict[str, object]], title: str) -> str:
    """Plain-text table ``label  mean (SD)`` with two decimals."""
    width = max([len(str(r["label"])) for r in rows] + [len("metric")])
    lines = [title, f"{'metric':<{width}}  mean (SD)", "-" * (width + 20)]
    lines += [f"{r['label']:<{width}}  {r['mean']:.2f} ({r['sd']:.2f})" for r in rows]
    return "\n".join(lines)


def write_table1(
    rows: list[dict[str, object]], folder: str | os.PathLike[str], extra: Mapping[str, object]
) -> tuple[Path, Path]:
    """Write ``metrics.csv`` and ``metrics.json`` atomically into ``folder``.

    Args:
        rows: From :func:`table1_rows`.
        folder: The run folder.
        extra: Context stored in the JSON (checkpoint, data file, slice count...).

    Returns:
        The CSV and JSON paths.
    """
    folder = Path(folder)
    csv_path, json_path = folder / "metrics.csv", folder / "metrics.json"
    with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["metric", "label", "mean", "sd"])
        writer.writeheader()
        writer.writerows(rows)
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps({**extra, "table1": rows}, indent=2, allow_nan=True) + "\n")
    return csv_path, json_path


def json_number(value: Any) -> Any:
    """NaN becomes ``None``; numpy scalars become Python numbers; other values pass."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def csv_text(value: Any) -> str:
    """CSV text of a table value: floats with 6 significant digits, NaN empty."""
    if isinstance(value, (float, np.floating)):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return str(value)
