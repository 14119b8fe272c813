"""``cmrseg-info IN.h5``: validate an echo-stack file and print what it holds."""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from cmrseg.cli._common import run_cli
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.data.echo_stack import EchoStackFile, inspect_echo_stack
from cmrseg.t2star.grading import grade_t2star

__all__ = ["main", "summarize"]


def summarize(path: str) -> str:
    """Validate ``path`` and return a human-readable summary of its contents.

    Args:
        path: An echo-stack HDF5 file.

    Returns:
        A multi-line text: sizes, subjects, echo times, spacing, label areas and, for
        synthetic data, the distribution of the true myocardial T2*.
    """
    info = inspect_echo_stack(path)
    te = info.te_ms.astype(float)
    spacing = np.unique(info.pixel_spacing_mm.astype(float), axis=0)
    lines = [
        f"file            {info.path}",
        f"slices          {info.n_slices} of {info.n_echoes} echoes x {info.height} x {info.width}",
        f"subjects        {len(info.subjects)}",
        f"slice location  {dict(Counter(info.slice_location))}",
        f"TE (ms)         {te.min(axis=0).round(2).tolist()}"
        + ("" if np.ptp(te, axis=0).max() == 0 else " (varies between slices)"),
        f"spacing (mm)    {spacing.round(3).tolist()}",
        f"datasets        {sorted(info.datasets)}",
    ]
    if info.field_strength_t is not None:
        fields = Counter(f"{t:g} T" if np.isfinite(t) else "unknown" for t in info.field_strength_t)
        lines.append(f"field strength  {dict(fields)}")
    stack = EchoStackFile(path, info)
    if "labels" in info.datasets:
        area = np.prod(info.pixel_spacing_mm, axis=1)
        myo = np.array([(lab == MYOCARDIUM).sum() for lab in stack.iter_slices("labels")]) * area
        lines.append(
            f"myocardium      {myo.mean():.0f} mm^2 per slice "
            f"(min {myo.min():.0f}, max {myo.max():.0f})"
        )
    if "t2star_ms" in info.datasets and "labels" in info.datasets:
        truth = np.array(
            [
                np.nanmean(np.where(lab == MYOCARDIUM, t2, np.nan))
                if (lab == MYOCARDIUM).any()
                else np.nan
                for lab, t2 in zip(
                    stack.iter_slices("labels"), stack.iter_slices("t2star_ms"), strict=True
                )
            ]
        )
        grades = Counter(grade_t2star(t) for t in truth[np.isfinite(truth)])
        lines.append(
            f"true T2* (ms)   median {np.nanmedian(truth):.1f}, range {np.nanmin(truth):.1f}"
            f"..{np.nanmax(truth):.1f}; slices by grade {dict(grades)}"
        )
    stack.close()
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cmrseg-info``."""
    parser = argparse.ArgumentParser(prog="cmrseg-info", description=__doc__)
    parser.add_argument("input", help="echo-stack HDF5 file")
    args = parser.parse_args(argv)
    return run_cli("cmrseg-info", lambda: print(summarize(args.input)))
