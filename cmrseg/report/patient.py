"""Per-patient report of ``cmrseg-predict``: one HTML page and one PNG per subject.

Every number the report shows comes from the run's ``t2star.csv`` rows (contract section 2), or
is computed from them by a formula stated on the page (iron); the images, masks and maps come from
``predictions.h5``. A page is self-contained (the PNG is embedded as base64, tables are text), so
it reads without cmrseg. It shows, per subject:

* per slice: echo 1 with the contours of the predicted myocardium, and the pixel-wise T2* map
  (``t2star_map_ms``) on a fixed 0-50 ms colour scale;
* the AHA 16-segment bull's-eye (:func:`bullseye_segments`) with T2* and grade per segment;
* per slice the decay of the global region: its mean signal per echo, the signal model of the
  row evaluated at the row's ``s0`` and T2*, and the noise floor;
* per slice the global T2* with its 95% CI, grade at the scan's field strength, myocardial iron
  by Carpenter et al. 2011 (:func:`~cmrseg.t2star.myocardial_iron_mg_per_g`) and the QC flags;
* the method (estimator, checkpoint file name) and the cmrseg version.

Only the pseudonymous ``subject_id`` of the file names a subject. Drawn on matplotlib's Agg
canvas (headless, no ``pyplot``).
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Wedge

from cmrseg.core.atomic import atomic_dir
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.data.echo_stack import EchoStack
from cmrseg.report.figures import figure_png
from cmrseg.t2star import (
    OFF_CAVITY_ROI_SUFFIX,
    T2StarConfig,
    core_erosion_px,
    grading_field_t,
    mono_exp,
    mono_exp_noise_corrected,
    myocardial_iron_mg_per_g,
    noise_floor_mean,
    off_cavity_lines_mask,
    wall_core_mask,
)
from cmrseg.t2star.grading import GRADE_LOWER_BOUNDS_3T_MS, GRADE_LOWER_BOUNDS_MS

__all__ = [
    "APEX_SEGMENT_SECTORS",
    "MAP_RANGE_MS",
    "DecayCurve",
    "PatientReport",
    "RegionValue",
    "SegmentValue",
    "SlicePanel",
    "bullseye_segments",
    "patient_figure",
    "patient_html",
    "patient_report",
    "write_patient_reports",
]

#: Colour scale of the T2* maps (ms): fixed, so that pages compare at a glance.
MAP_RANGE_MS: tuple[float, float] = (0.0, 50.0)
#: Apical AHA segments from the apex slice's 60-degree sectors. Segment 13 (anterior) and 15
#: (inferior) span 60 of their 90 degrees over sector 1 and sector 4; 14 (septal) and 16
#: (lateral) straddle two sectors by 45 degrees each and show the lower T2* of the two (the
#: conservative reading for iron).
APEX_SEGMENT_SECTORS: dict[int, tuple[str, ...]] = {
    13: ("sector1",),
    14: ("sector2", "sector3"),
    15: ("sector4",),
    16: ("sector5", "sector6"),
}
_RING_OFFSET = {"base": 0, "mid": 6}
_SEGMENT_NAMES = (
    "basal anterior",
    "basal anteroseptal",
    "basal inferoseptal",
    "basal inferior",
    "basal inferolateral",
    "basal anterolateral",
    "mid anterior",
    "mid anteroseptal",
    "mid inferoseptal",
    "mid inferior",
    "mid inferolateral",
    "mid anterolateral",
    "apical anterior",
    "apical septal",
    "apical inferior",
    "apical lateral",
)
_GRADE_COLOURS = {
    "normal": "#4daf4a",
    "mild": "#ffd92f",
    "moderate": "#ff7f00",
    "severe": "#e41a1c",
    "": "#d9d9d9",
}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TEXT_WIDTH = 48  # characters per line of the figure's text panels


@dataclass(frozen=True)
class RegionValue:
    """One ``t2star.csv`` row as the report shows it.

    Attributes:
        region: ``global`` or ``sector1`` .. ``sector6``.
        t2star_ms: T2* in ms; NaN unless ``status`` is ``ok``.
        ci_low_ms: Lower end of the 95% CI (NaN when not given).
        ci_high_ms: Upper end of the 95% CI; for ``below_range`` the bound T2* lies below.
        grade: Grade at the scan's field (``""`` when none).
        status: The row's status.
        qc: ``pass`` or ``review``.
        qc_reasons: Why a person should look (``;``-separated in the CSV).
        n_pixels: Pixels in the region.
        iron_mg_per_g: Myocardial iron (mg/g dry weight) from ``t2star_ms`` by Carpenter et al.
            2011; NaN without a value or when the scan is not graded at 1.5 T.
        text: The T2* as printed: ``23.4``, ``< 2.5`` (below the measurable range) or ``-``.
        iron_text: The iron as printed: ``1.16``, ``> 29.5`` (T2* below the range) or ``-``.
    """

    region: str
    t2star_ms: float
    ci_low_ms: float
    ci_high_ms: float
    grade: str
    status: str
    qc: str
    qc_reasons: tuple[str, ...]
    n_pixels: int
    iron_mg_per_g: float
    text: str
    iron_text: str

    @property
    def rank_ms(self) -> float:
        """Where the value ranks (``below_range`` ranks at its bound's low side); NaN: none."""
        if self.status == "below_range" and math.isfinite(self.ci_high_ms):
            return math.nextafter(self.ci_high_ms, -math.inf)
        return self.t2star_ms


@dataclass(frozen=True)
class DecayCurve:
    """The decay of one slice's global region.

    Attributes:
        te_ms: Echo times ``[E]`` in ms.
        mean_signal: Mean magnitude over the region's pixels per echo ``[E]`` (image units).
        n_pixels: Pixels in the region (the ``global`` row's ``n_pixels``).
        model: Signal model of the row (``noise_corrected``, ``mono``, ...; ``""`` when none).
        model_te_ms: Echo times ``[K]`` of the drawn model curve (empty when none is drawn).
        model_signal: The model at the row's ``s0`` and T2* ``[K]`` (empty when none is drawn).
        noise_sigma: Noise SD per coil channel the fit used; NaN when none.
        n_coils: Effective coil count the fit used; NaN when none.
        noise_floor: Mean magnitude of pure noise, ``sigma sqrt(2) Gamma(N+1/2) / Gamma(N)``;
            NaN when the fit used no noise level.
    """

    te_ms: np.ndarray
    mean_signal: np.ndarray
    n_pixels: int
    model: str
    model_te_ms: np.ndarray
    model_signal: np.ndarray
    noise_sigma: float
    n_coils: float
    noise_floor: float


@dataclass(frozen=True)
class SlicePanel:
    """What the report draws of one slice.

    Attributes:
        slice_index: 0-based slice in the file.
        slice_location: ``base``, ``mid``, ``apex`` or ``""``.
        echo1: First-echo image ``[H, W]``.
        myocardium: Predicted myocardium ``[H, W]`` (bool).
        t2star_map_ms: Pixel-wise T2* ``[H, W]`` in ms, NaN outside the myocardium.
        crop: ``(row0, row1, col0, col1)`` of the drawn part of the image.
        regions: The slice's rows, ``global`` first, then the sectors.
        decay: The decay of the global region.
    """

    slice_index: int
    slice_location: str
    echo1: np.ndarray
    myocardium: np.ndarray
    t2star_map_ms: np.ndarray
    crop: tuple[int, int, int, int]
    regions: tuple[RegionValue, ...]
    decay: DecayCurve

    @property
    def global_value(self) -> RegionValue:
        """The ``global`` row."""
        return self.regions[0]


@dataclass(frozen=True)
class SegmentValue:
    """One AHA segment of the bull's-eye.

    Attributes:
        segment: AHA number, 1 .. 16.
        name: e.g. ``basal anterior``.
        slice_index: Slice the value comes from; -1 when the subject has no such slice.
        source: ``t2star.csv`` region the value is (``""`` when none).
        value: That row (``None`` when none).
    """

    segment: int
    name: str
    slice_index: int
    source: str
    value: RegionValue | None

    @property
    def text(self) -> str:
        """T2* as printed in the segment."""
        return "-" if self.value is None else self.value.text

    @property
    def grade(self) -> str:
        """Grade of the segment's value (``""`` when none)."""
        return "" if self.value is None else self.value.grade


@dataclass(frozen=True)
class PatientReport:
    """Everything the page of one subject shows.

    Attributes:
        subject_id: Pseudonymous subject key of the file.
        field_strength_t: Field of the scan in tesla (NaN: unknown).
        grading: How grades were given, e.g. ``1.5 T cut-offs``.
        slices: One panel per slice, base to apex as in the file.
        bullseye: The 16 AHA segments, in order.
        method: Segmentation method (the checkpoint's file name) and T2* estimator.
        version: cmrseg version.
        notes: Remarks on the page (duplicated slice locations, missing slices, iron at 3 T).
    """

    subject_id: str
    field_strength_t: float
    grading: str
    slices: tuple[SlicePanel, ...]
    bullseye: tuple[SegmentValue, ...]
    method: str
    version: str
    notes: tuple[str, ...]


def _float(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def _region_value(row: Mapping[str, str], iron_ok: bool) -> RegionValue:
    t2star, ci_high = _float(row["t2star_ms"]), _float(row["t2star_ci_high_ms"])
    status = row["status"]
    iron = float(myocardial_iron_mg_per_g(t2star)) if iron_ok else math.nan
    text, iron_text = "-", "-"
    if status == "ok":
        text = f"{t2star:.1f}"
        iron_text = f"{iron:.2f}" if iron_ok else "-"
    elif status == "below_range" and math.isfinite(ci_high):
        text = f"< {ci_high:.1f}"
        iron_text = f"> {myocardial_iron_mg_per_g(ci_high):.2f}" if iron_ok else "-"
    reasons = tuple(r for r in row["qc_reasons"].split(";") if r)
    return RegionValue(
        region=row["region"],
        t2star_ms=t2star,
        ci_low_ms=_float(row["t2star_ci_low_ms"]),
        ci_high_ms=ci_high,
        grade=row["grade"],
        status=status,
        qc=row["qc"],
        qc_reasons=reasons,
        n_pixels=int(row["n_pixels"]),
        iron_mg_per_g=iron,
        text=text,
        iron_text=iron_text,
    )


def _global_mask(
    labels: np.ndarray,
    spacing_mm: np.ndarray,
    axis: int,
    config: T2StarConfig,
    row: Mapping[str, str],
) -> np.ndarray:
    """The pixels of the ``global`` row.

    The wall core when ``region.wall`` is ``core``; of it only the pixels on phase-encoding lines
    off the cavity when the row's ``method`` says so (``.../core_off_cavity/...``; a row that
    combines it with the whole core, a short wall's ``core+core_off_cavity`` or a long wall's
    ``core_off_cavity+core_deblurred``, keeps the whole core).
    """
    wall = labels == MYOCARDIUM
    if config.region.wall == "core":
        erosion_px = core_erosion_px(config.region.core_erosion_mm, spacing_mm, axis)
        wall = wall_core_mask(labels, erosion_px, axis)
    parts = row["method"].split("/")  # estimator/roi/model[/first_N_echoes]
    if len(parts) > 1 and parts[1] == config.region.wall + OFF_CAVITY_ROI_SUFFIX:
        wall &= off_cavity_lines_mask(labels, axis)
    return wall


def _decay(
    images: np.ndarray, te_ms: np.ndarray, mask: np.ndarray, row: Mapping[str, str]
) -> DecayCurve:
    """Mean signal of ``mask`` per echo, the row's model curve and its noise floor."""
    te = np.asarray(te_ms, dtype=float)
    n_pixels = int(mask.sum())
    mean = images[:, mask].astype(float).mean(axis=1) if n_pixels else np.full(te.size, np.nan)
    # method is estimator/roi/model, with /first_N_echoes after a short-T2* region's refit
    parts = row["method"].split("/")
    model = parts[2] if len(parts) > 2 else ""
    sigma, n_coils = _float(row["noise_sigma"]), _float(row["n_coils"])
    floor = (
        float(noise_floor_mean(np.zeros(1), sigma, n_coils)[0])
        if math.isfinite(sigma) and math.isfinite(n_coils)
        else math.nan
    )
    s0, t2star = _float(row["s0"]), _float(row["t2star_ms"])
    dense = np.linspace(0.0, te[-1] * 1.05, 100)
    if row["status"] != "ok" or not (math.isfinite(s0) and math.isfinite(t2star)):
        curve_te, curve = np.empty(0), np.empty(0)
    elif model == "noise_corrected" and math.isfinite(floor):
        curve_te, curve = dense, mono_exp_noise_corrected(dense, s0, t2star, sigma, n_coils)
    elif model in ("mono", "truncated"):
        curve_te, curve = dense, mono_exp(dense, s0, t2star)
    else:  # mono_offset: the CSV holds no offset, so its curve cannot be redrawn
        curve_te, curve = np.empty(0), np.empty(0)
    return DecayCurve(te, mean, n_pixels, model, curve_te, curve, sigma, n_coils, floor)


def _crop(mask: np.ndarray, margin: float = 0.6, min_size: int = 24) -> tuple[int, int, int, int]:
    """A square-ish box around ``mask`` with ``margin`` x its size on each side; all if empty."""
    height, width = mask.shape
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return 0, height, 0, width
    half = max(np.ptp(rows) + 1, np.ptp(cols) + 1, min_size) * (0.5 + margin)
    center = (rows.min() + rows.max()) / 2.0, (cols.min() + cols.max()) / 2.0
    r0, r1 = int(max(0, center[0] - half)), int(min(height, center[0] + half + 1))
    c0, c1 = int(max(0, center[1] - half)), int(min(width, center[1] + half + 1))
    return r0, r1, c0, c1


def bullseye_segments(slices: Sequence[SlicePanel]) -> tuple[SegmentValue, ...]:
    """The AHA 16 segments of one subject from its slices' sector rows.

    Segments 1-6 are the ``sector1`` .. ``sector6`` rows of the (first) basal slice and 7-12
    those of the (first) mid slice: the contract numbers sectors as these AHA segments. Segments
    13-16 come from the apical slice by :data:`APEX_SEGMENT_SECTORS`; where two sectors share a
    segment, the one with the lower T2* gives the value (a ``below_range`` row ranks below its
    bound; a row without a value never wins over one with a value).

    Returns:
        16 :class:`SegmentValue`, segment 1 first.
    """
    first: dict[str, SlicePanel] = {}
    for panel in slices:
        first.setdefault(panel.slice_location, panel)
    segments: list[SegmentValue] = []
    for number, name in enumerate(_SEGMENT_NAMES, start=1):
        location = "base" if number <= 6 else "mid" if number <= 12 else "apex"
        panel = first.get(location)
        if panel is None:
            segments.append(SegmentValue(number, name, -1, "", None))
            continue
        by_region = {value.region: value for value in panel.regions}
        if location == "apex":
            candidates = [by_region[r] for r in APEX_SEGMENT_SECTORS[number]]
        else:
            candidates = [by_region[f"sector{number - _RING_OFFSET[location]}"]]
        ranked = [c for c in candidates if math.isfinite(c.rank_ms)]
        chosen = min(ranked, key=lambda c: c.rank_ms) if ranked else candidates[0]
        segments.append(SegmentValue(number, name, panel.slice_index, chosen.region, chosen))
    return tuple(segments)


def patient_report(
    stack: EchoStack,
    rows: Sequence[Mapping[str, str]],
    subject_id: str,
    config: T2StarConfig,
    *,
    method: str,
    version: str,
) -> PatientReport:
    """Collect what the page of one subject shows.

    Args:
        stack: The predictions (``labels_pred`` and ``t2star_map_ms`` set).
        rows: The ``t2star.csv`` rows (column name -> text) of the whole file.
        subject_id: The subject.
        config: The T2* settings the rows were made with (they define the global region).
        method: What made the masks and values, e.g. ``unet (last.ckpt); median_pixel/core``.
        version: cmrseg version.

    Returns:
        The page's content; the grading and iron follow the field of the subject's first slice.

    Raises:
        ValueError: The stack has no predictions or no slice of ``subject_id``, or the rows
            miss a slice of it.
    """
    if stack.labels_pred is None or stack.t2star_map_ms is None:
        raise ValueError("the stack needs labels_pred and t2star_map_ms (cmrseg-predict output)")
    indices = [i for i, s in enumerate(stack.subject_id) if s == subject_id]
    if not indices:
        raise ValueError(f"the stack has no slice of subject {subject_id!r}")
    fields = (
        np.full(stack.n_slices, np.nan)
        if stack.field_strength_t is None
        else np.asarray(stack.field_strength_t, dtype=float)
    )
    field = float(fields[indices[0]])
    grading_field = grading_field_t(field)
    if grading_field is None:
        grading = f"not graded: no published cut-offs at {field:g} T"
    elif math.isfinite(field):
        grading = f"{grading_field:g} T cut-offs (scan at {field:g} T)"
    else:
        grading = "1.5 T cut-offs (field strength unknown)"
    iron_ok = grading_field == 1.5
    notes = []
    if not iron_ok:
        notes.append("iron not estimated: the Carpenter 2011 calibration is for 1.5 T")
    by_slice: dict[int, dict[str, Mapping[str, str]]] = {}
    for row in rows:
        if row["subject_id"] == subject_id:
            by_slice.setdefault(int(row["slice_index"]), {})[row["region"]] = row
    panels = []
    for i in indices:
        slice_rows = by_slice.get(i)
        if slice_rows is None or "global" not in slice_rows:
            raise ValueError(f"t2star rows miss slice {i} of subject {subject_id}")
        images = np.asarray(stack.images[i])
        labels = np.asarray(stack.labels_pred[i])
        axis = -1 if stack.phase_encoding_axis is None else int(stack.phase_encoding_axis[i])
        mask = _global_mask(labels, stack.pixel_spacing_mm[i], axis, config, slice_rows["global"])
        regions = [slice_rows["global"], *(slice_rows[f"sector{k}"] for k in range(1, 7))]
        panels.append(
            SlicePanel(
                slice_index=i,
                slice_location=stack.slice_location[i],
                echo1=images[0].astype(float),
                myocardium=labels == MYOCARDIUM,
                t2star_map_ms=np.asarray(stack.t2star_map_ms[i], dtype=float),
                crop=_crop(labels == MYOCARDIUM),
                regions=tuple(_region_value(r, iron_ok) for r in regions),
                decay=_decay(images, stack.te_ms[i], mask, slice_rows["global"]),
            )
        )
    locations = [p.slice_location for p in panels]
    for location in ("base", "mid", "apex"):
        if locations.count(location) > 1:
            notes.append(
                f"{locations.count(location)} {location} slices: the bull's-eye uses the first"
            )
        elif location not in locations:
            notes.append(f"no {location} slice: its bull's-eye ring is empty")
    return PatientReport(
        subject_id=subject_id,
        field_strength_t=field,
        grading=grading,
        slices=tuple(panels),
        bullseye=bullseye_segments(panels),
        method=method,
        version=version,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- drawing


def _draw_bullseye(ax: Axes, segments: Sequence[SegmentValue]) -> None:
    """AHA bull's-eye: base outside, apex inside; anterior up, septum left (as the images)."""
    rings = {"base": (2.0, 3.0, 6), "mid": (1.0, 2.0, 6), "apex": (0.35, 1.0, 4)}
    for seg in segments:
        ring = "base" if seg.segment <= 6 else "mid" if seg.segment <= 12 else "apex"
        inner, outer, n = rings[ring]
        k = (seg.segment - 1) % 6 if n == 6 else seg.segment - 13
        width = 360.0 / n
        center = 90.0 + k * width  # segment 1 (or 13) centred on anterior, counterclockwise
        ax.add_patch(
            Wedge(
                (0, 0),
                outer,
                center - width / 2,
                center + width / 2,
                width=outer - inner,
                facecolor=_GRADE_COLOURS.get(seg.grade, _GRADE_COLOURS[""]),
                edgecolor="black",
                linewidth=0.8,
            )
        )
        radius, theta = (inner + outer) / 2.0, math.radians(center)
        ax.text(
            radius * math.cos(theta),
            radius * math.sin(theta),
            f"{seg.segment}\n{seg.text}",
            ha="center",
            va="center",
            fontsize=7,
        )
    ax.set_xlim(-3.2, 3.2)
    ax.set_ylim(-3.2, 3.2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("AHA segments: T2* (ms)", fontsize=9)
    for j, grade in enumerate(("normal", "mild", "moderate", "severe")):
        ax.text(
            -3.1 + 1.6 * j, -3.15, grade, fontsize=7, ha="left", va="top",
            bbox={"facecolor": _GRADE_COLOURS[grade], "edgecolor": "none", "pad": 1.5},
        )  # fmt: skip


def _draw_decay(ax: Axes, panel: SlicePanel) -> None:
    decay, value = panel.decay, panel.global_value
    ax.plot(decay.te_ms, decay.mean_signal, "o", color="tab:blue", label="mean signal")
    if decay.model_signal.size:
        ax.plot(
            decay.model_te_ms,
            decay.model_signal,
            "-",
            color="tab:red",
            label=f"{decay.model}: T2* {value.text} ms",
        )
    if math.isfinite(decay.noise_floor):
        ax.axhline(
            decay.noise_floor,
            color="gray",
            linestyle="--",
            label=f"noise floor ({decay.noise_floor:.3g})",
        )
    ax.set_xlabel("TE (ms)", fontsize=8)
    ax.set_ylabel("signal", fontsize=8)
    ax.set_ylim(bottom=0)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="upper right")
    ax.set_title(f"decay, global ({decay.n_pixels} px)", fontsize=9)


def patient_figure(report: PatientReport) -> Figure:
    """The page's figure: the bull's-eye, then per slice echo 1 + contours, T2* map, decay."""
    n = len(report.slices)
    fig = Figure(figsize=(11.0, 2.9 * n + 3.8), dpi=90)
    grid = fig.add_gridspec(n + 1, 3, height_ratios=[3.8] + [2.9] * n, hspace=0.45, wspace=0.45)
    fig.subplots_adjust(left=0.04, right=0.96, top=1 - 0.5 / (2.9 * n + 3.8), bottom=0.03)
    fig.suptitle(f"{report.subject_id}: myocardial T2*", fontsize=12, y=0.998)
    _draw_bullseye(fig.add_subplot(grid[0, 1]), report.bullseye)
    low, high = MAP_RANGE_MS
    for j, panel in enumerate(report.slices, start=1):
        r0, r1, c0, c1 = panel.crop
        echo = panel.echo1[r0:r1, c0:c1]
        name = f"slice {panel.slice_index} ({panel.slice_location or 'location unknown'})"
        ax = fig.add_subplot(grid[j, 0])
        ax.imshow(echo, cmap="gray")
        if panel.myocardium.any():
            ax.contour(panel.myocardium[r0:r1, c0:c1].astype(float), [0.5], colors="yellow")
        ax.set_title(f"{name}: echo 1, myocardium", fontsize=9)
        ax.axis("off")
        ax = fig.add_subplot(grid[j, 1])
        ax.imshow(echo, cmap="gray")
        image = ax.imshow(panel.t2star_map_ms[r0:r1, c0:c1], cmap="viridis", vmin=low, vmax=high)
        colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        colorbar.set_label("T2* (ms)", fontsize=8)
        colorbar.ax.tick_params(labelsize=7)
        ax.set_title(f"T2* map; global {panel.global_value.text} ms", fontsize=9)
        ax.axis("off")
        _draw_decay(fig.add_subplot(grid[j, 2]), panel)
    _draw_text(fig.add_subplot(grid[0, 0]), _summary_lines(report))
    _draw_text(fig.add_subplot(grid[0, 2]), _about_lines(report))
    return fig


def _global_text(panel: SlicePanel) -> str:
    """One slice's global result in words: T2*, CI, grade, iron and QC."""
    value = panel.global_value
    parts = [f"T2* {value.text} ms"]
    if value.status == "ok":
        parts[0] += f" (95% CI {_number(value.ci_low_ms)}-{_number(value.ci_high_ms)})"
    elif value.status != "below_range":
        parts.append(value.status)
    if value.grade:
        parts.append(value.grade)
    if value.iron_text != "-":
        parts.append(f"iron {value.iron_text} mg/g dw")
    qc = f"QC {value.qc}"
    if value.qc_reasons:
        qc += ": " + ", ".join(value.qc_reasons)
    return ", ".join(parts) + "; " + qc


def _summary_lines(report: PatientReport) -> list[str]:
    lines = ["Global myocardium per slice:"]
    for panel in report.slices:
        where = f"{panel.slice_location or 'slice'} ({panel.slice_index})"
        lines += textwrap.wrap(
            f"{where}: {_global_text(panel)}", _TEXT_WIDTH, subsequent_indent="   "
        )
    return [*lines, "", *textwrap.wrap(f"Grading: {report.grading}.", _TEXT_WIDTH)]


def _about_lines(report: PatientReport) -> list[str]:
    lines = [
        *textwrap.wrap(f"Method: {report.method}.", _TEXT_WIDTH),
        f"cmrseg {report.version}",
        "",
    ]
    lines += [
        "Iron [Fe] = 45.0 x T2*^-1.22 mg/g dry weight",
        "(Carpenter et al., Circulation 2011), 1.5 T only.",
        "Apical segments 14 and 16: lower T2* of",
        "sectors 2/3 and 5/6 of the apical slice.",
        f"T2* maps: {MAP_RANGE_MS[0]:g}-{MAP_RANGE_MS[1]:g} ms colour scale.",
    ]
    for note in report.notes:
        lines += textwrap.wrap(f"Note: {note}", _TEXT_WIDTH)
    return lines


def _draw_text(ax: Axes, lines: Sequence[str]) -> None:
    ax.axis("off")
    ax.text(0.0, 1.0, "\n".join(lines), ha="left", va="top", fontsize=7, family="monospace",
            transform=ax.transAxes)  # fmt: skip


# --------------------------------------------------------------------------- HTML

_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:1em auto;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;"
    "font-size:13px;text-align:left}th{background:#eee}img{max-width:100%}"
    ".review{background:#fff3cd}"
)


def _number(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


def _table(
    header: Sequence[str], body: Sequence[Sequence[str]], classes: Sequence[str] = ()
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = [f"<table><tr>{head}</tr>"]
    for k, cells in enumerate(body):
        cls = f' class="{classes[k]}"' if k < len(classes) and classes[k] else ""
        lines.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return "\n".join([*lines, "</table>"])


def _cutoff_text(bounds: Sequence[tuple[str, float]]) -> str:
    above = ", ".join(f"{grade} &ge; {low:g} ms" for grade, low in bounds if low > 0)
    return f"{above}, {bounds[-1][0]} below"


def patient_html(report: PatientReport, png: bytes) -> str:
    """The page of one subject: the figure embedded as base64 and the numbers as tables."""
    slices = []
    for panel in report.slices:
        value = panel.global_value
        ci = (
            f"{_number(value.ci_low_ms)} - {_number(value.ci_high_ms)}"
            if value.status == "ok"
            else "-"
        )
        slices.append(
            [
                str(panel.slice_index),
                panel.slice_location or "unknown",
                value.text,
                ci,
                value.grade or "-",
                value.iron_text,
                value.status,
                value.qc,
                "; ".join(value.qc_reasons) or "-",
            ]
        )
    slice_table = _table(
        ["slice", "location", "T2* (ms)", "95% CI (ms)", "grade", "iron (mg/g dw)", "status", "QC",
         "QC reasons"],
        slices,
        ["review" if p.global_value.qc != "pass" else "" for p in report.slices],
    )  # fmt: skip
    segments = _table(
        ["AHA segment", "name", "slice", "from region", "T2* (ms)", "grade", "status"],
        [
            [
                str(s.segment),
                s.name,
                str(s.slice_index) if s.slice_index >= 0 else "-",
                s.source or "-",
                s.text,
                s.grade or "-",
                "-" if s.value is None else s.value.status,
            ]
            for s in report.bullseye
        ],
    )
    decay_rows = []
    for panel in report.slices:
        decay = panel.decay
        decay_rows.append(
            [
                str(panel.slice_index),
                " ".join(f"{t:.3g}" for t in decay.te_ms),
                " ".join(f"{s:.4g}" for s in decay.mean_signal),
                decay.model or "-",
                _number(decay.noise_sigma, 4),
                _number(decay.n_coils, 2),
                _number(decay.noise_floor, 4),
            ]
        )
    decay_table = _table(
        ["slice", "TE (ms)", "mean signal", "model", "noise sigma", "coils", "noise floor"],
        decay_rows,
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    title = html.escape(report.subject_id)
    image = base64.b64encode(png).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}: myocardial T2*</title>
<style>{_STYLE}</style></head><body>
<h1>{title}: myocardial T2*</h1>
<p>Grading: {html.escape(report.grading)}. Method: {html.escape(report.method)}.
cmrseg {html.escape(report.version)}.</p>
{f"<ul>{notes}</ul>" if notes else ""}
<h2>Global T2* per slice</h2>
{slice_table}
<h2>AHA segments</h2>
{segments}
<h2>Figure</h2>
<img alt="per-slice contours, T2* maps, decay curves and bull's-eye of {title}"
 src="data:image/png;base64,{image}">
<h2>Decay of the global region</h2>
{decay_table}
<h2>How to read this page</h2>
<ul>
<li>T2* per region: the project's default estimate (column <code>method</code> of t2star.csv);
95% CI of that estimate. A value &lt; X: T2* is shorter than these echo times can measure.</li>
<li>Grades at 1.5 T: {_cutoff_text(GRADE_LOWER_BOUNDS_MS)}; at 3 T:
{_cutoff_text(GRADE_LOWER_BOUNDS_3T_MS)} (sources in the cmrseg README). Grades use the
unrounded T2* (19.97 ms shows as 20.0 and is mild).</li>
<li>Iron: myocardial iron concentration [Fe] = 45.0 &times; (T2*)<sup>-1.22</sup> mg/g dry
weight, T2* in ms at 1.5 T (Carpenter et al., Circulation 2011;123:1519-1528).</li>
<li>AHA segments 1-12: the six 60-degree sectors of the basal and mid slices. Apical segments
13 (anterior) and 15 (inferior) are sectors 1 and 4 of the apical slice; 14 (septal) and 16
(lateral) each straddle two sectors (2-3 and 5-6) and show the lower T2* of the two.</li>
<li>Decay: mean signal of the global region's pixels per echo; the line is the row's signal
model at its S0 and T2* (for the median of pixel fits, the model of the median pixel); the
dashed line is the mean magnitude of pure noise.</li>
<li>QC "review": a person should check this value; the reasons say why.</li>
</ul>
</body></html>
"""


def _page_stems(subjects: Sequence[str]) -> dict[str, str]:
    """File name stem per subject (``index`` is the index page's).

    The id itself when it is a plain, unused file name; else the id's plain characters and the
    subject's position.
    """
    stems: dict[str, str] = {}
    used = {"index"}
    for k, subject in enumerate(subjects, start=1):
        stem = subject
        if not _SAFE_NAME.match(subject) or subject.lower() in used:
            stem = f"{re.sub(r'[^A-Za-z0-9_-]+', '_', subject).strip('_') or 'subject'}-{k}"
        used.add(stem.lower())
        stems[subject] = stem
    return stems


def _index_html(reports: Sequence[PatientReport], stems: Mapping[str, str], version: str) -> str:
    rows = []
    n_columns = max((len(report.slices) for report in reports), default=1)
    for report in reports:
        name = html.escape(report.subject_id)
        cells = [
            f'<a href="{html.escape(stems[report.subject_id])}.html">{name}</a>',
            *(
                html.escape(f"{p.slice_location or p.slice_index}: {p.global_value.text}"
                            f" {p.global_value.grade}".strip())
                for p in report.slices
            ),
        ]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>myocardial T2* reports</title>
<style>{_STYLE}</style></head><body>
<h1>Myocardial T2* reports (cmrseg {html.escape(version)})</h1>
<table><tr><th>subject</th><th colspan="{n_columns}">global T2* (ms) and grade per slice</th></tr>
{"".join(rows)}
</table></body></html>
"""


def write_patient_reports(
    folder: str | os.PathLike[str],
    stack: EchoStack,
    rows: Sequence[Mapping[str, str]],
    config: T2StarConfig,
    *,
    method: str,
    version: str,
) -> list[Path]:
    """Write ``<subject>.html`` and ``<subject>.png`` per subject and ``index.html``, atomically.

    Args:
        folder: Destination folder (its files appear together, see
            :func:`~cmrseg.core.atomic.atomic_dir`).
        stack: The predictions (``labels_pred`` and ``t2star_map_ms`` set).
        rows: The ``t2star.csv`` rows of ``stack``.
        config: The T2* settings the rows were made with.
        method: See :func:`patient_report`.
        version: cmrseg version.

    Returns:
        The HTML pages written, ``index.html`` last. A page is named after its subject id; an
        id that is no plain file name (or is ``index``) gets its plain characters and its
        position in the file, e.g. ``a_b-3.html``.
    """
    subjects = list(dict.fromkeys(stack.subject_id))
    stems = _page_stems(subjects)
    final = Path(folder)
    reports = []
    with atomic_dir(final) as tmp:
        for subject in subjects:
            report = patient_report(stack, rows, subject, config, method=method, version=version)
            png = figure_png(patient_figure(report))
            (tmp / f"{stems[subject]}.png").write_bytes(png)
            (tmp / f"{stems[subject]}.html").write_text(patient_html(report, png), encoding="utf-8")
            reports.append(report)
        (tmp / "index.html").write_text(_index_html(reports, stems, version), encoding="utf-8")
    return [final / f"{stems[s]}.html" for s in subjects] + [final / "index.html"]
