"""Synthetic multi-echo GRE cohort: anatomy + signal model + acquisition -> echo stack.

Per slice: the anatomy is painted on a grid ``oversampling`` times finer than the display grid,
turned into complex multi-echo images and acquired (:mod:`cmrseg.synth.acquisition`). The
ground truth is traced on the display grid: a pixel is inside a contour when more than half of
its area is (ties: when its centre is), like a reader drawing the endo- and epicardial contours
around trabeculations and papillary muscles (which are therefore blood pool). ``t2star_ms`` is
the T2* of the tissue covering most of each pixel (NaN where no signal: air, and lung unless a
randomized subject gives it signal) and, in the labelled myocardium, the true myocardial T2* at
the pixel centre. The regional myocardial variation is
normalized so that the mean of ``t2star_ms`` over the labelled myocardium of every slice equals
the subject's cohort value (given at 1.5 T; at 3 T converted by the config's published R2* lines,
:meth:`~cmrseg.synth.config.SynthConfig.t2star_at_field`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from tqdm import tqdm

from cmrseg.core.labels import BACKGROUND, BLOOD_POOL, MYOCARDIUM
from cmrseg.data.echo_stack import EchoStack
from cmrseg.synth.acquisition import CoilArray, acquire, fat_phasors, multi_echo_signal
from cmrseg.synth.anatomy import SliceAnatomy, TissueMaps, draw_subject, paint
from cmrseg.synth.config import TISSUES, Cohort, SubjectPlan, SynthConfig
from cmrseg.synth.randomize import (
    IDENTITY,
    SubjectVariation,
    randomize_file,
    randomize_subject,
)

__all__ = ["SyntheticSlice", "synthesize_cohort", "synthesize_subject"]

log = logging.getLogger(__name__)

_MYO = TISSUES.index("myocardium")
_LIVER = TISSUES.index("liver")


@dataclass(frozen=True)
class SyntheticSlice:
    """One synthesized slice on the display grid.

    Attributes:
        location: ``base``, ``mid`` or ``apex``.
        images: float32 ``[E, H, W]`` magnitude.
        labels: uint8 ``[H, W]``: 0 background, 1 LV blood pool, 2 LV myocardium.
        t2star_ms: float32 ``[H, W]`` true T2*, NaN outside tissue.
        tissue: uint8 ``[H, W]`` tissue covering most of each pixel (index into ``TISSUES``).
        rv_insertion: float32 ``[2]`` (row, column) of the anterior RV insertion point.
        sigma: Noise SD of the real part of one coil's image (``None``: noise-free).
        te_ms: float32 ``[E]`` echo times.
        pixel_spacing_mm: Isotropic pixel spacing.
        field_strength_t: Main field in tesla.
    """

    location: str
    images: np.ndarray
    labels: np.ndarray
    t2star_ms: np.ndarray
    tissue: np.ndarray
    rv_insertion: np.ndarray
    sigma: float | None
    te_ms: np.ndarray
    pixel_spacing_mm: float
    field_strength_t: float


def _grid_axes(n: int, spacing_mm: float) -> np.ndarray:
    """Pixel-centre coordinates in mm from the image edge, ``[n]``."""
    return (np.arange(n) + 0.5) * spacing_mm


def _block_fraction(mask: np.ndarray, o: int) -> np.ndarray:
    h, w = mask.shape[0] // o, mask.shape[1] // o
    return mask.reshape(h, o, w, o).mean(axis=(1, 3))


def _trace(fine: np.ndarray, center: np.ndarray, o: int) -> np.ndarray:
    """Area-majority downsampling of a fine mask; ties go to the display-centre sample."""
    frac = _block_fraction(fine, o)
    return (frac > 0.5) | ((frac == 0.5) & center)


def _majority_tissue(fine: np.ndarray, center: np.ndarray, o: int) -> np.ndarray:
    """Tissue covering most of each display pixel; ties go to the display-centre sample."""
    h, w = center.shape
    n_tissues = len(TISSUES)
    pixel = np.arange(h * w).reshape(h, w).repeat(o, axis=0).repeat(o, axis=1)
    counts = np.bincount((pixel * n_tissues + fine).ravel(), minlength=h * w * n_tissues).reshape(
        h, w, n_tissues
    )
    best = counts.argmax(axis=-1).astype(np.uint8)
    tied = (counts == counts.max(axis=-1, keepdims=True)).sum(axis=-1) > 1
    return np.where(tied, center, best)


def _tissue_tables(
    cfg: SynthConfig, t2_myo_ms: float, t2_liver_ms: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-tissue S0, fat fraction and T2* at the config's field (ms; NaN: no signal), ``[K]``.

    ``t2_myo_ms`` and ``t2_liver_ms`` are already at the config's field.
    """
    props = [cfg.tissues[name] for name in TISSUES]
    s0 = np.array([p.s0 for p in props], np.float32)
    ff = np.array([p.fat_fraction for p in props], np.float32)
    t2 = np.array(
        [
            np.nan if p.t2star_ms is None else float(cfg.t2star_at_field(name, p.t2star_ms))
            for name, p in zip(TISSUES, props, strict=True)
        ],
        np.float32,
    )
    t2[_MYO], t2[_LIVER] = t2_myo_ms, t2_liver_ms
    return s0, ff, t2


def _synthesize_slice(
    cfg: SynthConfig,
    plan: SubjectPlan,
    anatomy: SliceAnatomy,
    variation: SubjectVariation,
    workers: int,
) -> SyntheticSlice:
    rows, cols = cfg.grid.shape
    o = cfg.grid.oversampling
    dx = cfg.grid.pixel_spacing_mm
    y_d, x_d = _grid_axes(rows, dx), _grid_axes(cols, dx)
    y_f, x_f = _grid_axes(rows * o, dx / o), _grid_axes(cols * o, dx / o)
    fine: TissueMaps = paint(anatomy, y_f, x_f)
    center: TissueMaps = paint(anatomy, y_d, x_d)
    # absent organs (domain randomization) become their surroundings; contours are unchanged
    fine = replace(fine, tissue=variation.tissue_map[fine.tissue])
    center = replace(center, tissue=variation.tissue_map[center.tissue])

    endo = _trace(fine.endo, center.endo, o)
    epi = _trace(fine.epi, center.epi, o)
    labels = np.where(endo, BLOOD_POOL, np.where(epi, MYOCARDIUM, BACKGROUND)).astype(np.uint8)
    if not (labels == MYOCARDIUM).any():
        raise RuntimeError(f"{plan.subject_id} {anatomy.location}: empty myocardium")
    # the cohort's values are at 1.5 T; normalize the regional variation so that the labelled
    # myocardium averages to the cohort value at the config's field
    t2_myo = float(cfg.t2star_at_field("myocardium", plan.myocardium_t2star_ms))
    t2_liver = float(cfg.t2star_at_field("liver", plan.liver_t2star_ms))
    t2_scale = t2_myo / float(center.t2star_factor[labels == MYOCARDIUM].mean())

    s0, ff, t2 = _tissue_tables(cfg, t2_myo, t2_liver)
    tissue = _majority_tissue(fine.tissue, center.tissue, o)
    truth = t2[tissue]
    myo_field = (t2_scale * center.t2star_factor).astype(np.float32)
    truth = np.where((tissue == _MYO) | (labels == MYOCARDIUM), myo_field, truth).astype(np.float32)

    te_ms = cfg.echoes.te_ms
    fat = fat_phasors(cfg.fat_spectrum, cfg.field_strength_t, te_ms)
    # one signal curve per tissue, then the myocardium pixel by pixel (its T2* varies)
    per_tissue = multi_echo_signal(s0, ff, np.nan_to_num(t2, nan=1.0), te_ms, fat)  # [E, K]
    obj = per_tissue[:, fine.tissue]
    myo = fine.tissue == _MYO
    obj[:, myo] = multi_echo_signal(
        s0[_MYO], ff[_MYO], t2_scale * fine.t2star_factor[myo], te_ms, fat
    )

    s = anatomy.subject
    acq = cfg.acquisition
    coils = CoilArray.around_torso(
        acq.n_coils,
        acq.coil_length_mm,
        s.torso_center,
        s.torso_half_axes,
        s.torso_angle,
        anatomy.lv_center,
        plan.rng,
    )
    sigma = None
    if acq.snr is not None:
        rss = np.sqrt((np.abs(coils.sensitivities(y_d, x_d)) ** 2).sum(axis=0))
        reference_t2star_ms = float(cfg.t2star_at_field("myocardium", acq.snr_reference_t2star_ms))
        reference = cfg.tissues["myocardium"].s0 * math.exp(-float(te_ms[0]) / reference_t2star_ms)
        sigma = reference * float(rss[labels == MYOCARDIUM].mean()) / acq.snr
    sens = coils.sensitivities(y_f, x_f)
    if variation.bias_sd > 0:
        obj *= variation.bias(y_f, x_f, (rows * dx, cols * dx))
    images = acquire(obj, sens, cfg.grid, acq, sigma, plan.rng, workers=workers)

    ins_y, ins_x = anatomy.rv_insertion_mm()
    rv_insertion = np.array([ins_y / dx - 0.5, ins_x / dx - 0.5], np.float32)
    maps = [labels, truth, tissue]
    for flip, axis in ((variation.flip_rows, 0), (variation.flip_cols, 1)):
        if flip:
            images = np.flip(images, axis=axis + 1)
            maps = [np.flip(m, axis=axis) for m in maps]
            rv_insertion[axis] = (rows, cols)[axis] - 1 - rv_insertion[axis]
    labels, truth, tissue = (np.ascontiguousarray(m) for m in maps)
    return SyntheticSlice(
        location=anatomy.location,
        images=np.ascontiguousarray(images),
        labels=labels,
        t2star_ms=truth,
        tissue=tissue,
        rv_insertion=rv_insertion,
        sigma=sigma,
        te_ms=te_ms,
        pixel_spacing_mm=dx,
        field_strength_t=cfg.field_strength_t,
    )


def synthesize_subject(
    cfg: SynthConfig, plan: SubjectPlan, workers: int = -1
) -> list[SyntheticSlice]:
    """Synthesize the base, mid and apex slices of one subject.

    With a ``randomize`` section the subject's field, sequence, contrast, anatomy and pose are
    drawn first (:func:`~cmrseg.synth.randomize.randomize_subject`) on the matrix and echo count
    of ``cfg`` (:func:`synthesize_cohort` draws those per file).

    Args:
        cfg: Phantom configuration.
        plan: The subject (true T2* values and its random stream, which this consumes).
        workers: Threads for scipy.fft.

    Returns:
        Three slices, base to apex.
    """
    variation = IDENTITY
    if cfg.randomize is not None:
        cfg, plan, variation = randomize_subject(cfg, plan)
    fov_mm = (
        cfg.grid.shape[0] * cfg.grid.pixel_spacing_mm,
        cfg.grid.shape[1] * cfg.grid.pixel_spacing_mm,
    )
    slices = draw_subject(cfg.anatomy, fov_mm, plan.rng, variation.rotation_rad)
    return [_synthesize_slice(cfg, plan, anatomy, variation, workers) for anatomy in slices]


def synthesize_cohort(
    cfg: SynthConfig,
    cohort: Cohort,
    seed: int,
    n_subjects: int | None = None,
    progress: bool = False,
    workers: int = -1,
    jobs: int = 1,
) -> EchoStack:
    """Synthesize the first ``n_subjects`` subjects of a cohort as an echo stack.

    The result is a function of (``cfg``, ``cohort``, ``seed``) only; subject ``k`` is the same
    whatever ``n_subjects`` or ``jobs`` is.

    Args:
        cfg: Phantom configuration (see :func:`cmrseg.synth.load_synth_config`).
        cohort: Subjects and their true myocardial T2*.
        seed: Random seed.
        n_subjects: How many subjects, from the first; ``None`` for all.
        progress: Show a progress bar over subjects.
        workers: Threads for scipy.fft (one per process when ``jobs`` > 1).
        jobs: Processes that synthesize subjects side by side (each subject carries its own
            random stream, so the file does not depend on it).

    Returns:
        ``N = 3 * n_subjects`` slices with ``labels``, ``rv_insertion``,
        ``phase_encoding_axis`` (0), ``t2star_ms`` and ``field_strength_t``; with a
        ``randomize`` section the matrix and echo count are drawn for the file from ``seed``
        and echo times, pixel spacing and field per subject.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if cfg.randomize is not None:
        cfg = randomize_file(cfg, seed)
    plans = cohort.plan(seed, n_subjects)
    slices: list[SyntheticSlice] = []
    subject_ids: list[str] = []
    with ExitStack() as stack:
        subjects: Iterator[list[SyntheticSlice]]
        if jobs > 1 and len(plans) > 1:
            pool = stack.enter_context(ProcessPoolExecutor(min(jobs, len(plans))))
            subjects = pool.map(partial(synthesize_subject, cfg, workers=1), plans)
        else:
            subjects = (synthesize_subject(cfg, plan, workers) for plan in plans)
        bar = tqdm(
            zip(plans, subjects, strict=True),
            total=len(plans),
            desc="subjects",
            unit="subject",
            disable=not progress,
        )
        for plan, subject_slices in bar:
            slices.extend(subject_slices)
            subject_ids.extend([plan.subject_id] * len(subject_slices))
            log.debug(
                "%s (%s): myocardial T2* %.2f ms, liver T2* %.2f ms",
                plan.subject_id,
                plan.group,
                plan.myocardium_t2star_ms,
                plan.liver_t2star_ms,
            )
    n = len(slices)
    spacing = np.array([s.pixel_spacing_mm for s in slices], np.float32)
    return EchoStack(
        images=np.stack([s.images for s in slices]),
        te_ms=np.stack([s.te_ms for s in slices]).astype(np.float32),
        subject_id=subject_ids,
        slice_location=[s.location for s in slices],
        pixel_spacing_mm=np.repeat(spacing[:, None], 2, axis=1),
        labels=np.stack([s.labels for s in slices]),
        rv_insertion=np.stack([s.rv_insertion for s in slices]),
        phase_encoding_axis=np.zeros(n, np.int8),
        t2star_ms=np.stack([s.t2star_ms for s in slices]),
        field_strength_t=np.array([s.field_strength_t for s in slices], np.float32),
    )
