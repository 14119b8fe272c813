"""Subjects of the ellipsoid phantom: per-subject draws, slice rendering and the echo-stack cohort.

A subject is drawn from its own generator (``seed``, subject index), so subject i is the same
whatever the cohort size, and the noise comes from a second generator, so changing the SNR
leaves the anatomy alone. Each subject gets three short-axis slices (base, mid, apex) through
its 3-D anatomy. Every display pixel averages 2 x 2 in-plane by 5 through-plane samples of the
tissue codes (partial volume over the slice thickness); labels take the largest of LV blood pool
(cavity and papillary muscles), LV myocardium and everything else over those samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from cmrseg.core.labels import BACKGROUND, BLOOD_POOL, MYOCARDIUM
from cmrseg.data.echo_stack import EchoStack
from cmrseg.synth.ellipsoid.geometry import Body, Heart, draw_body, draw_heart, paint
from cmrseg.synth.ellipsoid.scanner import Scanner, acquire, draw_scanner
from cmrseg.synth.ellipsoid.tissues import (
    N_TISSUES,
    TISSUE_NAMES,
    TissueProperties,
    draw_tissues,
    echo_signal,
)

__all__ = [
    "ECHO_TIMES_MS",
    "FIELD_STRENGTH_T",
    "MATRIX",
    "SLICE_LOCATIONS",
    "EllipsoidSubject",
    "draw_subject",
    "render_subject",
    "synthesize_ellipsoid_cohort",
]

#: Echo times of every slice, ms: 8 echoes 2.97..21.68 ms, as the study's protocol.
ECHO_TIMES_MS = np.linspace(2.97, 21.68, 8)
#: Main field, tesla (the phantom's T2* ranges and fat shifts are for 1.5 T).
FIELD_STRENGTH_T = 1.5
#: Display matrix (rows, columns).
MATRIX = (192, 256)
#: Slices per subject, base to apex.
SLICE_LOCATIONS = ("base", "mid", "apex")
_IN_PLANE = 2  # sub-samples per pixel along each image axis, around the heart
_THROUGH_PLANE = 5  # sub-samples across the slice thickness, around the heart
_T = {name: code for code, name in enumerate(TISSUE_NAMES)}
_MYOCARDIAL = (_T["lv_myocardium"], _T["papillary"])
#: Myocardial T2* bands at 1.5 T (low ms, high ms, probability): the grade is drawn first, then
#: the value log-uniformly within it, so every grade of the contract is well represented.
_MYOCARDIAL_T2STAR_BANDS = (
    (20.0, 50.0, 0.40),  # normal
    (14.0, 20.0, 0.20),  # mild
    (10.0, 14.0, 0.15),  # moderate
    (2.0, 10.0, 0.25),  # severe
)


@dataclass(frozen=True)
class EllipsoidSubject:
    """Everything drawn for one subject.

    Attributes:
        seed: Cohort seed.
        index: 0-based subject index in the cohort.
        myocardium_t2star_ms: The subject's myocardial T2* in ms: the mean of the true map over
            the pixels labelled myocardium in its slices.
        t2star_pattern: Regional T2* pattern ``(a1, phase1, a2, phase2, a_long)``: relative
            T2* ``1 + a1 cos(theta - phase1) + a2 cos(2 theta - phase2) + a_long z_h / c_endo``
            before the rescaling that keeps the mean.
        heart: LV, RV and epicardial fat.
        body: Torso and organs.
        tissues: S0, T2* and fat fraction per tissue.
        scanner: Coils, sampling, breathing motion and SNR.
        spacing_mm: Square pixel spacing.
        slice_thickness_mm: Slice thickness.
        slice_z_mm: Scene heights of the base, mid and apex planes ``[3]``.
        rotation_rad: In-plane rotation of the scene on the image.
        shift_mm: Image position ``[2]`` (column, row) of the LV centre from the image centre.
        gain: Overall signal scale (arbitrary units).
    """

    seed: int
    index: int
    myocardium_t2star_ms: float
    t2star_pattern: np.ndarray
    heart: Heart
    body: Body
    tissues: TissueProperties
    scanner: Scanner
    spacing_mm: float
    slice_thickness_mm: float
    slice_z_mm: np.ndarray
    rotation_rad: float
    shift_mm: np.ndarray
    gain: float

    @property
    def subject_id(self) -> str:
        """Pseudonymous key, ``S0001`` for index 0."""
        return f"S{self.index + 1:04d}"


def _subject_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream])


def draw_subject(
    seed: int,
    index: int,
    *,
    snr: float | None = None,
    noise_free: bool = False,
    ideal: bool = False,
) -> EllipsoidSubject:
    """Draw subject ``index`` (0-based) of the cohort of ``seed``.

    Args:
        seed: Cohort seed.
        index: Subject index; the key is ``S{index + 1:04d}``.
        snr: Fixed SNR for the subject instead of its draw (log-uniform 15-60).
        noise_free: No noise at all.
        ideal: Noise-free, every phase line acquired, no breathing motion: the truth check.

    Returns:
        The subject; the same for the same ``(seed, index)`` whatever the other arguments,
        apart from the scanner settings they name.
    """
    rng = _subject_rng(seed, index, 0)
    bands = np.array(_MYOCARDIAL_T2STAR_BANDS)
    low, high, _ = bands[rng.choice(len(bands), p=bands[:, 2])]
    t2_myo = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    pattern = np.array(
        [
            rng.uniform(0.0, 0.08),
            rng.uniform(0.0, 2 * np.pi),
            rng.uniform(0.0, 0.04),
            rng.uniform(0.0, 2 * np.pi),
            rng.uniform(-0.06, 0.06),
        ]
    )
    heart = draw_heart(rng)
    body = draw_body(rng, heart)
    tissues = draw_tissues(rng, t2_myo)
    drawn_snr = float(np.exp(rng.uniform(np.log(15.0), np.log(60.0))))
    subject_snr = None if (noise_free or ideal) else (snr if snr is not None else drawn_snr)
    b_cut = body.torso_b_mm / abs(body.torso_axis[2])  # vertical semi-axis in the slice, roughly
    scanner = draw_scanner(rng, body.torso_centre, body.torso_a_mm, b_cut, subject_snr, ideal)
    length = heart.endo_c_mm - heart.base_z_mm
    base = heart.base_z_mm + length * rng.uniform(0.25, 0.32)
    apex = heart.endo_c_mm * rng.uniform(0.75, 0.97)
    mid = 0.5 * (base + apex) + rng.uniform(-3.0, 3.0)
    slice_z = np.array([base, mid, apex]) * heart.rotation[2, 2]
    return EllipsoidSubject(
        seed=seed,
        index=index,
        myocardium_t2star_ms=t2_myo,
        t2star_pattern=pattern,
        heart=heart,
        body=body,
        tissues=tissues,
        scanner=scanner,
        spacing_mm=rng.uniform(1.25, 1.6),
        slice_thickness_mm=rng.uniform(6.0, 10.0),
        slice_z_mm=slice_z,
        rotation_rad=np.deg2rad(rng.uniform(-25.0, 25.0)),
        shift_mm=np.array([rng.uniform(-15.0, 25.0), rng.uniform(-25.0, 10.0)]),
        gain=rng.uniform(60.0, 200.0),
    )


def _image_to_scene(subject: EllipsoidSubject, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Scene (x, y) ``[..., 2]`` of image positions (u right, v down, mm from the centre)."""
    c, s = np.cos(subject.rotation_rad), np.sin(subject.rotation_rad)
    du, dv = u - subject.shift_mm[0], v - subject.shift_mm[1]
    return np.stack([c * du + s * dv, -s * du + c * dv], axis=-1)


def _scene_to_pixel(subject: EllipsoidSubject, x: float, y: float) -> tuple[float, float]:
    """(row, column) in pixels of a scene point (x, y)."""
    c, s = np.cos(subject.rotation_rad), np.sin(subject.rotation_rad)
    u = c * x - s * y + subject.shift_mm[0]
    v = s * x + c * y + subject.shift_mm[1]
    rows, cols = MATRIX
    return v / subject.spacing_mm + (rows - 1) / 2, u / subject.spacing_mm + (cols - 1) / 2


def _pixel_centres(subject: EllipsoidSubject, z_mm: float, sub: int) -> np.ndarray:
    """Scene points ``[H*sub, W*sub, 3]`` of ``sub`` x ``sub`` samples per pixel at height z."""
    rows, cols = MATRIX
    step = subject.spacing_mm / sub
    v = (np.arange(rows * sub) - (rows * sub - 1) / 2) * step
    u = (np.arange(cols * sub) - (cols * sub - 1) / 2) * step
    xy = _image_to_scene(subject, *np.meshgrid(u, v))
    return np.concatenate([xy, np.full((*xy.shape[:2], 1), z_mm)], axis=-1)


@dataclass(frozen=True)
class _SliceGeometry:
    fractions: np.ndarray  # [H*W, K] tissue fractions
    labels: np.ndarray  # [H, W] uint8
    pattern: np.ndarray  # [H*W] relative myocardial T2* (before rescaling)
    centres: np.ndarray  # [H*W, 3] pixel centres in the scene


def _through_plane(subject: EllipsoidSubject, n: int) -> np.ndarray:
    """Offsets ``[n]`` in mm of evenly spaced samples across the slice thickness."""
    return ((np.arange(n) + 0.5) / n - 0.5) * subject.slice_thickness_mm


def _heart_box(subject: EllipsoidSubject, z_mm: float) -> tuple[slice, slice]:
    """Rows and columns of the image that can hold heart tissue at plane height ``z_mm``."""
    rows, cols = MATRIX
    axis = subject.heart.rotation[:, 2]
    row, col = _scene_to_pixel(subject, *(axis[:2] * z_mm / axis[2]))
    half = (subject.heart.reach_mm + subject.slice_thickness_mm) / subject.spacing_mm + 2
    return (
        slice(int(np.clip(row - half, 0, rows)), int(np.clip(row + half + 1, 0, rows))),
        slice(int(np.clip(col - half, 0, cols)), int(np.clip(col + half + 1, 0, cols))),
    )


def _fractions(
    subject: EllipsoidSubject, points: np.ndarray, sub: int, n_z: int, with_heart: bool
) -> np.ndarray:
    """Tissue fractions ``[P, K]`` of pixels sampled ``sub`` x ``sub`` x ``n_z`` times.

    Args:
        subject: The subject.
        points: In-plane samples ``[P * sub * sub, 3]`` ordered pixel by pixel, at the
            slice's centre plane.
        sub: In-plane samples per pixel along each axis.
        n_z: Samples across the slice thickness.
        with_heart: Paint the heart too (off where it cannot reach).
    """
    n_pixels = len(points) // sub**2
    pixel = np.repeat(np.arange(n_pixels), sub**2)
    counts = np.zeros(n_pixels * N_TISSUES)
    samples = points.copy()
    for offset in _through_plane(subject, n_z):
        samples[:, 2] = points[:, 2] + offset
        codes = paint(samples, subject.body, subject.heart if with_heart else None)
        counts += np.bincount(pixel * N_TISSUES + codes, minlength=counts.size)
    return counts.reshape(n_pixels, N_TISSUES) / (sub**2 * n_z)


def _slice_geometry(subject: EllipsoidSubject, z_mm: float) -> _SliceGeometry:
    """Tissue fractions, labels and the regional T2* pattern of one slice.

    Away from the heart, pixels sample the torso once in-plane and 3 times through-plane;
    around the heart, 2 x 2 in-plane and 5 times through-plane.
    """
    rows, cols = MATRIX
    centres = _pixel_centres(subject, z_mm, 1)
    fractions = _fractions(subject, centres.reshape(-1, 3), 1, 3, False).reshape(rows, cols, -1)
    box = _heart_box(subject, z_mm)
    fine = _pixel_centres(subject, z_mm, _IN_PLANE)
    fine = fine.reshape(rows, _IN_PLANE, cols, _IN_PLANE, 3)[box[0], :, box[1]]
    shape = fractions[box].shape
    fractions[box] = _fractions(
        subject, fine.transpose(0, 2, 1, 3, 4).reshape(-1, 3), _IN_PLANE, _THROUGH_PLANE, True
    ).reshape(shape)
    fractions = fractions.reshape(rows * cols, N_TISSUES)
    centres = centres.reshape(-1, 3)
    blood = fractions[:, _T["lv_blood"]] + fractions[:, _T["papillary"]]
    myo = fractions[:, _T["lv_myocardium"]]
    groups = np.stack([1.0 - blood - myo, blood, myo])
    coding = np.array([BACKGROUND, BLOOD_POOL, MYOCARDIUM], dtype=np.uint8)
    labels = coding[np.argmax(groups, axis=0)].reshape(rows, cols)
    _, theta, z_h = subject.heart.local(centres)
    a1, p1, a2, p2, a_long = subject.t2star_pattern
    pattern = (
        1.0
        + a1 * np.cos(theta - p1)
        + a2 * np.cos(2 * theta - p2)
        + a_long * z_h / subject.heart.endo_c_mm
    )
    return _SliceGeometry(fractions, labels, pattern, centres)


def render_subject(
    subject: EllipsoidSubject, te_ms: np.ndarray = ECHO_TIMES_MS
) -> dict[str, np.ndarray]:
    """Render a subject's three slices; the noise is seeded by the subject's seed and index.

    Args:
        subject: From :func:`draw_subject`.
        te_ms: Echo times ``[E]`` in ms.

    Returns:
        ``images`` ``[3, E, H, W]`` float32, ``labels`` ``[3, H, W]`` uint8, ``t2star_ms``
        ``[3, H, W]`` float32 (NaN where air dominates), ``rv_insertion`` ``[3, 2]`` float32
        and ``phase_encoding_axis`` ``[3]`` int8.
    """
    rows, cols = MATRIX
    slices = [_slice_geometry(subject, float(z)) for z in subject.slice_z_mm]
    in_myo = np.concatenate([g.pattern[g.labels.ravel() == MYOCARDIUM] for g in slices])
    norm = float(in_myo.mean()) if in_myo.size else 1.0
    tissues: TissueProperties = subject.tissues
    per_tissue = echo_signal(
        te_ms, tissues.s0, tissues.t2star_ms, tissues.fat_fraction, FIELD_STRENGTH_T
    )
    per_tissue[list(_MYOCARDIAL)] = 0.0
    scanner: Scanner = subject.scanner
    s0_myo = tissues.s0[_T["lv_myocardium"]]
    centre_sens = np.sqrt((np.abs(scanner.sensitivity(np.zeros((1, 3)))) ** 2).sum())
    noise_sd = 0.0 if scanner.snr is None else subject.gain * s0_myo * centre_sens / scanner.snr
    noise_rng = _subject_rng(subject.seed, subject.index, 1)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("images", "labels", "t2star_ms")}
    insertion = []
    for geometry, z in zip(slices, subject.slice_z_mm, strict=True):
        t2_myo = subject.myocardium_t2star_ms * geometry.pattern / norm
        myo_fraction = geometry.fractions[:, list(_MYOCARDIAL)].sum(axis=1)
        signal = geometry.fractions @ per_tissue
        signal += myo_fraction[:, None] * echo_signal(te_ms, s0_myo, t2_myo, 0.0, FIELD_STRENGTH_T)
        signal = (subject.gain * signal).T.reshape(-1, rows, cols)
        sens = scanner.sensitivity(geometry.centres).reshape(-1, rows, cols)
        out["images"].append(
            acquire(signal, sens, scanner, noise_sd, subject.spacing_mm, noise_rng)
        )
        out["labels"].append(geometry.labels)
        majority = np.argmax(geometry.fractions, axis=1)
        truth = tissues.t2star_ms[majority].astype(np.float64)
        myocardial = np.isin(majority, _MYOCARDIAL)
        truth[myocardial] = t2_myo[myocardial]
        truth[np.isin(majority, tissues.air_codes)] = np.nan
        out["t2star_ms"].append(truth.reshape(rows, cols).astype(np.float32))
        point = subject.heart.anterior_insertion(float(z))
        insertion.append(_scene_to_pixel(subject, point[0], point[1]))
    return {
        "images": np.stack(out["images"]),
        "labels": np.stack(out["labels"]),
        "t2star_ms": np.stack(out["t2star_ms"]),
        "rv_insertion": np.asarray(insertion, dtype=np.float32),
        "phase_encoding_axis": np.full(3, scanner.phase_axis, dtype=np.int8),
    }


def synthesize_ellipsoid_cohort(
    n_subjects: int,
    seed: int,
    *,
    snr: float | None = None,
    noise_free: bool = False,
    ideal: bool = False,
    progress: bool = False,
) -> EchoStack:
    """Synthesize a cohort of the ellipsoid phantom as an echo stack with exact truth.

    Args:
        n_subjects: Number of subjects (three slices each).
        seed: Cohort seed; the same seed gives the same bytes.
        snr: Fixed SNR for every subject instead of the per-subject draw.
        noise_free: No noise.
        ideal: Noise-free, full phase resolution, no breathing motion.
        progress: Show a progress bar.

    Returns:
        The stack with ``labels``, ``t2star_ms``, ``rv_insertion``, ``phase_encoding_axis``
        and ``field_strength_t``.
    """
    parts: dict[str, list[np.ndarray]] = {}
    subject_ids: list[str] = []
    spacing: list[float] = []
    for index in tqdm(range(n_subjects), "ellipsoid phantom", unit="subject", disable=not progress):
        subject = draw_subject(seed, index, snr=snr, noise_free=noise_free, ideal=ideal)
        for name, value in render_subject(subject).items():
            parts.setdefault(name, []).append(value)
        subject_ids += [subject.subject_id] * len(SLICE_LOCATIONS)
        spacing += [subject.spacing_mm] * len(SLICE_LOCATIONS)
    n = len(subject_ids)
    return EchoStack(
        images=np.concatenate(parts["images"]),
        te_ms=np.tile(ECHO_TIMES_MS.astype(np.float32), (n, 1)),
        subject_id=subject_ids,
        slice_location=list(SLICE_LOCATIONS) * n_subjects,
        pixel_spacing_mm=np.repeat(np.asarray(spacing, dtype=np.float32)[:, None], 2, axis=1),
        labels=np.concatenate(parts["labels"]),
        rv_insertion=np.concatenate(parts["rv_insertion"]),
        phase_encoding_axis=np.concatenate(parts["phase_encoding_axis"]),
        t2star_ms=np.concatenate(parts["t2star_ms"]),
        field_strength_t=np.full(n, FIELD_STRENGTH_T, dtype=np.float32),
    )
