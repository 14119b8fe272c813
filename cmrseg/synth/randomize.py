"""Domain randomization of the phantom (``conf/synth/preset/randomized.yaml``).

After SynthSeg (Billot et al., Med Image Anal 2023): each subject gets its own field, sequence,
coils, noise, artefacts, tissue contrast, anatomy, pose and organs, drawn from the ``randomize``
section of the config, far beyond one scanner's range. A file holds one matrix and one echo count
(echo-stack contract), so those two are drawn per file (:func:`randomize_file`, from the cohort
seed); the rest per subject (:func:`randomize_subject`, from the subject's own stream), so a
subject's draws do not depend on how many subjects are synthesized. What a
:class:`~cmrseg.synth.config.SynthConfig` cannot hold (whole-scene rotation, flips, a smooth
bias field, absent organs) is a :class:`SubjectVariation` that the phantom applies; the labels,
the RV insertion point and the true T2* map follow every one of these exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from cmrseg.synth.config import (
    ORGANS_THAT_MAY_BE_ABSENT,
    TISSUES,
    EchoConfig,
    Normal,
    NormalVector,
    RandomizeConfig,
    SubjectPlan,
    SynthConfig,
    TissueProperties,
)

__all__ = ["IDENTITY", "SubjectVariation", "randomize_file", "randomize_subject"]

_FILE_STREAM = 0x5EED_F11E  # second entropy word of the per-file stream (subjects use spawn keys)
_PER_SUBJECT_T2STAR = ("myocardium", "liver")  # T2* from the cohort, not the tissue table
_BLOOD_TISSUES = ("lv_blood", "rv_blood", "aorta_blood")


@dataclass(frozen=True)
class SubjectVariation:
    """Per-subject changes applied while painting and after reconstruction.

    Attributes:
        rotation_rad: In-plane rotation of the whole body and heart (clockwise on the image).
        flip_rows: Mirror every image, map and point top to bottom.
        flip_cols: Mirror left to right.
        bias_sd: SD of the log of the smooth multiplicative bias field (0: none).
        bias_coefficients: ``[5]`` weights of ``u, v, u^2, v^2, u v`` (``u, v`` in [-1, 1] over
            the field of view) in the log bias field, before ``bias_sd``.
        tissue_map: uint8 ``[K]``: the tissue painted in place of each tissue of ``TISSUES``.
    """

    rotation_rad: float
    flip_rows: bool
    flip_cols: bool
    bias_sd: float
    bias_coefficients: np.ndarray
    tissue_map: np.ndarray

    def bias(self, y_mm: np.ndarray, x_mm: np.ndarray, fov_mm: tuple[float, float]) -> np.ndarray:
        """Multiplicative bias field on a grid, float32 ``[H, W]`` (ones when ``bias_sd`` is 0)."""
        v = (2.0 * np.asarray(y_mm, np.float32) / fov_mm[0] - 1.0)[:, None]
        u = (2.0 * np.asarray(x_mm, np.float32) / fov_mm[1] - 1.0)[None, :]
        a = self.bias_coefficients
        log_field = a[0] * u + a[1] * v + a[2] * u**2 + a[3] * v**2 + a[4] * u * v
        return np.exp(np.float32(self.bias_sd) * log_field).astype(np.float32)


IDENTITY = SubjectVariation(
    rotation_rad=0.0,
    flip_rows=False,
    flip_cols=False,
    bias_sd=0.0,
    bias_coefficients=np.zeros(5),
    tissue_map=np.arange(len(TISSUES), dtype=np.uint8),
)


def randomize_file(cfg: SynthConfig, seed: int) -> SynthConfig:
    """The file's display matrix and echo count, drawn from ``seed`` (``cfg.randomize`` set).

    Returns:
        ``cfg`` with ``grid.shape`` and ``echoes.n_echoes`` replaced.
    """
    r = cfg.randomize
    if r is None:
        raise ValueError("randomize_file needs a config with a randomize section")
    rng = np.random.default_rng([seed, _FILE_STREAM])
    shape = [int(v) for v in r.matrix_choices[int(rng.integers(len(r.matrix_choices)))]]
    n_echoes = int(rng.integers(r.n_echoes[0], r.n_echoes[1] + 1))
    return dataclasses.replace(
        cfg,
        grid=dataclasses.replace(cfg.grid, shape=shape),
        echoes=dataclasses.replace(cfg.echoes, n_echoes=n_echoes),
    )


def _fixed(value: float) -> Normal:
    return Normal(mean=value, sd=0.0, min=value, max=value)


def _black_blood(
    tissues: dict[str, TissueProperties], r: RandomizeConfig, rng: np.random.Generator
) -> dict[str, TissueProperties]:
    """Blood pools and aorta at a fraction of the myocardial S0, with ``black_blood_probability``.

    Draws from a stream spawned from ``rng`` (its state is left as it was), so the subject's
    other draws do not depend on this option.
    """
    (own,) = rng.spawn(1)
    if not own.uniform() < r.black_blood_probability:
        return tissues
    s0 = tissues["myocardium"].s0 * r.black_blood_s0_fraction.draw(own)
    blood = {n: dataclasses.replace(tissues[n], s0=s0) for n in _BLOOD_TISSUES}
    return tissues | blood


def randomize_subject(
    cfg: SynthConfig, plan: SubjectPlan
) -> tuple[SynthConfig, SubjectPlan, SubjectVariation]:
    """Draw one subject's configuration from ``cfg.randomize`` with the subject's stream.

    Args:
        cfg: A configuration with a ``randomize`` section (matrix and echo count already those
            of the file, see :func:`randomize_file`).
        plan: The subject; its stream is consumed, its liver T2* scaled like other tissues.

    Returns:
        The subject's concrete configuration (``randomize`` None), its plan and its variation.
    """
    r = cfg.randomize
    if r is None:
        raise ValueError("randomize_subject needs a config with a randomize section")
    rng = plan.rng
    field = float(r.field_strength_t[int(rng.integers(len(r.field_strength_t)))])
    spacing = r.field_of_view_mm.draw(rng) / cfg.grid.shape[1]
    te_first, dte = r.te_first_ms.draw(rng), r.echo_spacing_ms.draw(rng)
    n_echoes = cfg.echoes.n_echoes
    echoes = EchoConfig(te_first, te_first + (n_echoes - 1) * dte, n_echoes)
    acquisition = dataclasses.replace(
        cfg.acquisition,
        phase_resolution=r.phase_resolution.draw(rng),
        n_coils=int(rng.integers(r.n_coils[0], r.n_coils[1] + 1)),
        coil_length_mm=r.coil_length_mm.draw(rng),
        snr=r.snr.draw(rng),
        ghosting_mm=r.ghosting_mm.draw(rng),
        misregistration_mm=r.misregistration_mm.draw(rng),
    )
    tissues = {}
    for name in TISSUES:
        props = cfg.tissues[name]
        s0_scale, t2_scale = r.tissue_s0_scale.draw(rng), r.tissue_t2star_scale.draw(rng)
        if name in ("air", "lung"):
            tissues[name] = props
            continue
        t2 = props.t2star_ms if name in _PER_SUBJECT_T2STAR else props.t2star_ms * t2_scale
        tissues[name] = TissueProperties(props.s0 * s0_scale, t2, props.fat_fraction)
        if name == "liver":
            plan = dataclasses.replace(plan, liver_t2star_ms=plan.liver_t2star_ms * t2_scale)
    if rng.uniform() < r.lung_signal_probability:
        tissues["lung"] = TissueProperties(r.lung_s0.draw(rng), r.lung_t2star_ms.draw(rng), 0.0)
    tissues = _black_blood(tissues, r, rng)
    anat = cfg.anatomy
    lv = r.lv_scale.draw(rng)
    wall = r.wall_thickness_mm.draw(rng)
    torso_scale = np.array([r.torso_scale.draw(rng), r.torso_scale.draw(rng)])
    anatomy = dataclasses.replace(
        anat,
        variability=r.variability.draw(rng),
        torso_half_axes_mm=NormalVector(
            list(np.asarray(anat.torso_half_axes_mm.mean) * torso_scale),
            anat.torso_half_axes_mm.sd,
        ),
        lv_endo_radius_mm=Normal(
            anat.lv_endo_radius_mm.mean * lv,
            anat.lv_endo_radius_mm.sd * lv,
            anat.lv_endo_radius_mm.min * lv,
            anat.lv_endo_radius_mm.max * lv,
        ),
        wall_thickness_mm=Normal(wall, 1.0, max(2.0, wall - 3.0), wall + 3.0),
        wall_thickness_range_mm=[2.0, 20.0],
        lv_ellipticity=_fixed(r.lv_ellipticity.draw(rng)),
        rv_half_angle_deg=_fixed(r.rv_half_angle_deg.draw(rng)),
        rv_depth=_fixed(r.rv_depth.draw(rng)),
    )
    tissue_map = np.arange(len(TISSUES), dtype=np.uint8)
    for organ, replacement in ORGANS_THAT_MAY_BE_ABSENT.items():
        if rng.uniform() >= r.organ_probability[organ]:
            tissue_map[TISSUES.index(organ)] = TISSUES.index(replacement)
    # an absent organ whose replacement is absent too (epicardial fat -> mediastinum -> lung)
    tissue_map = tissue_map[tissue_map]
    variation = SubjectVariation(
        rotation_rad=math.radians(r.rotation_deg.draw(rng)),
        flip_rows=bool(rng.uniform() < r.flip_probability),
        flip_cols=bool(rng.uniform() < r.flip_probability),
        bias_sd=r.bias_field.draw(rng),
        bias_coefficients=rng.standard_normal(5) / math.sqrt(5.0),
        tissue_map=tissue_map,
    )
    subject_cfg = dataclasses.replace(
        cfg,
        field_strength_t=field,
        grid=dataclasses.replace(cfg.grid, pixel_spacing_mm=spacing),
        echoes=echoes,
        tissues=tissues,
        anatomy=anatomy,
        acquisition=acquisition,
        randomize=None,
    )
    return subject_cfg, plan, variation
