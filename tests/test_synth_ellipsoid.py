"""The second phantom (``cmrseg.synth.ellipsoid``): valid files, exact truth, its CLI."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cmrseg.cli.synth import main
from cmrseg.core.labels import BACKGROUND, BLOOD_POOL, MYOCARDIUM
from cmrseg.data.echo_stack import inspect_echo_stack, read_echo_stack, write_echo_stack
from cmrseg.synth.ellipsoid import (
    ECHO_TIMES_MS,
    FIELD_STRENGTH_T,
    draw_subject,
    render_subject,
    synthesize_ellipsoid_cohort,
)
from cmrseg.synth.ellipsoid.tissues import echo_signal

SEED = 11
N_SUBJECTS = 3


@pytest.fixture(scope="module")
def cohort_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ellipsoid") / "cohort.h5"
    write_echo_stack(path, synthesize_ellipsoid_cohort(N_SUBJECTS, SEED))
    return path


@pytest.fixture(scope="module")
def cohort(cohort_path):
    return read_echo_stack(cohort_path)


def test_file_follows_the_contract(cohort_path, cohort):
    info = inspect_echo_stack(cohort_path)
    assert (info.n_slices, info.n_echoes) == (3 * N_SUBJECTS, len(ECHO_TIMES_MS))
    assert {"labels", "t2star_ms", "rv_insertion", "phase_encoding_axis", "field_strength_t"} <= (
        info.datasets
    )
    assert info.subjects == [f"S{i:04d}" for i in range(1, N_SUBJECTS + 1)]
    assert list(info.slice_location) == ["base", "mid", "apex"] * N_SUBJECTS
    np.testing.assert_allclose(info.te_ms[0], np.linspace(2.97, 21.68, 8), rtol=1e-6)
    assert np.all(info.field_strength_t == FIELD_STRENGTH_T)
    assert np.all(np.isfinite(info.rv_insertion))
    assert cohort.images.max() > 0


def test_base_and_mid_labels_are_rings_around_the_blood_pool(cohort):
    for i, location in enumerate(cohort.slice_location):
        labels = cohort.labels[i]
        assert (labels == MYOCARDIUM).any(), (i, location)
        if location == "apex":
            continue
        blood = labels == BLOOD_POOL
        assert blood.sum() > 20, (i, location)
        ring = ndimage.binary_dilation(blood) & ~blood
        assert np.all(labels[ring] == MYOCARDIUM), (i, location)  # nothing else touches it
        assert ndimage.label(blood)[1] == 1
        assert not (ndimage.binary_fill_holes(labels != BACKGROUND) & (labels == BACKGROUND)).any()


def test_true_map_keeps_each_subjects_myocardial_t2star(cohort):
    for index in range(N_SUBJECTS):
        drawn = draw_subject(SEED, index).myocardium_t2star_ms
        rows = slice(3 * index, 3 * index + 3)
        values = cohort.t2star_ms[rows][cohort.labels[rows] == MYOCARDIUM]
        assert np.all(np.isfinite(values))
        np.testing.assert_allclose(values.mean(), drawn, rtol=1e-4)
        assert 0.005 < values.std() / drawn < 0.2  # a smooth regional variation, not a constant
    outside = cohort.t2star_ms[cohort.labels == BACKGROUND]
    assert np.isnan(outside).any() and np.isfinite(outside).any()  # air; other tissues


def test_rv_insertion_is_on_the_anterior_septal_epicardium(cohort):
    for i, location in enumerate(cohort.slice_location):
        if location == "apex":
            continue
        row, col = cohort.rv_insertion[i]
        myo = np.argwhere(cohort.labels[i] == MYOCARDIUM)
        assert np.min(np.hypot(myo[:, 0] - row, myo[:, 1] - col)) < 3.0
        lv_row, lv_col = np.argwhere(cohort.labels[i] != BACKGROUND).mean(axis=0)
        angle = np.degrees(np.arctan2(lv_row - row, col - lv_col))  # image up = +90
        assert 60.0 < angle < 180.0, angle  # up and to the septal (left) side


def test_noise_free_myocardium_decays_with_the_true_t2star():
    subject = draw_subject(SEED, 1, ideal=True)
    out = render_subject(subject)
    mid = 1
    depth = ndimage.distance_transform_edt(out["labels"][mid] == MYOCARDIUM)
    row, col = np.unravel_index(np.argmax(depth), depth.shape)
    signal = out["images"][mid, :, row, col].astype(np.float64)
    slope = np.polyfit(ECHO_TIMES_MS, np.log(signal), 1)[0]
    np.testing.assert_allclose(-1.0 / slope, out["t2star_ms"][mid, row, col], rtol=0.01)


def test_fat_beats_across_echoes():
    fat = np.abs(echo_signal(ECHO_TIMES_MS, 1.0, 1e9, 1.0, 1.5))
    assert np.any(np.diff(fat) > 0) and np.any(np.diff(fat) < 0)
    water = np.abs(echo_signal(ECHO_TIMES_MS, 1.0, 20.0, 0.0, 1.5))
    np.testing.assert_allclose(water, np.exp(-ECHO_TIMES_MS / 20.0))


def test_same_seed_same_subject_other_seed_other_anatomy(cohort):
    again = render_subject(draw_subject(SEED, 0))
    np.testing.assert_array_equal(again["images"], cohort.images[:3])
    np.testing.assert_array_equal(again["labels"], cohort.labels[:3])
    first = draw_subject(SEED, 0)
    fixed = draw_subject(SEED, 0, snr=5.0)  # another SNR, same anatomy
    assert fixed.scanner.snr == 5.0 and fixed.heart.endo_a_mm == first.heart.endo_a_mm
    other = draw_subject(SEED + 1, 0)
    assert other.heart.endo_a_mm != first.heart.endo_a_mm
    assert not np.array_equal(render_subject(other)["labels"], cohort.labels[:3])


def test_cli_writes_an_ellipsoid_cohort(tmp_path):
    out = tmp_path / "e.h5"
    args = [str(out), "--anatomy", "ellipsoid", "--subjects", "1", "--seed", "4", "--snr", "none"]
    assert main([*args, "--no-progress"]) == 0
    info = inspect_echo_stack(out)
    assert info.n_slices == 3 and "t2star_ms" in info.datasets


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--preset", "clean"], "--preset clean"),
        (["--cohort", "paper"], "--cohort paper"),
        (["--field-strength", "3.0"], "--field-strength 3"),
    ],
)
def test_cli_refuses_what_the_ellipsoid_phantom_cannot_honour(tmp_path, capsys, extra, named):
    out = tmp_path / "e.h5"
    assert main([str(out), "--anatomy", "ellipsoid", "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cmrseg-synth: error: {named}") and "\n" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
