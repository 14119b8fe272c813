"""Figures of a study (matplotlib's Agg canvas, no pyplot): Bland-Altman, box plots, contours.

Drawn as :class:`matplotlib.figure.Figure` objects and rendered with
:func:`cmrseg.report.figures.figure_png`, as the other report figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from cmrseg.core.labels import MYOCARDIUM
from cmrseg.stats import bland_altman

__all__ = ["ContourPanel", "box_figure", "contour_figure", "subject_bland_altman_figure"]

_COLOURS = ("tab:red", "tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:cyan")


def subject_bland_altman_figure(
    pred_ms: np.ndarray,
    comparisons: Mapping[str, np.ndarray],
    title: str,
) -> Figure:
    """Bland-Altman panels of a method's per-subject T2* against references (one point a subject).

    Args:
        pred_ms: The method's T2* per subject ``[n]`` in ms (NaN where missing).
        comparisons: ``{name: values [n]}`` to compare with, e.g. reference masks and truth;
            one panel each.
        title: Figure title.
    """
    fig = Figure(figsize=(5.2 * max(len(comparisons), 1), 4.4), dpi=100)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.84, wspace=0.3)
    axes = fig.subplots(1, max(len(comparisons), 1), squeeze=False)[0]
    for ax, (name, other) in zip(axes, comparisons.items(), strict=False):
        pred, ref = np.asarray(pred_ms, dtype=float), np.asarray(other, dtype=float)
        both = np.isfinite(pred) & np.isfinite(ref)
        mean, diff = (pred + ref) / 2.0, pred - ref
        ax.scatter(mean[both], diff[both], s=24, color="tab:blue")
        stats = bland_altman(pred, ref)
        if stats.n:
            ax.axhline(stats.bias, color="k", lw=1.2, label=f"bias {stats.bias:+.2f} ms")
        if np.isfinite(stats.sd):
            for limit in (stats.loa_low, stats.loa_high):
                ax.axhline(limit, color="k", lw=1.0, ls="--")
            ax.plot([], [], "k--", label=f"95% LoA {stats.loa_low:+.2f}..{stats.loa_high:+.2f}")
        if not both.any():
            ax.text(0.5, 0.5, "no subject with both values", ha="center", transform=ax.transAxes)
        ax.axhline(0.0, color="0.7", lw=0.8, zorder=0)
        ax.set_xlabel(f"mean of method and {name} T2* (ms)")
        ax.set_ylabel(f"method - {name} T2* (ms)")
        ax.set_title(f"against {name} (n = {stats.n} subjects)", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    return fig


def box_figure(groups: Mapping[str, Sequence[float]], ylabel: str, title: str) -> Figure:
    """Box plots of values per group (e.g. per-slice Jaccard of each method and cohort).

    Args:
        groups: ``{label: values}``; NaN values are left out.
        ylabel: Axis label with unit.
        title: Figure title.
    """
    labels = list(groups)
    data = [np.asarray(groups[k], dtype=float) for k in labels]
    data = [v[np.isfinite(v)] for v in data]
    fig = Figure(figsize=(max(4.0, 1.3 * len(labels) + 1.5), 4.4), dpi=100)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.28, top=0.9)
    ax = fig.add_subplot()
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", color="0.9")
    return fig


@dataclass(frozen=True)
class ContourPanel:
    """One slice of the contour figure.

    Attributes:
        title: Row title (e.g. ``best: S0003 slice 7, Jaccard 97.1%``).
        image: Echo-1 magnitude ``[H, W]``.
        reference: Reference labels ``[H, W]``.
        masks: Predicted labels ``[H, W]`` by method; ``None`` where a method's masks are
            not available.
    """

    title: str
    image: np.ndarray
    reference: np.ndarray
    masks: Mapping[str, np.ndarray | None]


def _crop(reference: np.ndarray, margin: int = 24) -> tuple[slice, slice]:
    """Rows and columns around the reference myocardium (the whole image without one)."""
    rows, cols = np.nonzero(reference == MYOCARDIUM)
    if rows.size == 0:
        return slice(None), slice(None)
    h, w = reference.shape
    return (
        slice(max(rows.min() - margin, 0), min(rows.max() + margin + 1, h)),
        slice(max(cols.min() - margin, 0), min(cols.max() + margin + 1, w)),
    )


def contour_figure(panels: Sequence[ContourPanel], methods: Sequence[str]) -> Figure:
    """Each method's myocardium contours over echo 1, one row per slice (the paper's Figure 2).

    The first column shows the reference contour (green); each further column one method's
    contour (its colour) over the same crop, with the reference dashed.

    Args:
        panels: The slices, e.g. best, median and worst by the proposed method.
        methods: Column order.
    """
    n_cols = len(methods) + 1
    fig = Figure(figsize=(2.6 * n_cols, 2.7 * max(len(panels), 1)), dpi=100)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.92, wspace=0.05, hspace=0.25)
    axes = fig.subplots(max(len(panels), 1), n_cols, squeeze=False)
    for row, panel in zip(axes, panels, strict=False):
        crop = _crop(panel.reference)
        image, reference = panel.image[crop], panel.reference[crop] == MYOCARDIUM
        for col, ax in enumerate(row):
            ax.imshow(image, cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.contour(reference, levels=[0.5], colors="lime", linewidths=1.2)
                ax.set_title(f"reference\n{panel.title}", fontsize=7)
                continue
            method = methods[col - 1]
            mask = panel.masks.get(method)
            ax.contour(reference, levels=[0.5], colors="lime", linewidths=0.8, linestyles="--")
            if mask is None:
                ax.text(0.5, 0.5, "no masks", color="w", ha="center", transform=ax.transAxes)
            elif (mask[crop] == MYOCARDIUM).any():
                colour = _COLOURS[(col - 1) % len(_COLOURS)]
                ax.contour(mask[crop] == MYOCARDIUM, levels=[0.5], colors=colour, linewidths=1.2)
            ax.set_title(method, fontsize=8)
    fig.suptitle("Myocardium contours on echo 1 (reference dashed green)", fontsize=10)
    return fig
