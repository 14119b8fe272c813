"""Phantom configuration: typed, validated views of the YAML files in ``conf/synth``.

``conf/synth/defaults.yaml`` holds every physical and anatomical choice; a preset
(``conf/synth/preset/NAME.yaml``) is a diff merged on top of it, and command-line overrides are
merged last. Cohorts (``conf/synth/cohort/NAME.yaml``) list subject groups with their true
myocardial T2*. Shipped files are found by name in :data:`cmrseg.conf.CONF_DIR`; a path to any
YAML file works as well. The dataclasses below are the schema the YAML is merged onto with
OmegaConf (:func:`cmrseg.conf.load_structured`: unknown, missing and mistyped keys are refused by
name); :func:`_validate` checks the value ranges.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.conf import CONF_DIR, ConfigError, load_structured

__all__ = [
    "FIELD_STRENGTHS_T",
    "ORGANS_THAT_MAY_BE_ABSENT",
    "SAMPLING_MODES",
    "SLICE_LOCATIONS",
    "TISSUES",
    "AcquisitionConfig",
    "AnatomyConfig",
    "Cohort",
    "CohortGroup",
    "EchoConfig",
    "FatSpectrum",
    "GridConfig",
    "LiverModel",
    "Normal",
    "NormalVector",
    "R2StarLine",
    "RandomizeConfig",
    "Range",
    "Relaxation3T",
    "SliceScales",
    "SubjectPlan",
    "SynthConfig",
    "SynthConfigError",
    "TissueProperties",
    "available",
    "load_cohort",
    "load_synth_config",
]

SLICE_LOCATIONS: tuple[str, ...] = ("base", "mid", "apex")
SAMPLING_MODES: tuple[str, ...] = ("kspace", "area_mean")
FIELD_STRENGTHS_T: tuple[float, ...] = (1.5, 3.0)
TISSUES: tuple[str, ...] = (
    "air",
    "lung",
    "subcutaneous_fat",
    "skeletal_muscle",
    "mediastinum",
    "epicardial_fat",
    "spine",
    "liver",
    "aorta_blood",
    "lv_blood",
    "rv_blood",
    "myocardium",
)
_PER_SUBJECT_T2STAR = ("myocardium", "liver")
#: Tissues a randomized subject may lack, each with the tissue that takes its place.
ORGANS_THAT_MAY_BE_ABSENT: dict[str, str] = {
    "subcutaneous_fat": "air",
    "mediastinum": "lung",
    "epicardial_fat": "mediastinum",
    "spine": "skeletal_muscle",
    "liver": "lung",
    "aorta_blood": "mediastinum",
}
_NO_SIGNAL = ("air", "lung")


class SynthConfigError(ConfigError):
    """A phantom configuration or cohort file is missing or invalid (names file and key)."""


# --------------------------------------------------------------------------- config dataclasses


@dataclass
class Normal:
    """A truncated normal draw ``clip(mean + variability * sd * z, min, max)``."""

    mean: float
    sd: float
    min: float
    max: float

    def draw(self, rng: np.random.Generator, variability: float) -> float:
        """Draw one value with the standard deviation scaled by ``variability``."""
        value = self.mean + variability * self.sd * rng.standard_normal()
        return float(np.clip(value, self.min, self.max))


@dataclass
class NormalVector:
    """Independent normal draws per component (no truncation)."""

    mean: list[float]
    sd: list[float]

    def draw(self, rng: np.random.Generator, variability: float) -> np.ndarray:
        """Draw one vector, float64 ``[len(mean)]``."""
        z = rng.standard_normal(len(self.mean))
        return np.asarray(self.mean) + variability * np.asarray(self.sd) * z


@dataclass
class Range:
    """A uniform draw in ``[low, high]``, log-uniform when ``log``."""

    low: float
    high: float
    log: bool

    def draw(self, rng: np.random.Generator) -> float:
        """Draw one value."""
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))


@dataclass
class GridConfig:
    """Display grid.

    Attributes:
        shape: [rows, columns]; rows are the phase-encoding (anterior-posterior) direction.
        pixel_spacing_mm: Isotropic display pixel spacing.
        oversampling: Anatomy is drawn on a grid this many times finer per axis.
    """

    shape: list[int]
    pixel_spacing_mm: float
    oversampling: int


@dataclass
class EchoConfig:
    """Evenly spaced echo times from ``te_first_ms`` to ``te_last_ms``."""

    te_first_ms: float
    te_last_ms: float
    n_echoes: int

    @property
    def te_ms(self) -> np.ndarray:
        """Echo times, float32 ``[E]``."""
        return np.linspace(self.te_first_ms, self.te_last_ms, self.n_echoes).astype(np.float32)


@dataclass
class FatSpectrum:
    """Multi-peak fat spectrum: shifts in ppm relative to water and relative amplitudes."""

    ppm: list[float]
    relative_amplitude: list[float]


@dataclass
class TissueProperties:
    """Signal parameters of one tissue (``t2star_ms`` is ``None`` where the cohort sets it)."""

    s0: float
    t2star_ms: float | None
    fat_fraction: float


@dataclass
class R2StarLine:
    """A published line ``R2*(3 T) = slope * R2*(1.5 T) + intercept_per_s`` (R2* = 1/T2*)."""

    slope: float
    intercept_per_s: float

    def t2star_3t_ms(self, t2star_15_ms: np.ndarray | float) -> np.ndarray:
        """T2* at 3 T (ms) of a tissue with ``t2star_15_ms`` at 1.5 T, never longer than it."""
        r2_15 = 1000.0 / np.asarray(t2star_15_ms, np.float64)
        r2_3 = np.maximum(self.slope * r2_15 + self.intercept_per_s, r2_15)
        return 1000.0 / r2_3


@dataclass
class Relaxation3T:
    """How 1.5 T T2* values become 3 T ones: myocardium, liver, every other tissue."""

    myocardium: R2StarLine
    liver: R2StarLine
    other: R2StarLine

    def line(self, tissue: str) -> R2StarLine:
        """The line of one tissue of :data:`TISSUES`."""
        return {"myocardium": self.myocardium, "liver": self.liver}.get(tissue, self.other)


@dataclass
class SliceScales:
    """Scale factors of one slice location relative to the base."""

    lv: float
    wall: float
    rv: float
    papillary: float
    trabeculations: float
    liver: float


@dataclass
class AnatomyConfig:
    """Distributions of the anatomy; see ``conf/synth/defaults.yaml`` for units and meaning."""

    variability: float
    myocardium_t2star_variation: float
    torso_half_axes_mm: NormalVector
    subcutaneous_fat_mm: Normal
    muscle_mm: Normal
    heart_offset_mm: NormalVector
    heart_rotation_deg: Normal
    lv_endo_radius_mm: Normal
    lv_ellipticity: Normal
    wall_thickness_mm: Normal
    wall_thickness_range_mm: list[float]
    border_irregularity: float
    rv_direction_deg: float
    rv_half_angle_deg: Normal
    rv_depth: Normal
    rv_wall_mm: float
    epicardial_fat_mm: Normal
    papillary_angles_deg: list[float]
    papillary_radius_mm: Normal
    trabeculations: Normal
    trabeculation_radius_mm: Normal
    mediastinum_margin_mm: float
    slice_shift_mm: float
    slices: dict[str, SliceScales]


@dataclass
class AcquisitionConfig:
    """Simulated acquisition; see ``conf/synth/defaults.yaml`` for the SNR definition."""

    sampling: str
    n_coils: int
    coil_length_mm: float
    phase_resolution: float
    snr: float | None
    snr_reference_t2star_ms: float
    ghosting_mm: float
    respiratory_cycles: float
    heartbeats: int
    misregistration_mm: float


@dataclass
class RandomizeConfig:
    """Domain randomization (SynthSeg style); see ``conf/synth/preset/randomized.yaml``.

    Per file (from the cohort seed): the display matrix and the number of echoes. Per subject
    (from its stream): everything else, replacing the corresponding fixed values or
    distributions of the base configuration.
    """

    matrix_choices: list[list[int]]
    n_echoes: list[int]
    field_strength_t: list[float]
    field_of_view_mm: Range
    te_first_ms: Range
    echo_spacing_ms: Range
    phase_resolution: Range
    n_coils: list[int]
    coil_length_mm: Range
    snr: Range
    ghosting_mm: Range
    misregistration_mm: Range
    bias_field: Range
    variability: Range
    lv_scale: Range
    wall_thickness_mm: Range
    lv_ellipticity: Range
    rv_half_angle_deg: Range
    rv_depth: Range
    torso_scale: Range
    rotation_deg: Range
    flip_probability: float
    tissue_s0_scale: Range
    tissue_t2star_scale: Range
    lung_signal_probability: float
    lung_s0: Range
    lung_t2star_ms: Range
    organ_probability: dict[str, float]
    black_blood_probability: float
    black_blood_s0_fraction: Range


@dataclass
class SynthConfig:
    """The whole phantom configuration (defaults merged with a preset and overrides).

    Tissue and cohort T2* values are at 1.5 T; at ``field_strength_t`` 3.0 they are converted
    by :meth:`t2star_at_field` (``relaxation_3t``).
    """

    field_strength_t: float
    grid: GridConfig
    echoes: EchoConfig
    fat_spectrum: FatSpectrum
    tissues: dict[str, TissueProperties]
    relaxation_3t: Relaxation3T
    anatomy: AnatomyConfig
    acquisition: AcquisitionConfig
    randomize: RandomizeConfig | None

    def t2star_at_field(self, tissue: str, t2star_15_ms: np.ndarray | float) -> np.ndarray:
        """T2* (ms) of ``tissue`` at ``field_strength_t`` from its value at 1.5 T.

        Args:
            tissue: A name of :data:`TISSUES`.
            t2star_15_ms: T2* at 1.5 T, ms, any shape.

        Returns:
            float64 array of the same shape: unchanged at 1.5 T; at 3 T by the published
            R2* line of the tissue (``relaxation_3t``; Storey et al., JMRI 2007).
        """
        if self.field_strength_t == 1.5:
            return np.asarray(t2star_15_ms, np.float64)
        return self.relaxation_3t.line(tissue).t2star_3t_ms(t2star_15_ms)


# --------------------------------------------------------------------------- cohort dataclasses


@dataclass
class LiverModel:
    """Log-normal liver T2*, loosely tied to the myocardial T2*.

    ``log T2*_liver = log median + heart_exponent * log(T2*_myo / heart_reference_ms)
    + log_sd * z``, clipped to ``[min_ms, max_ms]``.
    """

    median_t2star_ms: float
    heart_reference_ms: float
    heart_exponent: float
    log_sd: float
    min_ms: float
    max_ms: float

    def draw(self, rng: np.random.Generator, myocardium_t2star_ms: float) -> float:
        """Draw the liver T2* (ms) of one subject."""
        log_t2 = (
            math.log(self.median_t2star_ms)
            + self.heart_exponent * math.log(myocardium_t2star_ms / self.heart_reference_ms)
            + self.log_sd * rng.standard_normal()
        )
        return float(np.clip(math.exp(log_t2), self.min_ms, self.max_ms))


@dataclass(frozen=True)
class CohortGroup:
    """Subjects sharing a T2* rule: fixed values, or ``n_subjects`` draws from ``distribution``."""

    name: str
    myocardium_t2star_ms: tuple[float, ...] | None
    distribution: Normal | None
    n_subjects: int
    liver: LiverModel


@dataclass(frozen=True)
class SubjectPlan:
    """One resolved subject: its key, group, true T2* values and random stream."""

    index: int
    subject_id: str
    group: str
    myocardium_t2star_ms: float
    liver_t2star_ms: float
    rng: np.random.Generator = dataclasses.field(repr=False, compare=False)


@dataclass(frozen=True)
class Cohort:
    """A list of subject groups, numbered ``S0001``.. in order."""

    name: str
    groups: tuple[CohortGroup, ...]

    @property
    def n_subjects(self) -> int:
        """Total number of subjects."""
        return sum(g.n_subjects for g in self.groups)

    def plan(self, seed: int, n_subjects: int | None = None) -> list[SubjectPlan]:
        """Resolve the first ``n_subjects`` subjects for ``seed``.

        Subject ``k`` draws from its own stream ``SeedSequence(seed, spawn_key=(k,))``, so a
        subject's data do not depend on how many subjects are synthesized.

        Raises:
            SynthConfigError: ``n_subjects`` is not within ``1 .. self.n_subjects``.
        """
        n = self.n_subjects if n_subjects is None else n_subjects
        if not 1 <= n <= self.n_subjects:
            raise SynthConfigError(
                f"--subjects: cohort {self.name!r} has {self.n_subjects} subjects, asked for {n}"
            )
        plans: list[SubjectPlan] = []
        index = 0
        for group in self.groups:
            for j in range(group.n_subjects):
                if index == n:
                    return plans
                rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
                if group.myocardium_t2star_ms is not None:
                    t2_myo = group.myocardium_t2star_ms[j]
                else:
                    t2_myo = group.distribution.draw(rng, 1.0)  # type: ignore[union-attr]
                t2_liver = group.liver.draw(rng, t2_myo)
                plans.append(
                    SubjectPlan(index, f"S{index + 1:04d}", group.name, t2_myo, t2_liver, rng)
                )
                index += 1
        return plans


# --------------------------------------------------------------------------- loading


def available(kind: str) -> list[str]:
    """Names of the shipped ``preset`` or ``cohort`` files."""
    return sorted(p.stem for p in (CONF_DIR / "synth" / kind).glob("*.yaml"))


def _resolve(kind: str, name_or_path: str | os.PathLike[str], folder: Path | None = None) -> Path:
    """A shipped config by name, or a file path (relative to ``folder`` when given)."""
    text = os.fspath(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        path = Path(text) if folder is None else folder / text
        if not path.is_file():
            raise SynthConfigError(f"{path}: {kind} file not found")
        return path
    path = CONF_DIR / "synth" / kind / f"{text}.yaml"
    if not path.is_file():
        raise SynthConfigError(f"unknown {kind} {text!r}; choose from {available(kind)} or a path")
    return path


def _validate(cfg: SynthConfig, where: str) -> None:
    def need(ok: bool, key: str, problem: str) -> None:
        if not ok:
            raise SynthConfigError(f"{where}: {key}: {problem}")

    need(len(cfg.grid.shape) == 2, "grid.shape", "must be [rows, columns]")
    need(
        cfg.field_strength_t in FIELD_STRENGTHS_T,
        "field_strength_t",
        f"must be one of {FIELD_STRENGTHS_T} (tesla; relaxation is published for these)",
    )
    for name in ("myocardium", "liver", "other"):
        line = getattr(cfg.relaxation_3t, name)
        need(line.slope >= 1, f"relaxation_3t.{name}", "slope must be >= 1")
    rows, cols = cfg.grid.shape
    need(rows > 0 and cols > 0, "grid.shape", "must be positive")
    need(cfg.grid.pixel_spacing_mm > 0, "grid.pixel_spacing_mm", "must be > 0")
    need(cfg.grid.oversampling >= 1, "grid.oversampling", "must be >= 1")
    need(cfg.echoes.n_echoes >= 2, "echoes.n_echoes", "must be >= 2")
    need(0 <= cfg.echoes.te_first_ms < cfg.echoes.te_last_ms, "echoes", "need 0 <= first < last")
    need(
        len(cfg.fat_spectrum.ppm) == len(cfg.fat_spectrum.relative_amplitude) > 0,
        "fat_spectrum",
        "ppm and relative_amplitude must have the same non-zero length",
    )
    need(
        set(cfg.tissues) == set(TISSUES),
        "tissues",
        f"must list exactly {list(TISSUES)}",
    )
    for name, tissue in cfg.tissues.items():
        key = f"tissues.{name}"
        need(tissue.s0 >= 0, key, "s0 must be >= 0")
        need(0 <= tissue.fat_fraction <= 1, key, "fat_fraction must be in [0, 1]")
        if name in _PER_SUBJECT_T2STAR or name in _NO_SIGNAL:
            need(tissue.t2star_ms is None, key, "t2star_ms must be null (set per subject/none)")
        else:
            need(tissue.t2star_ms is not None and tissue.t2star_ms > 0, key, "t2star_ms > 0")
    anat = cfg.anatomy
    for key in ("torso_half_axes_mm", "heart_offset_mm"):
        vector = getattr(anat, key)
        need(len(vector.mean) == len(vector.sd) == 2, f"anatomy.{key}", "mean, sd: 2 values each")
    need(anat.variability >= 0, "anatomy.variability", "must be >= 0")
    need(
        0 <= anat.myocardium_t2star_variation < 0.5,
        "anatomy.myocardium_t2star_variation",
        "must be in [0, 0.5)",
    )
    need(len(anat.wall_thickness_range_mm) == 2, "anatomy.wall_thickness_range_mm", "[low, high]")
    low, high = anat.wall_thickness_range_mm
    need(0 < low < high, "anatomy.wall_thickness_range_mm", "need 0 < low < high")
    need(
        set(anat.slices) == set(SLICE_LOCATIONS),
        "anatomy.slices",
        f"must list exactly {list(SLICE_LOCATIONS)}",
    )
    acq = cfg.acquisition
    need(acq.sampling in SAMPLING_MODES, "acquisition.sampling", f"one of {SAMPLING_MODES}")
    if acq.sampling == "area_mean":
        need(
            acq.phase_resolution == 1.0 and acq.ghosting_mm == 0 and acq.misregistration_mm == 0,
            "acquisition",
            "sampling area_mean needs phase_resolution 1.0, ghosting_mm 0, misregistration_mm 0",
        )
    need(acq.n_coils >= 1, "acquisition.n_coils", "must be >= 1")
    need(0 < acq.phase_resolution <= 1, "acquisition.phase_resolution", "must be in (0, 1]")
    need(acq.snr is None or acq.snr > 0, "acquisition.snr", "must be > 0 or null")
    need(acq.ghosting_mm >= 0, "acquisition.ghosting_mm", "must be >= 0")
    need(acq.misregistration_mm >= 0, "acquisition.misregistration_mm", "must be >= 0")
    need(acq.heartbeats >= 1, "acquisition.heartbeats", "must be >= 1")
    if cfg.randomize is not None:
        _validate_randomize(cfg.randomize, need)


def _validate_randomize(r: RandomizeConfig, need: Any) -> None:
    need(
        bool(r.matrix_choices) and all(len(m) == 2 and min(m) >= 32 for m in r.matrix_choices),
        "randomize.matrix_choices",
        "need [rows, columns] pairs of at least 32",
    )
    for key in ("n_echoes", "n_coils"):
        pair = getattr(r, key)
        need(len(pair) == 2 and 1 <= pair[0] <= pair[1], f"randomize.{key}", "[min, max], >= 1")
    need(r.n_echoes[0] >= 2, "randomize.n_echoes", "min must be >= 2")
    need(
        bool(r.field_strength_t) and set(r.field_strength_t) <= set(FIELD_STRENGTHS_T),
        "randomize.field_strength_t",
        f"choices among {FIELD_STRENGTHS_T}",
    )
    for f in dataclasses.fields(r):
        value = getattr(r, f.name)
        if isinstance(value, Range):
            need(value.low <= value.high, f"randomize.{f.name}", "need low <= high")
            need(not value.log or value.low > 0, f"randomize.{f.name}", "log needs low > 0")
    for key in (
        "field_of_view_mm",
        "te_first_ms",
        "echo_spacing_ms",
        "coil_length_mm",
        "snr",
        "black_blood_s0_fraction",
    ):
        need(getattr(r, key).low > 0, f"randomize.{key}", "must be > 0")
    need(
        r.phase_resolution.low > 0 and r.phase_resolution.high <= 1,
        "randomize.phase_resolution",
        "must lie in (0, 1]",
    )
    probabilities = {
        "flip_probability": r.flip_probability,
        "lung_signal_probability": r.lung_signal_probability,
        "black_blood_probability": r.black_blood_probability,
        **{f"organ_probability.{k}": v for k, v in r.organ_probability.items()},
    }
    for key, value in probabilities.items():
        need(0 <= value <= 1, f"randomize.{key}", "probability in [0, 1]")
    need(
        set(r.organ_probability) == set(ORGANS_THAT_MAY_BE_ABSENT),
        "randomize.organ_probability",
        f"must list exactly {list(ORGANS_THAT_MAY_BE_ABSENT)}",
    )


def load_synth_config(
    preset: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None
) -> SynthConfig:
    """Load ``defaults.yaml`` merged with a preset and optional overrides.

    Args:
        preset: A shipped preset name (``clean``, ``clinical``, ``hard``, ``ideal``) or a path to
            a preset YAML (a diff of ``defaults.yaml``).
        overrides: A nested mapping merged last, e.g. ``{"acquisition": {"snr": 20.0}}``.

    Returns:
        The validated configuration.

    Raises:
        SynthConfigError: A file is missing or unreadable, or a key is unknown, missing or invalid.
    """
    preset_path = _resolve("preset", preset)
    sources = [
        CONF_DIR / "synth" / "defaults.yaml",
        preset_path,
        *([overrides] if overrides else []),
    ]
    cfg = load_structured(SynthConfig, sources, error=SynthConfigError)
    _validate(cfg, str(preset_path))
    return cfg


@dataclass
class _FixedGroup:
    """A cohort group with one listed myocardial T2* per subject, the list ``repeat`` times."""

    name: str
    myocardium_t2star_ms: list[float]
    liver: LiverModel
    repeat: int = 1


@dataclass
class _DrawnGroup:
    """A cohort group of ``n_subjects`` with myocardial T2* drawn from a distribution."""

    name: str
    n_subjects: int
    myocardium_t2star_ms: Normal
    liver: LiverModel


@dataclass
class _CohortFile:
    """A cohort YAML: name, groups (:class:`_FixedGroup` or :class:`_DrawnGroup`), base cohort."""

    name: str
    groups: list[Any]
    base: str | None = None


_Layers = list[dict[str, Any]]


def _cohort_groups(path: Path, seen: tuple[Path, ...] = ()) -> tuple[str, list[_Layers]]:
    """Name and groups of a cohort file, each group as its layers (base cohort's first)."""
    if path.resolve() in seen:
        raise SynthConfigError(f"{path}: base cohorts form a cycle")
    data = load_structured(_CohortFile, [path], error=SynthConfigError)
    for i, raw in enumerate(data.groups):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise SynthConfigError(f"{path}: groups[{i}]: expected a mapping with a name")
    if data.base is None:
        return data.name, [[raw] for raw in data.groups]
    base = _resolve("cohort", data.base, path.parent)
    _, groups = _cohort_groups(base, (*seen, path.resolve()))
    by_name = {layers[0]["name"]: layers for layers in groups}
    for raw in data.groups:
        if raw["name"] in by_name:
            by_name[raw["name"]].append(raw)
        else:
            groups.append([raw])
    return data.name, groups


def load_cohort(cohort: str | os.PathLike[str]) -> Cohort:
    """Load a cohort YAML by shipped name (``paper``) or path.

    Each group has ``name``, ``liver`` (see :class:`LiverModel`) and either a list
    ``myocardium_t2star_ms`` of fixed values (one subject each; optional ``repeat: N`` takes
    the list N times over, a new heart each time), or ``n_subjects`` plus a mapping
    ``myocardium_t2star_ms: {mean, sd, min, max}`` drawn per subject. With ``base: OTHER`` (a
    shipped name, or a path relative to this file) the file starts from that cohort's groups: a
    group of the same name takes the keys given here over the base group's (e.g. only
    ``repeat: 8``), a new name is added after them.

    Raises:
        SynthConfigError: The file is missing or invalid.
    """
    path = _resolve("cohort", cohort)
    name, raw_groups = _cohort_groups(path)
    groups: list[CohortGroup] = []
    for i, layers in enumerate(raw_groups):
        where = f"{path}: groups[{i}]"
        t2star = [raw["myocardium_t2star_ms"] for raw in layers if "myocardium_t2star_ms" in raw]
        if t2star and isinstance(t2star[-1], list):
            fixed = load_structured(_FixedGroup, layers, name=where, error=SynthConfigError)
            values = tuple(fixed.myocardium_t2star_ms)
            if not values or min(values) <= 0:
                raise SynthConfigError(f"{where}.myocardium_t2star_ms: need positive values")
            if fixed.repeat < 1:
                raise SynthConfigError(f"{where}.repeat: need >= 1, got {fixed.repeat}")
            values *= fixed.repeat
            groups.append(CohortGroup(fixed.name, values, None, len(values), fixed.liver))
        else:
            drawn = load_structured(_DrawnGroup, layers, name=where, error=SynthConfigError)
            dist = drawn.myocardium_t2star_ms
            if drawn.n_subjects < 1 or dist.min <= 0 or dist.min > dist.max:
                raise SynthConfigError(f"{where}: need n_subjects >= 1 and 0 < min <= max")
            groups.append(CohortGroup(drawn.name, None, dist, drawn.n_subjects, drawn.liver))
    if not groups:
        raise SynthConfigError(f"{path}: no groups")
    return Cohort(name, tuple(groups))
