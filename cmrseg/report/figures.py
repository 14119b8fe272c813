"""Figures of T2* agreement (Bland-Altman, scatter), drawn with matplotlib's Agg canvas.

Shared by the T2* callback and the reports.

The figures are built as :class:`matplotlib.figure.Figure` objects, never through ``pyplot``,
so no global figure state or GUI backend is touched (safe in training processes and threads).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cmrseg.stats.agreement import bland_altman

__all__ = ["agreement_pngs", "bland_altman_figure", "figure_png", "scatter_figure"]

# fixed margins instead of a layout engine, which draws every figure twice (half the cost)
_MARGINS = {"left": 0.13, "right": 0.97, "bottom": 0.11, "top": 0.9}
_GLOBAL_STYLE = {"marker": "o", "s": 28, "color": "tab:blue", "label": "global"}
_SECTOR_STYLE = {"marker": "x", "s": 16, "color": "tab:orange", "alpha": 0.6, "label": "sectors"}


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no pair with both values", ha="center", va="center", transform=ax.transAxes)


def bland_altman_figure(
    pred_ms: Sequence[float] | np.ndarray,
    ref_ms: Sequence[float] | np.ndarray,
    is_global: Sequence[bool] | np.ndarray,
    title: str,
) -> Figure:
    """Bland-Altman plot of T2* on predicted versus reference masks.

    Points are the mean of the two (x) against their difference ``pred - ref`` (y), global
    rows and sector rows marked apart; the lines are the bias and 95% limits of agreement of
    the global rows.

    Args:
        pred_ms: T2* on predicted masks ``[n]`` in ms (NaN where missing).
        ref_ms: T2* on reference masks ``[n]`` in ms.
        is_global: ``[n]`` whether a row is the ``global`` region (else a sector).
        title: Figure title.
    """
    glob = np.asarray(is_global, dtype=bool)
    pred, ref = np.asarray(pred_ms, dtype=float), np.asarray(ref_ms, dtype=float)
    fig = Figure(figsize=(6.0, 4.5), dpi=100)
    fig.subplots_adjust(**_MARGINS)
    ax = fig.add_subplot()
    both = np.isfinite(pred) & np.isfinite(ref)
    mean, diff = (pred + ref) / 2.0, pred - ref
    for mask, style in ((glob & both, _GLOBAL_STYLE), (~glob & both, _SECTOR_STYLE)):
        if mask.any():
            ax.scatter(mean[mask], diff[mask], **style)
    stats = bland_altman(pred[glob], ref[glob])
    if stats.n:
        ax.axhline(stats.bias, color="k", lw=1.2, label=f"bias {stats.bias:.2f} ms")
        if np.isfinite(stats.sd):
            for limit in (stats.loa_low, stats.loa_high):
                ax.axhline(limit, color="k", lw=1.0, ls="--")
            ax.plot(
                [], [], "k--", lw=1.0, label=f"95% LoA [{stats.loa_low:.2f}, {stats.loa_high:.2f}]"
            )
    if not both.any():
        _no_data(ax)
    ax.axhline(0.0, color="0.7", lw=0.8, zorder=0)
    ax.set_xlabel("mean of predicted and reference T2* (ms)")
    ax.set_ylabel("predicted - reference T2* (ms)")
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return fig


Series = tuple[np.ndarray, np.ndarray, dict[str, object]]


def _identity_panel(ax: Axes, series: Sequence[Series], xlabel: str, ylabel: str) -> None:
    """Scatter ``(x, y, style)`` series on ``ax`` with the line of identity."""
    seen = []
    for x, y, style in series:
        keep = np.isfinite(x) & np.isfinite(y)
        if keep.any():
            ax.scatter(x[keep], y[keep], **style)
            seen += [x[keep], y[keep]]
    if seen:
        values = np.concatenate(seen)
        low, high = float(values.min()), float(values.max())
        pad = 0.05 * max(high - low, 1.0)
        line = [low - pad, high + pad]
        ax.plot(line, line, color="0.5", lw=1.0, label="identity")
        ax.set_xlim(*line)
        ax.set_ylim(*line)
        ax.legend(fontsize=8, loc="best")
    else:
        _no_data(ax)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def scatter_figure(
    pred_ms: Sequence[float] | np.ndarray,
    ref_ms: Sequence[float] | np.ndarray,
    true_ms: Sequence[float] | np.ndarray | None,
    is_global: Sequence[bool] | np.ndarray,
    title: str,
) -> Figure:
    """Scatter plot of predicted- against reference-mask T2*, and against the truth if known.

    Args:
        pred_ms: T2* on predicted masks ``[n]`` in ms (NaN where missing).
        ref_ms: T2* on reference masks ``[n]`` in ms.
        true_ms: True T2* ``[n]`` in ms (synthetic data), or ``None``: then one panel only.
        is_global: ``[n]`` whether a row is the ``global`` region (else a sector).
        title: Figure title.
    """
    glob = np.asarray(is_global, dtype=bool)
    pred, ref = np.asarray(pred_ms, dtype=float), np.asarray(ref_ms, dtype=float)
    panels = 1 if true_ms is None else 2
    fig = Figure(figsize=(4.8 * panels, 4.6), dpi=100)
    fig.subplots_adjust(**_MARGINS, wspace=0.3)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    _identity_panel(
        axes[0],
        [(ref[glob], pred[glob], _GLOBAL_STYLE), (ref[~glob], pred[~glob], _SECTOR_STYLE)],
        "T2* on reference mask (ms)",
        "T2* on predicted mask (ms)",
    )
    if true_ms is not None:
        true = np.asarray(true_ms, dtype=float)[glob]
        ref_style = {"marker": "s", "s": 22, "facecolors": "none", "edgecolors": "tab:green"}
        _identity_panel(
            axes[1],
            [
                (true, pred[glob], {**_GLOBAL_STYLE, "label": "predicted mask (global)"}),
                (true, ref[glob], {**ref_style, "label": "reference mask (global)"}),
            ],
            "true T2* (ms)",
            "fitted T2* (ms)",
        )
    fig.suptitle(title, fontsize=10)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes with the Agg canvas."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def agreement_pngs(
    rows: Sequence[Mapping[str, Any]], has_true: bool, title: str
) -> dict[str, bytes]:
    """The Bland-Altman and scatter figures of an agreement table, as PNG bytes.

    Args:
        rows: Agreement rows (:func:`cmrseg.t2star.mask_agreement.agreement_rows`).
        has_true: Whether ``t2star_true_ms`` is known (adds the panel against the truth).
        title: Figure title.

    Returns:
        ``{"bland_altman": png, "scatter": png}``.
    """

    def column(key: str) -> np.ndarray:
        return np.array([r[key] for r in rows], dtype=float)

    pred, ref = column("t2star_pred_ms"), column("t2star_ref_ms")
    true = column("t2star_true_ms") if has_true else None
    is_global = np.array([r["region"] == "global" for r in rows], dtype=bool)
    return {
        "bland_altman": figure_png(bland_altman_figure(pred, ref, is_global, title)),
        "scatter": figure_png(scatter_figure(pred, ref, true, is_global, title)),
    }
