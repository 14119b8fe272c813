"""3-D anatomy of the ellipsoid phantom: a truncated prolate-ellipsoidal LV, a crescent RV, a torso.

Everything is defined in a scene frame in mm: x to the image right (the LV lateral wall), y to
the image bottom (posterior/inferior), z along the slice normal (base to apex); the LV centre
is the origin. The heart has its own frame (``Heart.rotation`` maps heart-local vectors to the
scene): z_h along the LV long axis, 0 at the equator of the endocardial ellipsoid and
``endo_c_mm`` at its apex, x_h lateral, y_h inferior, so the septum faces -x_h. The long axis is
tilted from the slice normal by a few degrees (imperfect planning), so short-axis planes cut the
ellipsoids obliquely.

In heart-local cylindrical coordinates (r, theta, z_h), theta = atan2(y_h, x_h) growing
clockwise on the image:

- endocardium ``r_endo = A(theta) sqrt(1 - (z_h / c_endo)^2)``, ``A`` an ellipse with small
  harmonics; the cavity is cut off at the base plane ``z_h = base_z_mm``;
- epicardium ``r_epi = (A(theta) + w(theta, z_h)) sqrt(1 - (z_h / c_epi)^2)`` with
  ``c_epi = c_endo + apex wall``, so apical planes cut small or closed rings;
- the RV occupies ``theta`` in [``rv_inferior_rad``, ``rv_anterior_rad``] around the septum,
  between ``r_epi`` and ``r_epi + d`` with a crescent depth ``d`` that vanishes at both
  insertion points and tapers towards the RV apex, wrapped by a free wall;
- papillary muscles are ellipsoids attached to the endocardium (labelled blood pool);
- epicardial fat fills an envelope around both ventricles, thicker in the grooves.

The torso is an elliptic cylinder whose axis is tilted from the slice normal, with a
subcutaneous fat layer and a muscle layer; lungs, liver, stomach and spleen are ellipsoids,
spine and descending aorta cylinders along the torso axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmrseg.synth.ellipsoid.tissues import TISSUE_NAMES

__all__ = ["Body", "Ellipsoid", "Heart", "draw_body", "draw_heart", "paint"]

_T = {name: code for code, name in enumerate(TISSUE_NAMES)}
_TWO_PI = 2.0 * np.pi


def _profile(z: np.ndarray, c: float) -> np.ndarray:
    """Radius factor of an ellipsoid of half-length ``c`` at height ``z`` (0 beyond it)."""
    return np.sqrt(np.clip(1.0 - (z / c) ** 2, 0.0, None))


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix about a unit ``axis`` by ``angle`` radians (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


@dataclass(frozen=True)
class Heart:
    """The LV, RV, papillary muscles and epicardial fat of one subject (lengths in mm).

    Attributes:
        rotation: Heart-local to scene rotation ``[3, 3]`` (columns are the local axes).
        endo_a_mm: Endocardial semi-axis along ``ellipse_angle_rad`` at the equator.
        endo_b_mm: Endocardial semi-axis across it.
        ellipse_angle_rad: Direction of ``endo_a_mm`` in the local x_h-y_h plane.
        harmonics: ``[K, 3]`` rows (order, relative amplitude, phase) roughening ``A(theta)``.
        endo_c_mm: Endocardial half-length from the equator to the apex.
        base_z_mm: Local height of the base plane (negative: towards the base).
        wall_mm: Mean wall thickness at the equator.
        wall_circ: Relative circumferential variation of the wall (first harmonic).
        wall_circ_phase_rad: Where the wall is thickest.
        wall_long: Relative change of the wall per ``endo_c_mm`` towards the apex.
        apex_wall_mm: Thickness of the apical cap.
        papillary: ``[P, 5]`` rows (theta rad, z_h mm, radial, tangential and axial semi-axes
            mm) of papillary muscles.
        rv_inferior_rad: Inferior RV insertion angle theta.
        rv_anterior_rad: Anterior RV insertion angle theta.
        rv_depth_mm: Largest depth of the RV cavity (at the base, mid-septum).
        rv_wall_mm: RV free-wall thickness.
        rv_apex_z_mm: Local height where the RV ends.
        epi_fat_mm: Epicardial fat thickness away from the grooves.
        groove_fat_mm: Extra fat in the interventricular grooves.
        mediastinum_mm: Soft tissue around the fat envelope, between heart and lungs.
    """

    rotation: np.ndarray
    endo_a_mm: float
    endo_b_mm: float
    ellipse_angle_rad: float
    harmonics: np.ndarray
    endo_c_mm: float
    base_z_mm: float
    wall_mm: float
    wall_circ: float
    wall_circ_phase_rad: float
    wall_long: float
    apex_wall_mm: float
    papillary: np.ndarray
    rv_inferior_rad: float
    rv_anterior_rad: float
    rv_depth_mm: float
    rv_wall_mm: float
    rv_apex_z_mm: float
    epi_fat_mm: float
    groove_fat_mm: float
    mediastinum_mm: float

    @property
    def epi_c_mm(self) -> float:
        """Epicardial half-length from the equator to the apex."""
        return self.endo_c_mm + self.apex_wall_mm

    @property
    def reach_mm(self) -> float:
        """A radius around the long axis outside which nothing of the heart lies."""
        extra = self.wall_mm * (1 + abs(self.wall_circ) + abs(self.wall_long) * 2)
        fat = self.epi_fat_mm + self.groove_fat_mm + self.mediastinum_mm
        return self.endo_a_mm * 1.1 + extra + self.rv_depth_mm + self.rv_wall_mm + fat + 2.0

    def local(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Heart-local cylindrical coordinates of scene points ``[N, 3]``.

        Returns:
            ``(r, theta, z_h)``, each ``[N]``; theta in [0, 2 pi).
        """
        q = points @ self.rotation
        return np.hypot(q[:, 0], q[:, 1]), np.mod(np.arctan2(q[:, 1], q[:, 0]), _TWO_PI), q[:, 2]

    def endo_radius_eq(self, theta: np.ndarray) -> np.ndarray:
        """Endocardial radius ``A(theta)`` at the equator, mm."""
        t = theta - self.ellipse_angle_rad
        a, b = self.endo_a_mm, self.endo_b_mm
        radius = a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)
        rough = 1.0 + sum(h[1] * np.cos(h[0] * theta + h[2]) for h in self.harmonics)
        return radius * rough

    def wall(self, theta: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Wall thickness at the equatorial scale, mm (at least 2 mm)."""
        circ = 1.0 + self.wall_circ * np.cos(theta - self.wall_circ_phase_rad)
        return np.maximum(self.wall_mm * (circ + self.wall_long * z / self.endo_c_mm), 2.0)

    def endo_radius(self, theta: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Endocardial radius at (theta, z_h), mm; 0 beyond the apex."""
        return self.endo_radius_eq(theta) * _profile(z, self.endo_c_mm)

    def epi_radius(self, theta: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Epicardial radius at (theta, z_h), mm; 0 beyond the apex."""
        return (self.endo_radius_eq(theta) + self.wall(theta, z)) * _profile(z, self.epi_c_mm)

    def rv_depth(self, theta: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Depth of the RV cavity outside the LV epicardium, mm (0 outside the RV)."""
        span = self.rv_anterior_rad - self.rv_inferior_rad
        u = np.clip((theta - self.rv_inferior_rad) / span, 0.0, 1.0)
        along = (z - self.base_z_mm) / (self.rv_apex_z_mm - self.base_z_mm)
        taper = np.sqrt(np.clip(1.0 - along**2, 0.0, None)) * (z >= self.base_z_mm)
        return self.rv_depth_mm * taper * np.sin(np.pi * u) ** 0.6

    def anterior_insertion(self, plane_z_mm: float) -> np.ndarray:
        """Scene point ``[3]`` of the anterior RV insertion on the LV epicardium in a plane.

        The point lies at ``theta = rv_anterior_rad`` on the epicardium, at the local height
        where that surface line crosses the scene plane ``z = plane_z_mm``.
        """
        theta = np.array([self.rv_anterior_rad])
        axis = self.rotation[:, 2]
        z_h = plane_z_mm / axis[2]
        point = np.zeros(3)
        for _ in range(6):
            r = float(self.epi_radius(theta, np.array([z_h]))[0])
            point = self.rotation @ np.array([r * np.cos(theta[0]), r * np.sin(theta[0]), z_h])
            z_h -= (point[2] - plane_z_mm) / axis[2]
        return point

    def paint(self, points: np.ndarray, codes: np.ndarray) -> None:
        """Paint mediastinum, epicardial fat, RV, LV and papillary muscles into ``codes``.

        Args:
            points: Scene points ``[N, 3]``, mm.
            codes: Tissue codes ``[N]``, modified in place.
        """
        q = points @ self.rotation
        near = (np.hypot(q[:, 0], q[:, 1]) < self.reach_mm) & (q[:, 2] > self.base_z_mm - 15.0)
        near &= q[:, 2] < self.epi_c_mm + self.reach_mm
        idx = np.flatnonzero(near)
        if idx.size == 0:
            return
        local = q[idx]
        r = np.hypot(local[:, 0], local[:, 1])
        theta = np.mod(np.arctan2(local[:, 1], local[:, 0]), _TWO_PI)
        z = local[:, 2]
        sub = codes[idx]
        endo = self.endo_radius(theta, z)
        epi = self.epi_radius(theta, z)
        below_base = z < self.base_z_mm
        depth = self.rv_depth(theta, z)
        pad = self.rv_wall_mm / np.maximum(epi, 5.0)
        in_rv_span = (theta > self.rv_inferior_rad - pad) & (theta < self.rv_anterior_rad + pad)
        rv_alive = in_rv_span & (z >= self.base_z_mm) & (z <= self.rv_apex_z_mm)
        rv_outer = np.where(rv_alive, epi + depth + self.rv_wall_mm, 0.0)
        groove = np.exp(-(((theta - self.rv_anterior_rad) / 0.3) ** 2))
        groove += np.exp(-(((theta - self.rv_inferior_rad) / 0.3) ** 2))
        fat_eq = self.epi_fat_mm + self.groove_fat_mm * groove
        envelope = (self.endo_radius_eq(theta) + self.wall(theta, z) + fat_eq) * _profile(
            z, self.epi_c_mm + self.epi_fat_mm
        )
        envelope = np.maximum(envelope, rv_outer + fat_eq * 0.5)
        sub[(r < envelope + self.mediastinum_mm)] = _T["soft_tissue"]
        sub[(r < envelope) & ~below_base] = _T["epicardial_fat"]
        sub[rv_alive & (r >= epi) & (r < rv_outer)] = _T["rv_wall"]
        sub[rv_alive & (depth > 0) & (r >= epi) & (r < epi + depth)] = _T["rv_blood"]
        sub[(r < epi) & ~below_base] = _T["lv_myocardium"]
        cavity = (r < endo) & ~below_base
        sub[cavity] = _T["lv_blood"]
        for theta_p, z_p, radial, tangential, axial in self.papillary:
            t = np.array([theta_p])
            rho = float(self.endo_radius(t, np.array([z_p]))[0]) - 0.7 * radial
            centre = np.array([rho * np.cos(theta_p), rho * np.sin(theta_p), z_p])
            delta = local - centre
            e_r = np.array([np.cos(theta_p), np.sin(theta_p), 0.0])
            e_t = np.array([-np.sin(theta_p), np.cos(theta_p), 0.0])
            blob = (
                (delta @ e_r / radial) ** 2
                + (delta @ e_t / tangential) ** 2
                + (delta[:, 2] / axial) ** 2
            ) < 1.0
            sub[blob & cavity] = _T["papillary"]
        codes[idx] = sub


@dataclass(frozen=True)
class Ellipsoid:
    """An axis-aligned ellipsoid in the scene frame, mm."""

    centre: np.ndarray
    semi: np.ndarray

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Boolean ``[N]``: which scene points ``[N, 3]`` lie inside."""
        (x, y, z), (a, b, c) = self.centre, self.semi
        return ((points[:, 0] - x) / a) ** 2 + ((points[:, 1] - y) / b) ** 2 + (
            (points[:, 2] - z) / c
        ) ** 2 < 1.0


@dataclass(frozen=True)
class Body:
    """Torso and organs around the heart of one subject (scene frame, mm).

    Attributes:
        torso_centre: A point ``[3]`` on the torso axis.
        torso_axis: Unit direction ``[3]`` of the torso (elliptic cylinder) axis.
        torso_e1: Unit vector ``[3]`` across the axis, along the semi-axis ``torso_a_mm``.
        torso_a_mm: Outer semi-axis along ``torso_e1``.
        torso_b_mm: Outer semi-axis across ``torso_e1`` and the axis.
        fat_mm: Subcutaneous fat thickness.
        muscle_mm: Thickness of the chest and back muscle layer inside the fat.
        lungs: The two lungs.
        liver: The liver.
        stomach: The stomach, or ``None``.
        spleen: The spleen, or ``None``.
        spine_centre: A point ``[3]`` on the vertebral body's axis (parallel to the torso's).
        spine_radius_mm: Radius of the vertebral body.
        aorta_centre: A point ``[3]`` on the descending aorta's axis.
        aorta_radius_mm: Radius of the descending aorta.
    """

    torso_centre: np.ndarray
    torso_axis: np.ndarray
    torso_e1: np.ndarray
    torso_a_mm: float
    torso_b_mm: float
    fat_mm: float
    muscle_mm: float
    lungs: tuple[Ellipsoid, Ellipsoid]
    liver: Ellipsoid
    stomach: Ellipsoid | None
    spleen: Ellipsoid | None
    spine_centre: np.ndarray
    spine_radius_mm: float
    aorta_centre: np.ndarray
    aorta_radius_mm: float

    def _cross_section(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates ``([N], [N])`` of points across the torso axis, along e1 and e2, mm."""
        e2 = np.cross(self.torso_axis, self.torso_e1)
        w = points - self.torso_centre
        return w @ self.torso_e1, w @ e2

    def paint(self, points: np.ndarray, codes: np.ndarray) -> None:
        """Paint torso layers and organs into ``codes`` (``[N]``, in place)."""
        s1, s2 = self._cross_section(points)

        def inside(inset_mm: float) -> np.ndarray:
            a, b = self.torso_a_mm - inset_mm, self.torso_b_mm - inset_mm
            return (s1 / a) ** 2 + (s2 / b) ** 2 < 1.0

        body = np.flatnonzero(inside(0.0))
        points, s1, s2 = points[body], s1[body], s2[body]
        sub = np.full(len(body), _T["subcutaneous_fat"], dtype=codes.dtype)
        inner = inside(self.fat_mm)
        sub[inner] = _T["skeletal_muscle"]
        cavity = inside(self.fat_mm + self.muscle_mm)
        sub[cavity] = _T["soft_tissue"]
        organs = [(lung, "lung") for lung in self.lungs] + [(self.liver, "liver")]
        organs += [(o, n) for o, n in ((self.stomach, "stomach"), (self.spleen, "spleen")) if o]
        for organ, name in organs:
            sub[cavity & organ.contains(points)] = _T[name]
        for centre, radius, name in (
            (self.spine_centre, self.spine_radius_mm, "marrow"),
            (self.aorta_centre, self.aorta_radius_mm, "aorta"),
        ):
            c1, c2 = self._cross_section(centre[None])
            sub[inner & ((s1 - c1) ** 2 + (s2 - c2) ** 2 < radius**2)] = _T[name]
        codes[body] = sub


def draw_heart(rng: np.random.Generator) -> Heart:
    """Draw one subject's heart: size (small hearts included), shape, wall, tilt, RV.

    Args:
        rng: The subject's generator (consumed in a fixed order).
    """
    scale = rng.uniform(0.65, 1.15)
    endo_a = rng.uniform(22.0, 29.0) * scale
    endo_b = endo_a * rng.uniform(0.78, 1.0)
    endo_c = rng.uniform(40.0, 55.0) * scale
    tilt = np.deg2rad(rng.uniform(0.0, 12.0))
    tilt_dir = rng.uniform(0.0, _TWO_PI)
    rotation = _rotation(np.array([np.cos(tilt_dir), np.sin(tilt_dir), 0.0]), tilt)
    harmonics = np.stack(
        [np.arange(3, 6), rng.uniform(0.0, 0.035, 3), rng.uniform(0.0, _TWO_PI, 3)], axis=1
    )
    wall = rng.uniform(4.5, 13.0)
    papillary = np.array(
        [
            [
                np.deg2rad(centre + rng.uniform(-15.0, 15.0)),
                endo_c * rng.uniform(0.1, 0.45),
                rng.uniform(2.5, 4.5) * max(scale, 0.8),
                rng.uniform(2.5, 4.5) * max(scale, 0.8),
                rng.uniform(8.0, 15.0),
            ]
            for centre in (-45.0, 110.0)
        ]
    )
    base_z = -endo_c * rng.uniform(0.25, 0.45)
    apex_wall = wall * rng.uniform(0.5, 0.9)
    return Heart(
        rotation=rotation,
        endo_a_mm=endo_a,
        endo_b_mm=endo_b,
        ellipse_angle_rad=rng.uniform(0.0, np.pi),
        harmonics=harmonics,
        endo_c_mm=endo_c,
        base_z_mm=base_z,
        wall_mm=wall,
        wall_circ=rng.uniform(0.0, 0.25),
        wall_circ_phase_rad=rng.uniform(0.0, _TWO_PI),
        wall_long=rng.uniform(-0.25, 0.1),
        apex_wall_mm=apex_wall,
        papillary=papillary,
        rv_inferior_rad=np.deg2rad(rng.uniform(105.0, 130.0)),
        rv_anterior_rad=np.deg2rad(rng.uniform(225.0, 255.0)),
        rv_depth_mm=rng.uniform(12.0, 28.0) * scale,
        rv_wall_mm=rng.uniform(2.5, 5.0),
        rv_apex_z_mm=base_z + (endo_c + apex_wall - base_z) * rng.uniform(0.7, 0.95),
        epi_fat_mm=rng.uniform(0.5, 3.0),
        groove_fat_mm=rng.uniform(1.0, 6.0),
        mediastinum_mm=rng.uniform(0.0, 6.0),
    )


def draw_body(rng: np.random.Generator, heart: Heart) -> Body:
    """Draw one subject's torso and organs around ``heart``.

    Args:
        rng: The subject's generator (consumed in a fixed order).
        heart: The subject's heart, which the organs are placed around.
    """
    reach = heart.endo_a_mm + heart.wall_mm + heart.epi_fat_mm
    tilt = np.deg2rad(rng.uniform(15.0, 35.0))
    azimuth = np.deg2rad(90.0 + rng.uniform(-25.0, 25.0)) * rng.choice([-1.0, 1.0])
    axis = np.array([np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth), np.cos(tilt)])
    e1 = np.array([1.0, 0.0, 0.0]) - axis[0] * axis
    e1 /= np.linalg.norm(e1)
    a, b = rng.uniform(125.0, 165.0), rng.uniform(85.0, 110.0)
    fat, muscle = rng.uniform(5.0, 25.0), rng.uniform(6.0, 15.0)
    b_cut = b / np.cos(tilt)  # the torso's vertical semi-axis in a slice plane, roughly
    gap = rng.uniform(10.0, 25.0)
    centre_y = b_cut - fat - muscle - reach - heart.rv_depth_mm * 0.5 - gap
    centre = np.array([rng.uniform(-35.0, -10.0), centre_y, 0.0])

    def ellipsoid(lo: list[float], hi: list[float], semi_lo: list[float], semi_hi: list[float]):
        return Ellipsoid(np.asarray(rng.uniform(lo, hi)), np.asarray(rng.uniform(semi_lo, semi_hi)))

    lungs = (
        ellipsoid([reach + 30, 0, -10], [reach + 50, 30, 20], [45, 70, 100], [60, 90, 140]),
        ellipsoid(
            [-reach - heart.rv_depth_mm - 50, -10, -10],
            [-reach - heart.rv_depth_mm - 30, 20, 20],
            [50, 70, 100],
            [65, 90, 140],
        ),
    )
    liver = ellipsoid([-35, reach + 45, 40], [0, reach + 70, 70], [90, 50, 60], [120, 70, 90])
    stomach = (
        ellipsoid([40, reach + 50, 45], [70, reach + 70, 75], [30, 22, 30], [45, 35, 45])
        if rng.uniform() < 0.5
        else None
    )
    spleen = (
        ellipsoid([95, reach + 50, 50], [125, reach + 80, 80], [25, 35, 40], [35, 50, 55])
        if rng.uniform() < 0.5
        else None
    )
    spine = centre + np.array([rng.uniform(-8.0, 8.0), b_cut - fat - rng.uniform(18.0, 28.0), 0])
    aorta = spine + np.array([rng.uniform(18.0, 30.0), -rng.uniform(18.0, 28.0), 0.0])
    return Body(
        torso_centre=centre,
        torso_axis=axis,
        torso_e1=e1,
        torso_a_mm=a,
        torso_b_mm=b,
        fat_mm=fat,
        muscle_mm=muscle,
        lungs=lungs,
        liver=liver,
        stomach=stomach,
        spleen=spleen,
        spine_centre=spine,
        spine_radius_mm=rng.uniform(13.0, 18.0),
        aorta_centre=aorta,
        aorta_radius_mm=rng.uniform(9.0, 13.0),
    )


def paint(points: np.ndarray, body: Body, heart: Heart | None) -> np.ndarray:
    """Tissue code of each scene point (torso and organs first, then the heart on top).

    Args:
        points: Scene points ``[N, 3]``, mm.
        body: The subject's torso and organs.
        heart: The subject's heart, or ``None`` where the caller knows it is far away.

    Returns:
        Codes ``[N]`` (int64) indexing :data:`cmrseg.synth.ellipsoid.tissues.TISSUE_NAMES`.
    """
    codes = np.zeros(len(points), dtype=np.int64)
    body.paint(points, codes)
    if heart is not None:
        heart.paint(points, codes)
    return codes
