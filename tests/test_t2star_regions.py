"""Sector, AHA-segment and septal-ROI geometry (cmrseg.core) and the T2* wall core."""

from __future__ import annotations

import numpy as np
import pytest

from cmrseg.core.geometry import (
    aha_segment_map,
    estimate_rv_insertion,
    lv_centroid,
    sector_map,
    septal_roi_mask,
)
from cmrseg.t2star import core_erosion_px, estimate_rv_insertion_from_image, wall_core_mask

CENTER = (64.0, 64.0)
ENDO_RADIUS, EPI_RADIUS = 18.0, 27.0


def ring_labels(center: tuple[float, float] = CENTER, size: int = 129) -> np.ndarray:
    rows, cols = np.indices((size, size), dtype=float)
    radius = np.hypot(rows - center[0], cols - center[1])
    labels = np.zeros((size, size), dtype=np.uint8)
    labels[radius < EPI_RADIUS] = 2
    labels[radius < ENDO_RADIUS] = 1
    return labels


def point_at(angle_deg: float, radius: float, center: tuple[float, float] = CENTER) -> tuple:
    """(row, col) at a counterclockwise-as-displayed angle: rows grow downward."""
    theta = np.radians(angle_deg)
    return center[0] - radius * np.sin(theta), center[1] + radius * np.cos(theta)


def test_centroid_is_the_lv_center() -> None:
    assert lv_centroid(ring_labels()) == pytest.approx(CENTER)
    with pytest.raises(ValueError, match="no LV"):
        lv_centroid(np.zeros((8, 8), dtype=np.uint8))


@pytest.mark.parametrize("rv_angle", [120.0, 90.0, 200.0, 10.0, 300.0, 359.0])
def test_each_sector_is_60_degrees_counterclockwise_from_the_rv_insertion(rv_angle: float) -> None:
    labels = ring_labels()
    rv = point_at(rv_angle, EPI_RADIUS)
    sectors = sector_map(labels, rv)
    assert set(np.unique(sectors)) == {0, 1, 2, 3, 4, 5, 6}
    assert np.all((sectors > 0) == (labels == 2))
    mid_wall = (ENDO_RADIUS + EPI_RADIUS) / 2
    for k in range(1, 7):
        for within in (5.0, 30.0, 55.0):  # sector k spans [a + (k - 2) * 60, a + (k - 1) * 60)
            row, col = point_at(rv_angle + (k - 2) * 60 + within, mid_wall)
            assert sectors[round(row), round(col)] == k, (rv_angle, k, within)
    areas = np.bincount(sectors.ravel())[1:]
    assert areas.max() / areas.min() < 1.1


def test_standard_orientation_gives_anatomical_sectors() -> None:
    labels = ring_labels()
    sectors = sector_map(labels, point_at(120.0, EPI_RADIUS))  # RV insertion upper left
    mid_wall = round((ENDO_RADIUS + EPI_RADIUS) / 2)
    row0, col0 = 64, 64
    assert sectors[row0 - mid_wall, col0] == 1  # top: anterior
    assert sectors[row0 - 10, col0 - mid_wall] == 2  # left, above: anteroseptal
    assert sectors[row0 + 10, col0 - mid_wall] == 3  # left, below: inferoseptal
    assert sectors[row0 + mid_wall, col0] == 4  # bottom: inferior
    assert sectors[row0 + 10, col0 + mid_wall] == 5  # right, below: inferolateral
    assert sectors[row0 - 10, col0 + mid_wall] == 6  # right, above: anterolateral


def test_unusable_reference_points_are_refused() -> None:
    labels = ring_labels()
    with pytest.raises(ValueError, match="NaN"):
        sector_map(labels, (np.nan, np.nan))
    with pytest.raises(ValueError, match="centroid"):
        sector_map(labels, CENTER)


@pytest.mark.parametrize("rv_angle", [120.0, 45.0])
def test_aha_segments_per_slice_location(rv_angle: float) -> None:
    labels = ring_labels()
    rv = point_at(rv_angle, EPI_RADIUS)
    sectors = sector_map(labels, rv)
    base = aha_segment_map(labels, rv, "base")
    mid = aha_segment_map(labels, rv, "mid")
    apex = aha_segment_map(labels, rv, "apex")
    assert base.dtype == np.uint8 and np.array_equal(base, sectors)
    assert np.array_equal(mid, np.where(sectors > 0, sectors + 6, 0))
    assert set(np.unique(apex)) == {0, 13, 14, 15, 16}
    mid_wall = (ENDO_RADIUS + EPI_RADIUS) / 2
    # septal segment 14 centred on the septum (a + 60), then 15, 16, 13 counterclockwise
    for segment, center in ((14, 60.0), (15, 150.0), (16, 240.0), (13, 330.0)):
        for within in (-40.0, 0.0, 40.0):
            row, col = point_at(rv_angle + center + within, mid_wall)
            assert apex[round(row), round(col)] == segment
    with pytest.raises(ValueError, match="slice_location"):
        aha_segment_map(labels, rv, "")


def test_septal_roi_is_a_full_thickness_window_on_the_septum() -> None:
    labels = ring_labels()
    roi = septal_roi_mask(labels, point_at(120.0, EPI_RADIUS), width_deg=60.0)
    assert np.all(labels[roi] == 2)
    assert np.nonzero(roi)[1].max() < 64  # image left
    # full thickness: the ROI spans endocardium to epicardium along the horizontal
    assert roi[64, 64 - int(ENDO_RADIUS)] and roi[64, 64 - int(EPI_RADIUS) + 1]
    assert not roi[64 - 22, 64] and not roi[64 + 22, 64]


def test_wall_core_erodes_along_the_phase_encoding_axis() -> None:
    labels = np.zeros((30, 30), dtype=np.uint8)
    labels[10:16, 5:25] = 2  # horizontal wall, 6 rows thick
    labels[16:20, 5:25] = 1
    along_rows = wall_core_mask(labels, 1, phase_encoding_axis=0)
    assert np.array_equal(np.unique(np.nonzero(along_rows)[0]), np.arange(11, 15))
    assert np.array_equal(np.unique(np.nonzero(along_rows)[1]), np.arange(5, 25))
    along_cols = wall_core_mask(labels, 1, phase_encoding_axis=1)
    assert np.array_equal(np.unique(np.nonzero(along_cols)[0]), np.arange(10, 16))
    assert np.array_equal(np.unique(np.nonzero(along_cols)[1]), np.arange(6, 24))
    isotropic = wall_core_mask(labels, 1, phase_encoding_axis=-1)
    assert isotropic.sum() == 4 * 18
    assert np.array_equal(wall_core_mask(labels, 0, 0), labels == 2)
    with pytest.raises(ValueError, match="phase_encoding_axis"):
        wall_core_mask(labels, 1, phase_encoding_axis=2)


@pytest.mark.parametrize(
    ("spacing_mm", "expected_px"), [(0.7, 4), (1.4, 2), (1.40625, 2), (2.8, 1), (1.2, 3)]
)
def test_core_erosion_of_3_mm_in_pixels(spacing_mm: float, expected_px: int) -> None:
    # 3 / 1.2 = 2.5 rounds half up
    for axis in (0, 1, -1):
        assert core_erosion_px(3.0, (spacing_mm, spacing_mm), axis) == expected_px


def test_core_erosion_uses_the_spacing_along_the_phase_encoding_axis() -> None:
    spacing_mm = (0.7, 2.8)  # (row, column)
    assert core_erosion_px(3.0, spacing_mm, 0) == 4
    assert core_erosion_px(3.0, np.array(spacing_mm, np.float32), np.int8(1)) == 1
    assert core_erosion_px(3.0, spacing_mm, -1) == 2  # mean 1.75 mm: 1.71 px
    assert core_erosion_px(0.1, spacing_mm, 1) == 1  # at least 1 px above 0 mm
    assert core_erosion_px(0.0, spacing_mm, 0) == 0
    with pytest.raises(ValueError, match="phase_encoding_axis"):
        core_erosion_px(3.0, spacing_mm, 2)
    with pytest.raises(ValueError, match="pixel_spacing_mm"):
        core_erosion_px(3.0, (1.4, np.nan), 0)
    with pytest.raises(ValueError, match="pixel_spacing_mm"):
        core_erosion_px(3.0, (1.4,), 0)
    with pytest.raises(ValueError, match="erosion_mm"):
        core_erosion_px(-1.0, spacing_mm, 0)


def test_rv_insertion_estimate_from_standard_orientation() -> None:
    labels = ring_labels()
    row, col = estimate_rv_insertion(labels, 120.0)
    assert (row, col) == pytest.approx(point_at(120.0, EPI_RADIUS - 0.5), abs=0.8)
    assert estimate_rv_insertion(np.zeros((8, 8), dtype=np.uint8), 120.0) is None


def _slice_with_rv(arc_deg: tuple[float, float] | None, seed: int = 0) -> tuple:
    """Two-echo images of the ring LV: blood 200 -> 180, wall 100 -> 40, RV cavity over ``arc``."""
    labels = ring_labels()
    rows, cols = np.indices(labels.shape, dtype=float)
    radius = np.hypot(rows - CENTER[0], cols - CENTER[1])
    angle = np.degrees(np.arctan2(-(rows - CENTER[0]), cols - CENTER[1])) % 360.0
    early = np.where(labels == 1, 200.0, np.where(labels == 2, 100.0, 5.0))
    late = np.where(labels == 1, 180.0, np.where(labels == 2, 40.0, 5.0))
    if arc_deg is not None:
        low, high = arc_deg
        rv = (radius > EPI_RADIUS) & (radius < EPI_RADIUS + 14) & ((angle - low) % 360 < high - low)
        early, late = np.where(rv, 180.0, early), np.where(rv, 150.0, late)
    noise = np.random.default_rng(seed).normal(0.0, 3.0, (2, *labels.shape))
    return np.abs(np.stack([early, late]) + noise), labels


def test_rv_insertion_is_found_from_the_rv_blood_pool() -> None:
    images, labels = _slice_with_rv((100.0, 220.0))
    found = estimate_rv_insertion_from_image(images, labels)
    assert found is not None and found.confidence > 0.9
    assert found.contact_arc_deg == pytest.approx(120.0, abs=8.0)
    row0, col0 = lv_centroid(labels)
    angle = np.degrees(np.arctan2(-(found.point[0] - row0), found.point[1] - col0)) % 360.0
    assert angle == pytest.approx(100.0, abs=4.0)  # the clockwise end: sector 2 is septal
    assert np.hypot(found.point[0] - row0, found.point[1] - col0) == pytest.approx(27.0, abs=1.5)
    # rotated heart: the estimate follows the image, not a fixed orientation
    images, labels = _slice_with_rv((10.0, 130.0), seed=1)
    found = estimate_rv_insertion_from_image(images, labels)
    angle = np.degrees(np.arctan2(-(found.point[0] - row0), found.point[1] - col0)) % 360.0
    assert angle == pytest.approx(10.0, abs=4.0)


def test_rv_insertion_is_not_guessed_without_an_rv() -> None:
    images, labels = _slice_with_rv(None)
    assert estimate_rv_insertion_from_image(images, labels) is None
    # bright all around the LV (no septal arc to anchor on)
    images, labels = _slice_with_rv((0.0, 360.0))
    assert estimate_rv_insertion_from_image(images, labels) is None
    # two arcs of equal length: no confidence
    images, labels = _slice_with_rv((20.0, 100.0))
    other, _ = _slice_with_rv((200.0, 280.0))
    found = estimate_rv_insertion_from_image(np.maximum(images, other), labels)
    assert found is not None and found.confidence < 0.5
