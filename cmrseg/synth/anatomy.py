"""Short-axis chest anatomy of one slice, drawn as tissue maps on any grid.

Geometry is continuous (mm, image frame: ``x`` to the right = patient left, ``y`` down =
posterior) and rasterized by point sampling, so the same slice can be painted on the fine
simulation grid and at display pixel centres. Closed borders are star-shaped curves
``r(theta) = R * profile(theta)`` with smooth random Fourier profiles. The standard short-axis
orientation holds: anterior up, the RV (septum) on the image left of the LV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from cmrseg.synth.config import TISSUES, AnatomyConfig, SliceScales

__all__ = ["SliceAnatomy", "SubjectAnatomy", "TissueMaps", "draw_subject", "paint"]

_T = {name: np.uint8(i) for i, name in enumerate(TISSUES)}
_N_TABLE = 1024
_THETA = np.linspace(-math.pi, math.pi, _N_TABLE + 1)
_N_CONTOUR = 4096  # samples of the epicardial contour when locating the RV insertion
_SPINE_RADIUS_MM = 16.0  # vertebral body
_AORTA_RADIUS_MM = 11.0  # descending aorta
_MAX_TORSO_FILL = 0.96  # torso half-axes are capped at this fraction of the half FOV


@dataclass(frozen=True)
class _Profile:
    """Smooth closed radial profile ``1 + sum_k a_k cos(k t) + b_k sin(k t)``, tabulated."""

    table: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, amplitude: float, k_min: int, k_max: int) -> _Profile:
        k = np.arange(k_min, k_max + 1)
        a = amplitude * rng.standard_normal(k.size) / k
        b = amplitude * rng.standard_normal(k.size) / k
        arg = np.outer(_THETA, k)
        return cls(1.0 + np.cos(arg) @ a + np.sin(arg) @ b)

    @classmethod
    def flat(cls) -> _Profile:
        return cls(np.ones_like(_THETA))

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        return np.interp(theta, _THETA, self.table)


def _local(
    y: np.ndarray, x: np.ndarray, cy: float, cx: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame centred at (cy, cx) and rotated by ``angle`` (rad, clockwise)."""
    c, s = math.cos(angle), math.sin(angle)
    dy, dx = y - cy, x - cx
    return c * dy - s * dx, c * dx + s * dy


def _to_image(v: float, u: float, cy: float, cx: float, angle: float) -> tuple[float, float]:
    """Inverse of :func:`_local` for one point: local (v, u) -> image (y, x)."""
    c, s = math.cos(angle), math.sin(angle)
    return cy + c * v + s * u, cx + c * u - s * v


def _in_ellipse(v: np.ndarray, u: np.ndarray, half_v: float, half_u: float) -> np.ndarray:
    return (u / half_u) ** 2 + (v / half_v) ** 2 < 1.0


@dataclass(frozen=True)
class SubjectAnatomy:
    """Per-subject body and heart parameters shared by the three slices (mm, rad)."""

    torso_center: tuple[float, float]
    torso_half_axes: tuple[float, float]
    torso_angle: float
    torso_profile: _Profile
    fat_mm: float
    fat_profile: _Profile
    muscle_mm: float
    lv_center: tuple[float, float]
    heart_angle: float
    endo_radius_mm: float
    ellipticity: float
    wall_mm: float
    rv_half_angle: float
    rv_depth: float
    epicardial_fat_mm: float
    papillary_radius_mm: float
    n_trabeculations: float
    trabeculation_radius_mm: float
    t2star_phase: tuple[float, float]
    t2star_weight: tuple[float, float]
    rotation: float  # of the whole scene; "anterior" is up after undoing it


@dataclass(frozen=True)
class SliceAnatomy:
    """Everything needed to paint one slice (mm, rad, image frame)."""

    location: str
    subject: SubjectAnatomy
    scales: SliceScales
    lv_center: tuple[float, float]
    endo_profile: _Profile
    wall_profile: _Profile
    wall_range_mm: tuple[float, float]
    epi_fat_profile: _Profile
    rv_center: tuple[float, float]
    rv_half_axes: tuple[float, float]  # (perpendicular, along the LV-RV axis) of the cavity
    rv_angle: float
    rv_wall_mm: float
    rv_fat_mm: float
    papillaries: tuple[tuple[float, float, float], ...]  # (y, x, radius)
    trabeculations: tuple[tuple[float, float, float], ...]
    mediastinum_margin_mm: float
    t2star_variation: float

    def endo_radius(self, theta: np.ndarray) -> np.ndarray:
        """Endocardial radius (mm) at heart-frame angle ``theta``."""
        s = self.subject
        e = s.ellipticity
        ell = 1.0 / np.sqrt((np.cos(theta) / e) ** 2 + (np.sin(theta) * e) ** 2)
        return s.endo_radius_mm * self.scales.lv * ell * self.endo_profile(theta)

    def wall_thickness(self, theta: np.ndarray) -> np.ndarray:
        """Radial wall thickness (mm) at heart-frame angle ``theta``."""
        wall = self.subject.wall_mm * self.scales.wall * self.wall_profile(theta)
        return np.clip(wall, *self.wall_range_mm)

    def t2star_factor(self, theta: np.ndarray) -> np.ndarray:
        """Relative regional myocardial T2* ``1 + delta(theta)``, ``|delta| <= variation``."""
        (p1, p2), (w1, w2) = self.subject.t2star_phase, self.subject.t2star_weight
        delta = (w1 * np.cos(theta - p1) + w2 * np.cos(2 * theta - p2)) / (w1 + w2)
        return 1.0 + self.t2star_variation * delta

    def rv_insertion_mm(self) -> tuple[float, float]:
        """Anterior RV insertion point (y, x) in mm: where the RV mid-wall meets the epicardium.

        Of the two crossings, the anterior one is the higher on the image once the subject's
        whole-scene rotation is undone.
        """
        theta = np.linspace(-math.pi, math.pi, _N_CONTOUR, endpoint=False)
        r = self.endo_radius(theta) + self.wall_thickness(theta)
        cy, cx = self.lv_center
        a = self.subject.heart_angle
        v, u = r * np.sin(theta), r * np.cos(theta)
        y = cy + math.cos(a) * v + math.sin(a) * u
        x = cx + math.cos(a) * u - math.sin(a) * v
        rv_v, rv_u = _local(y, x, *self.rv_center, self.rv_angle)
        half_p, half_u = (h + 0.5 * self.rv_wall_mm for h in self.rv_half_axes)
        inside = (rv_u / half_u) ** 2 + (rv_v / half_p) ** 2 < 1.0
        crossings = np.flatnonzero(inside != np.roll(inside, -1))
        if crossings.size < 2:
            raise RuntimeError("RV does not meet the LV epicardium; check the RV geometry config")
        anterior = _local(y[crossings], x[crossings], cy, cx, self.subject.rotation)[0]
        best = crossings[np.argmin(anterior)]
        return float(y[best]), float(x[best])


@dataclass(frozen=True)
class TissueMaps:
    """Tissue maps of one slice on one grid.

    Attributes:
        tissue: uint8 ``[H, W]``, index into :data:`cmrseg.synth.config.TISSUES`.
        endo: bool ``[H, W]``, inside the (smooth, compact-wall) endocardial contour.
        epi: bool ``[H, W]``, inside the epicardial contour.
        t2star_factor: float32 ``[H, W]``, relative regional myocardial T2* (1 + delta).
    """

    tissue: np.ndarray
    endo: np.ndarray
    epi: np.ndarray
    t2star_factor: np.ndarray


def draw_subject(
    cfg: AnatomyConfig,
    fov_mm: tuple[float, float],
    rng: np.random.Generator,
    rotation_rad: float = 0.0,
) -> list[SliceAnatomy]:
    """Draw one subject's body and heart and return its base, mid and apex slices.

    Args:
        cfg: Anatomy distributions; every standard deviation is scaled by ``cfg.variability``.
        fov_mm: Field of view (rows, columns) in mm; the torso is centred in it.
        rng: The subject's random stream.
        rotation_rad: In-plane rotation of the whole body and heart (domain randomization).

    Returns:
        Slices in the order of ``cfg.slices`` keys (base, mid, apex).
    """
    var = cfg.variability
    irregular = cfg.border_irregularity * max(var, 0.25)
    ax, ay = cfg.torso_half_axes_mm.draw(rng, var)
    center = np.asarray(fov_mm) / 2 + 4.0 * var * rng.standard_normal(2)
    torso = SubjectAnatomy(
        torso_center=(float(center[0]), float(center[1])),
        torso_half_axes=(
            float(min(ax, _MAX_TORSO_FILL * fov_mm[1] / 2 - abs(center[1] - fov_mm[1] / 2))),
            float(min(ay, _MAX_TORSO_FILL * fov_mm[0] / 2 - abs(center[0] - fov_mm[0] / 2))),
        ),
        torso_angle=rotation_rad + math.radians(3.0 * var * rng.standard_normal()),
        torso_profile=_Profile.random(rng, 2 * irregular, 2, 5),
        fat_mm=cfg.subcutaneous_fat_mm.draw(rng, var),
        fat_profile=_Profile.random(rng, 0.3, 1, 3),
        muscle_mm=cfg.muscle_mm.draw(rng, var),
        lv_center=(0.0, 0.0),
        heart_angle=rotation_rad + math.radians(cfg.heart_rotation_deg.draw(rng, var)),
        endo_radius_mm=cfg.lv_endo_radius_mm.draw(rng, var),
        ellipticity=cfg.lv_ellipticity.draw(rng, var),
        wall_mm=cfg.wall_thickness_mm.draw(rng, var),
        rv_half_angle=math.radians(cfg.rv_half_angle_deg.draw(rng, var)),
        rv_depth=cfg.rv_depth.draw(rng, var),
        epicardial_fat_mm=cfg.epicardial_fat_mm.draw(rng, var),
        papillary_radius_mm=cfg.papillary_radius_mm.draw(rng, var),
        n_trabeculations=cfg.trabeculations.draw(rng, var),
        trabeculation_radius_mm=cfg.trabeculation_radius_mm.draw(rng, var),
        t2star_phase=tuple(rng.uniform(-math.pi, math.pi, 2)),
        t2star_weight=tuple(rng.uniform(0.3, 1.0, 2)),
        rotation=rotation_rad,
    )
    off_y, off_x = cfg.heart_offset_mm.draw(rng, var)[::-1]
    ty, tx = torso.torso_center
    subject = replace(torso, lv_center=_to_image(off_y, off_x, ty, tx, torso.torso_angle))
    return [
        _draw_slice(cfg, subject, location, scales, rng, irregular)
        for location, scales in cfg.slices.items()
    ]


def _draw_slice(
    cfg: AnatomyConfig,
    s: SubjectAnatomy,
    location: str,
    scales: SliceScales,
    rng: np.random.Generator,
    irregular: float,
) -> SliceAnatomy:
    var = cfg.variability
    shift = cfg.slice_shift_mm * var * rng.standard_normal(2)
    cy, cx = s.lv_center[0] + shift[0], s.lv_center[1] + shift[1]
    endo_profile = _Profile.random(rng, irregular, 2, 6)
    wall_profile = _Profile.random(rng, 0.12 * max(var, 0.25), 1, 3)
    epi_fat_profile = _Profile.random(rng, 1.2, 1, 4)
    r_epi = s.endo_radius_mm * scales.lv + s.wall_mm * scales.wall
    # RV cavity: an ellipse (half axes half_p across, half_u along the RV direction, centre at
    # `dist` from the LV centre) whose border crosses the circle of radius r_epi at +-psi around
    # the RV direction and reaches `depth` beyond it; the part inside the LV epicardium is LV.
    psi = s.rv_half_angle
    depth = s.rv_depth * r_epi * scales.rv
    half_p = 1.25 * r_epi * math.sin(psi) / math.sin(math.radians(60.0))
    q = math.sqrt(1.0 - (r_epi * math.sin(psi) / half_p) ** 2)
    half_u = (r_epi * (1.0 - math.cos(psi)) + depth) / (1.0 + q)
    dist = r_epi * math.cos(psi) + half_u * q
    rv_angle = s.heart_angle + math.radians(cfg.rv_direction_deg)
    rv_center = (cy + dist * math.sin(rv_angle), cx + dist * math.cos(rv_angle))
    slice_ = SliceAnatomy(
        location=location,
        subject=s,
        scales=scales,
        lv_center=(cy, cx),
        endo_profile=endo_profile,
        wall_profile=wall_profile,
        wall_range_mm=cfg.wall_thickness_range_mm,
        epi_fat_profile=epi_fat_profile,
        rv_center=rv_center,
        rv_half_axes=(half_p, half_u),
        rv_angle=rv_angle,
        rv_wall_mm=cfg.rv_wall_mm,
        rv_fat_mm=s.epicardial_fat_mm * rng.uniform(0.3, 1.2),
        papillaries=(),
        trabeculations=(),
        mediastinum_margin_mm=cfg.mediastinum_margin_mm,
        t2star_variation=cfg.myocardium_t2star_variation,
    )
    papillaries = []
    for angle_deg in cfg.papillary_angles_deg:
        theta = math.radians(angle_deg) + math.radians(10.0) * var * rng.standard_normal()
        radius = s.papillary_radius_mm * scales.papillary * rng.uniform(0.8, 1.2)
        gap = rng.uniform(-0.5, 2.0)
        rho = float(slice_.endo_radius(np.array(theta))) - radius - gap
        papillaries.append(
            (
                *_to_image(rho * math.sin(theta), rho * math.cos(theta), cy, cx, s.heart_angle),
                radius,
            )
        )
    trabeculations = []
    n_trab = round(s.n_trabeculations * scales.trabeculations)
    for _ in range(n_trab):
        # mostly along the lateral and inferior walls (image right and bottom)
        theta = rng.uniform(math.radians(-70.0), math.radians(160.0))
        radius = s.trabeculation_radius_mm * rng.uniform(0.6, 1.4)
        rho = float(slice_.endo_radius(np.array(theta))) - 0.6 * radius
        trabeculations.append(
            (
                *_to_image(rho * math.sin(theta), rho * math.cos(theta), cy, cx, s.heart_angle),
                radius,
            )
        )
    return replace(slice_, papillaries=tuple(papillaries), trabeculations=tuple(trabeculations))


def paint(anatomy: SliceAnatomy, y_mm: np.ndarray, x_mm: np.ndarray) -> TissueMaps:
    """Rasterize one slice at the points of a grid by point sampling.

    Args:
        anatomy: The slice.
        y_mm: Row coordinates of the grid points (mm from the top edge), ``[H]``.
        x_mm: Column coordinates (mm from the left edge), ``[W]``.

    Returns:
        The tissue maps on the ``[H, W]`` grid.
    """
    s = anatomy.subject
    y = y_mm.astype(np.float32)[:, None]
    x = x_mm.astype(np.float32)[None, :]
    tissue = np.full((y.shape[0], x.shape[1]), _T["air"], np.uint8)

    # torso: subcutaneous fat, chest-wall muscle, thoracic cavity (lung by default)
    ty, tx = s.torso_center
    v, u = _local(y, x, ty, tx, s.torso_angle)
    rho, theta = np.hypot(u, v), np.arctan2(v, u)
    half_x, half_y = s.torso_half_axes
    r_out = (
        half_x * half_y / np.sqrt((half_y * np.cos(theta)) ** 2 + (half_x * np.sin(theta)) ** 2)
    ) * s.torso_profile(theta)
    r_fat = r_out - s.fat_mm * s.fat_profile(theta)
    posterior = np.clip(np.sin(theta), 0.0, None) ** 4
    r_cavity = r_fat - s.muscle_mm * (1.0 + 1.5 * posterior)
    tissue[rho < r_out] = _T["subcutaneous_fat"]
    tissue[rho < r_fat] = _T["skeletal_muscle"]
    cavity = rho < r_cavity
    tissue[cavity] = _T["lung"]

    # liver (image lower left = patient right), midline mediastinum, spine and aorta
    liver_scale = anatomy.scales.liver
    liver = _in_ellipse(
        v - 0.45 * half_y, u + 0.5 * half_x, 0.6 * half_y * liver_scale, 0.5 * half_x * liver_scale
    )
    tissue[cavity & liver] = _T["liver"]
    r_post = half_y - s.fat_mm - 2.5 * s.muscle_mm
    spine_r = _SPINE_RADIUS_MM
    spine_v = r_post - 0.4 * spine_r
    heart_v = _local(
        np.float32(anatomy.lv_center[0]), np.float32(anatomy.lv_center[1]), ty, tx, s.torso_angle
    )[0]
    midline = (np.abs(u) < 22.0) & (v > heart_v) & (v < spine_v)  # posterior mediastinum
    tissue[cavity & midline & ~liver] = _T["mediastinum"]
    tissue[np.hypot(v - spine_v, u) < spine_r] = _T["spine"]
    tissue[np.hypot(v - (spine_v - 0.9 * spine_r), u - 1.4 * spine_r) < _AORTA_RADIUS_MM] = _T[
        "aorta_blood"
    ]

    # heart, evaluated in a box around it
    endo = np.zeros(tissue.shape, bool)
    epi = np.zeros(tissue.shape, bool)
    factor = np.ones(tissue.shape, np.float32)
    cy, cx = anatomy.lv_center
    reach = math.dist(anatomy.lv_center, anatomy.rv_center)
    reach += max(anatomy.rv_half_axes) + anatomy.rv_wall_mm + anatomy.rv_fat_mm
    reach = max(reach, 2.0 * (s.endo_radius_mm + s.wall_mm)) + 3.0 * s.epicardial_fat_mm + 10.0
    rows = slice(*np.searchsorted(y_mm, [cy - reach, cy + reach]))
    cols = slice(*np.searchsorted(x_mm, [cx - reach, cx + reach]))
    _paint_heart(
        anatomy,
        y[rows],
        x[:, cols],
        tissue[rows, cols],
        endo[rows, cols],
        epi[rows, cols],
        factor[rows, cols],
    )
    return TissueMaps(tissue, endo, epi, factor)


def _paint_heart(
    a: SliceAnatomy,
    y: np.ndarray,
    x: np.ndarray,
    tissue: np.ndarray,
    endo: np.ndarray,
    epi: np.ndarray,
    factor: np.ndarray,
) -> None:
    """Paint the heart into views of the slice maps (in place)."""
    s = a.subject
    cy, cx = a.lv_center
    v, u = _local(y, x, cy, cx, s.heart_angle)
    rho, theta = np.hypot(u, v), np.arctan2(v, u)
    r_endo = a.endo_radius(theta)
    r_epi = r_endo + a.wall_thickness(theta)
    fat = s.epicardial_fat_mm * np.clip(a.epi_fat_profile(theta), 0.0, None)
    rv_v, rv_u = _local(y, x, *a.rv_center, a.rv_angle)
    half_p, half_u = a.rv_half_axes
    rv_fat = _in_ellipse(
        rv_v, rv_u, half_p + a.rv_wall_mm + a.rv_fat_mm, half_u + a.rv_wall_mm + a.rv_fat_mm
    )
    rv_outer = _in_ellipse(rv_v, rv_u, half_p + a.rv_wall_mm, half_u + a.rv_wall_mm)
    rv_cavity = _in_ellipse(rv_v, rv_u, half_p, half_u)
    lv_fat = rho < r_epi + fat
    envelope = (rho < r_epi + fat + a.mediastinum_margin_mm) | _in_ellipse(
        rv_v,
        rv_u,
        half_p + a.rv_wall_mm + a.rv_fat_mm + a.mediastinum_margin_mm,
        half_u + a.rv_wall_mm + a.rv_fat_mm + a.mediastinum_margin_mm,
    )
    tissue[envelope & (tissue == _T["lung"])] = _T["mediastinum"]
    tissue[lv_fat | rv_fat] = _T["epicardial_fat"]
    tissue[rv_outer] = _T["myocardium"]
    tissue[rv_cavity] = _T["rv_blood"]
    epi[...] = rho < r_epi
    endo[...] = rho < r_endo
    tissue[epi] = _T["myocardium"]
    tissue[endo] = _T["lv_blood"]
    for py, px, radius in a.papillaries + a.trabeculations:
        tissue[(y - py) ** 2 + (x - px) ** 2 < radius**2] = _T["myocardium"]
    factor[...] = a.t2star_factor(theta)
