"""Synthetic phantom: configs, contract fields, determinism, anatomy, exact truth, CLI."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from scipy.special import gammaln

from cmrseg.cli.info import summarize
from cmrseg.cli.synth import main
from cmrseg.data.echo_stack import inspect_echo_stack, read_echo_stack, write_echo_stack
from cmrseg.synth import (
    SynthConfigError,
    load_cohort,
    load_synth_config,
    synthesize_cohort,
    synthesize_subject,
)
from cmrseg.synth.acquisition import GYROMAGNETIC_MHZ_PER_T, fat_phasors, multi_echo_signal
from cmrseg.synth.config import TISSUES, available

PAPER_T2STAR_MS = [
    38.9, 20.12, 12.6, 30.56, 13.6, 28.9, 20.4, 4.09, 2.92, 3.7, 7.6, 11.70, 11.90, 6.02, 6.52,
    3.98, 41.02, 43.02, 36, 20, 13.85, 7.6, 27.03, 14.19, 5.5, 7, 34, 15.9, 39.9, 36.6, 5.2, 7.3,
    6.5, 17.9, 2.1, 24.9, 14.3,
]  # fmt: skip
NO_ARTEFACTS = {"acquisition": {"ghosting_mm": 0.0, "misregistration_mm": 0.0}}


@pytest.fixture(scope="module")
def cohort():
    return load_cohort("paper")


@pytest.fixture(scope="module")
def clinical(cohort):
    return synthesize_cohort(load_synth_config("clinical"), cohort, seed=11, n_subjects=2)


@pytest.fixture(scope="module")
def clinical_slices(cohort):
    cfg = load_synth_config("clinical")
    return synthesize_subject(cfg, cohort.plan(5, 1)[0])


@pytest.mark.parametrize(
    ("name", "times", "healthy"),
    [("paper_x8", 8, 104), ("paper_x20", 20, 260), ("paper_x40", 40, 520)],
)
def test_large_cohorts_repeat_the_paper_patients_with_new_healthy_volunteers(
    cohort, name: str, times: int, healthy: int
) -> None:
    large = load_cohort(name)
    assert large.n_subjects == 37 * times + healthy
    patients = [p.myocardium_t2star_ms for p in cohort.plan(0, 51) if p.group == "thalassemia"]
    plans = large.plan(0, large.n_subjects)
    assert [p.myocardium_t2star_ms for p in plans if p.group == "thalassemia"] == patients * times
    assert sum(p.group == "healthy" for p in plans) == healthy
    assert len({p.subject_id for p in plans}) == large.n_subjects


def _fit_t2star_ms(te_ms: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """Log-linear mono-exponential fit of ``signal [E, P]`` (exact for noise-free decays)."""
    design = np.stack([np.ones_like(te_ms), -te_ms], axis=1).astype(float)
    coef, *_ = np.linalg.lstsq(design, np.log(signal.astype(float)), rcond=None)
    return 1.0 / coef[1]


def _wall_fit_t2star_ms(te_ms: np.ndarray, images: np.ndarray, labels: np.ndarray) -> float:
    """Nonlinear fit of the mean myocardial signal per echo (the paper's method)."""
    from scipy.optimize import curve_fit

    signal = images[:, labels == 2].mean(axis=1).astype(float)
    (_, t2), _ = curve_fit(
        lambda te, s0, t2: s0 * np.exp(-te / t2), te_ms, signal, p0=(signal[0] * 1.2, 20.0)
    )
    return float(t2)


# --------------------------------------------------------------------------- configuration


def test_presets_model_the_acquisition():
    assert set(available("preset")) >= {"clean", "clinical", "hard", "ideal"}
    clean, clinical, hard = (load_synth_config(p) for p in ("clean", "clinical", "hard"))
    for cfg in (clean, clinical, hard):
        assert cfg.acquisition.sampling == "kspace"
        assert cfg.acquisition.phase_resolution == 0.4
        assert cfg.grid.shape == [192, 256]
        np.testing.assert_allclose(cfg.echoes.te_ms[[0, -1]], [2.97, 21.68], rtol=1e-6)
        assert np.diff(cfg.echoes.te_ms) == pytest.approx(2.673, abs=1e-3)
    assert 20 <= clinical.acquisition.snr <= 40
    assert clean.acquisition.snr > clinical.acquisition.snr > hard.acquisition.snr
    assert clean.acquisition.ghosting_mm == clean.acquisition.misregistration_mm == 0
    assert 0 < clinical.acquisition.ghosting_mm < hard.acquisition.ghosting_mm
    assert hard.anatomy.variability > clinical.anatomy.variability
    ideal = load_synth_config("ideal")
    assert ideal.acquisition.snr is None and ideal.acquisition.sampling == "area_mean"


def test_bad_configs_are_refused(tmp_path, cohort):
    with pytest.raises(SynthConfigError, match="unknown preset"):
        load_synth_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("acquisition:\n  snrr: 3\n")
    with pytest.raises(SynthConfigError, match="snrr"):
        load_synth_config(bad)
    bad.write_text("acquisition:\n  phase_resolution: 1.5\n")
    with pytest.raises(SynthConfigError, match="phase_resolution"):
        load_synth_config(bad)
    bad.write_text("name: x\ngroups:\n  - name: g\n    myocardium_t2star_ms: [-1]\n    liver: {}\n")
    with pytest.raises(SynthConfigError):
        load_cohort(bad)
    with pytest.raises(SynthConfigError, match="51 subjects"):
        cohort.plan(0, 52)


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [
        (
            "acquisition:\n  snr: 20\n",
            {"anatomy": {"wall": 1.0}},
            r"overrides: unknown key 'anatomy\.wall'",
        ),
        ("grid:\n  oversampling: 1.5\n", None, r"preset\.yaml: grid\.oversampling: Value '1\.5'"),
        (
            "acquisition:\n  ghosting_mm: .inf\n",
            None,
            r"acquisition\.ghosting_mm: expected a finite",
        ),
        ("grid:\n  shape: [192]\n", None, r"preset\.yaml: grid\.shape: must be \[rows, columns\]"),
        (
            "tissues:\n  bone: {s0: 1.0, t2star_ms: 1.0, fat_fraction: 0.0}\n",
            None,
            "tissues: must list",
        ),
    ],
)
def test_phantom_config_is_checked_by_key(tmp_path, preset, overrides, message):
    path = tmp_path / "preset.yaml"
    path.write_text(preset)
    with pytest.raises(SynthConfigError, match=message):
        load_synth_config(path, overrides)


@pytest.mark.parametrize(
    ("group", "message"),
    [
        (
            "myocardium_t2star_ms: [20.0]\n    n_subjects: 1",
            r"groups\[0\]: unknown key 'n_subjects'",
        ),
        (
            "myocardium_t2star_ms: {mean: 30.0, sd: 1.0, min: 20.0, max: 40.0}",
            r"groups\[0\]: missing key 'n_subjects'",
        ),
        (
            "myocardium_t2star_ms: [20.0, oops]",
            r"groups\[0\]: myocardium_t2star_ms\[1\]: Value 'oops'",
        ),
        ("myocardium_t2star_ms: [20.0]\n    repeat: 0", r"groups\[0\]\.repeat: need >= 1, got 0"),
    ],
)
def test_cohort_groups_are_checked_by_key(tmp_path, group, message):
    path = tmp_path / "cohort.yaml"
    liver = (
        "{median_t2star_ms: 6.0, heart_reference_ms: 37.0, heart_exponent: 0.5, log_sd: 0.6, "
        "min_ms: 1.0, max_ms: 35.0}"
    )
    path.write_text(f"name: x\ngroups:\n  - name: g\n    {group}\n    liver: {liver}\n")
    with pytest.raises(SynthConfigError, match=message):
        load_cohort(path)


def test_a_cohort_file_can_start_from_another(tmp_path, cohort):
    path = tmp_path / "derived.yaml"
    path.write_text(
        "name: derived\nbase: paper\ngroups:\n"
        "  - name: healthy\n    n_subjects: 3\n    myocardium_t2star_ms: {sd: 0.5}\n"
        "  - name: extra\n    myocardium_t2star_ms: [9.0]\n"
        "    liver: {median_t2star_ms: 6.0, heart_reference_ms: 37.0, heart_exponent: 0.5, "
        "log_sd: 0.6, min_ms: 1.0, max_ms: 35.0}\n"
    )
    derived = load_cohort(path)
    assert derived.name == "derived"
    assert [g.name for g in derived.groups] == ["thalassemia", "healthy", "extra"]
    assert derived.groups[0] == cohort.groups[0]
    healthy = derived.groups[1]
    assert healthy.n_subjects == 3 and healthy.liver == cohort.groups[1].liver
    assert healthy.distribution == dataclasses.replace(cohort.groups[1].distribution, sd=0.5)
    assert derived.groups[2].myocardium_t2star_ms == (9.0,)
    # a base given as a path is found beside the file that names it, wherever the caller is
    elsewhere = tmp_path / "cohorts"
    elsewhere.mkdir()
    (elsewhere / "more.yaml").write_text("name: more\nbase: derived.yaml\ngroups: []\n")
    path.rename(elsewhere / "derived.yaml")
    assert load_cohort(elsewhere / "more.yaml").groups == derived.groups


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: no_such_cohort\ngroups: []", r"unknown cohort 'no_such_cohort'"),
        ("base: {self}\ngroups: []", r"base cohorts form a cycle"),
        ("base: paper\ngroups:\n  - name: healthy\n    repeat: 2", r"unknown key 'repeat'"),
    ],
)
def test_bad_base_cohorts_are_refused(tmp_path, text, message):
    path = tmp_path / "derived.yaml"
    path.write_text("name: derived\n" + text.format(self=path))
    with pytest.raises(SynthConfigError, match=message):
        load_cohort(path)


def test_paper_cohort(cohort):
    assert cohort.n_subjects == 51
    plans = cohort.plan(seed=3)
    assert [p.subject_id for p in plans[:2]] == ["S0001", "S0002"]
    assert plans[-1].subject_id == "S0051"
    assert [p.myocardium_t2star_ms for p in plans[:37]] == pytest.approx(PAPER_T2STAR_MS)
    healthy = np.array([p.myocardium_t2star_ms for p in plans[37:]])
    assert np.all((healthy >= 25) & (healthy <= 52)) and 30 < healthy.mean() < 44
    liver = np.array([p.liver_t2star_ms for p in plans])
    assert np.median(liver[:37]) < np.median(liver[37:])  # iron overload lowers liver T2*
    again = cohort.plan(seed=3, n_subjects=40)
    assert [p.liver_t2star_ms for p in again] == [p.liver_t2star_ms for p in plans[:40]]


# --------------------------------------------------------------------------- signal model


def test_fat_water_voxels_oscillate():
    cfg = load_synth_config("clinical")
    te = cfg.echoes.te_ms
    main_peak_hz = -3.40 * GYROMAGNETIC_MHZ_PER_T * cfg.field_strength_t
    assert main_peak_hz == pytest.approx(-217.1, abs=0.5)
    fat = fat_phasors(cfg.fat_spectrum, cfg.field_strength_t, te)
    water = np.abs(multi_echo_signal(100.0, 0.0, 30.0, te, fat))
    mixed = np.abs(multi_echo_signal(100.0, 0.4, 30.0, te, fat))
    assert np.all(np.diff(water) < 0)
    assert np.any(np.diff(mixed) > 0)  # in/out of phase across echoes
    np.testing.assert_allclose(water, 100 * np.exp(-te / 30.0), rtol=1e-6)


# --------------------------------------------------------------------------- field strength


def test_3t_relaxation_follows_the_published_lines():
    """Storey et al., JMRI 2007: heart R2*(3T) = 1.88 R2*(1.5T) - 15 /s, liver 2.00 and -11 /s."""
    at_3t = load_synth_config("clinical", {"field_strength_t": 3.0})
    at_15 = load_synth_config("clinical")
    assert float(at_15.t2star_at_field("myocardium", 37.0)) == 37.0
    heart = at_3t.t2star_at_field("myocardium", np.array([37.0, 20.0, 10.0, 5.0, 2.1]))
    np.testing.assert_allclose(1000 / heart, 1.88 * 1000 / np.array([37, 20, 10, 5, 2.1]) - 15)
    assert float(heart[0]) == pytest.approx(27.9, abs=0.05)
    assert float(heart[3]) == pytest.approx(2.77, abs=0.01)
    liver = float(at_3t.t2star_at_field("liver", 25.0))
    assert 1000 / liver == pytest.approx(2.0 * 40 - 11)
    muscle = float(at_3t.t2star_at_field("skeletal_muscle", 28.0))
    assert muscle == pytest.approx(28.0 / 1.28)
    # the heart line would lengthen a long T2* (R2* below 17 /s): never longer than at 1.5 T
    assert float(at_3t.t2star_at_field("myocardium", 150.0)) == pytest.approx(150.0)


def test_3t_phantom_truth_signal_and_file(cohort, tmp_path):
    cfg = load_synth_config("ideal", {"field_strength_t": 3.0})
    stack = synthesize_cohort(cfg, cohort, seed=2, n_subjects=1)
    assert stack.field_strength_t.tolist() == [3.0] * 3
    plan = cohort.plan(2, 1)[0]
    expected = float(cfg.t2star_at_field("myocardium", plan.myocardium_t2star_ms))
    assert expected < 0.8 * plan.myocardium_t2star_ms
    te = stack.te_ms[0]
    for images, labels, truth in zip(stack.images, stack.labels, stack.t2star_ms, strict=True):
        assert truth[labels == 2].mean() == pytest.approx(expected, rel=1e-4)
        core = ndimage.binary_erosion(labels == 2, iterations=2)
        np.testing.assert_allclose(_fit_t2star_ms(te, images[:, core]), truth[core], rtol=2e-4)
    # same anatomy and labels as at 1.5 T: only the physics changes
    at_15 = synthesize_cohort(load_synth_config("ideal"), cohort, seed=2, n_subjects=1)
    np.testing.assert_array_equal(stack.labels, at_15.labels)
    muscle = TISSUES.index("skeletal_muscle")
    tissue = synthesize_subject(cfg, cohort.plan(2, 1)[0])[0].tissue
    ratio = stack.t2star_ms[0][tissue == muscle] / at_15.t2star_ms[0][tissue == muscle]
    np.testing.assert_allclose(ratio, 1 / 1.28, rtol=1e-5)


def test_fat_shift_doubles_at_3t():
    cfg = load_synth_config("clinical", {"field_strength_t": 3.0})
    assert -3.40 * GYROMAGNETIC_MHZ_PER_T * cfg.field_strength_t == pytest.approx(-434.1, abs=0.5)
    # one full cycle of the main peak takes 2.3 ms at 3 T, 4.6 ms at 1.5 T
    te = np.array([0.0, 1000 / 434.2, 1000 / 217.1])
    main_peak = type(cfg.fat_spectrum)(ppm=[-3.4], relative_amplitude=[1.0])
    np.testing.assert_allclose(fat_phasors(main_peak, 3.0, te)[:2].real, [1, 1], atol=1e-3)
    np.testing.assert_allclose(fat_phasors(main_peak, 1.5, te)[[0, 2]].real, [1, 1], atol=1e-3)


# --------------------------------------------------------------------------- contract


def test_contract_fields(clinical, tmp_path):
    n = 6
    assert clinical.images.shape == (n, 8, 192, 256) and clinical.images.dtype == np.float32
    assert np.isfinite(clinical.images).all() and (clinical.images >= 0).all()
    assert clinical.te_ms.shape == (n, 8)
    assert clinical.subject_id == ["S0001"] * 3 + ["S0002"] * 3
    assert clinical.slice_location == ["base", "mid", "apex"] * 2
    np.testing.assert_allclose(clinical.pixel_spacing_mm, 1.40625)
    assert clinical.labels.dtype == np.uint8 and set(np.unique(clinical.labels)) == {0, 1, 2}
    assert clinical.phase_encoding_axis.tolist() == [0] * n
    assert clinical.rv_insertion.shape == (n, 2) and np.isfinite(clinical.rv_insertion).all()
    truth = clinical.t2star_ms
    assert np.isfinite(truth[clinical.labels > 0]).all()
    assert np.isnan(truth[:, :3, :3]).all()  # air in the image corners
    write_echo_stack(tmp_path / "s.h5", clinical)
    back = read_echo_stack(tmp_path / "s.h5")
    np.testing.assert_array_equal(back.images, clinical.images)


def test_deterministic_per_seed(cohort, clinical):
    cfg = load_synth_config("clinical")
    first = synthesize_cohort(cfg, cohort, seed=11, n_subjects=1)
    for name in ("images", "labels", "t2star_ms", "rv_insertion"):
        a, b = getattr(first, name), getattr(clinical, name)[:3]
        assert a.tobytes() == b.tobytes(), name  # same subject whatever --subjects is
    other = synthesize_cohort(cfg, cohort, seed=12, n_subjects=1)
    assert not np.array_equal(other.images, first.images)
    assert not np.array_equal(other.labels, first.labels)


# --------------------------------------------------------------------------- anatomy and truth


def test_labels_are_traced_sensibly(clinical):
    area_mm2 = float(np.prod(clinical.pixel_spacing_mm[0]))
    for labels in clinical.labels:
        myo = (labels == 2).sum() * area_mm2
        pool = (labels == 1).sum() * area_mm2
        assert 300 < myo < 4500 and pool > 100
        wall_mm = math.sqrt((myo + pool) / math.pi) - math.sqrt(pool / math.pi)
        assert 5.0 < wall_mm < 13.0
        # the blood pool is enclosed by myocardium, and both are one piece
        assert not (ndimage.binary_dilation(labels == 1) & (labels == 0)).any()
        assert ndimage.label(labels == 2)[1] == 1 and ndimage.label(labels == 1)[1] == 1
    area = (clinical.labels > 0).sum(axis=(1, 2))
    assert area[0] > area[2] and area[3] > area[5]  # shrinking towards the apex


def test_orientation_and_rv_insertion(clinical_slices):
    rv = TISSUES.index("rv_blood")
    for s in clinical_slices:
        heart = s.labels > 0
        cy, cx = ndimage.center_of_mass(heart)
        rv_rows, rv_cols = np.nonzero(s.tissue == rv)
        assert rv_cols.mean() < cx  # RV on the image left of the LV (septum left)
        row, col = s.rv_insertion
        assert row < cy  # anterior (up)
        border = heart & ~ndimage.binary_erosion(heart)
        rr, cc = np.nonzero(border)
        assert np.hypot(rr - row, cc - col).min() < 2.5  # on the LV epicardium
        # the RV cavity touches the epicardium near the insertion point
        assert np.hypot(rv_rows - row, rv_cols - col).min() < 4.0


def test_true_map_mean_equals_cohort_value(clinical, cohort):
    plans = cohort.plan(11, 2)
    for i in range(clinical.n_slices):
        values = clinical.t2star_ms[i][clinical.labels[i] == 2]
        target = plans[i // 3].myocardium_t2star_ms
        assert values.mean() == pytest.approx(target, rel=1e-4)
        spread = values.std() / values.mean()
        assert 0.005 < spread < 0.08  # mild smooth regional variation


def test_ideal_noise_free_signal_gives_true_t2star(cohort):
    stack = synthesize_cohort(load_synth_config("ideal"), cohort, seed=2, n_subjects=1)
    te = stack.te_ms[0]
    for images, labels, truth in zip(stack.images, stack.labels, stack.t2star_ms, strict=True):
        core = ndimage.binary_erosion(labels == 2, iterations=2)  # away from partial volume
        fitted = _fit_t2star_ms(te, images[:, core])
        np.testing.assert_allclose(fitted, truth[core], rtol=2e-4)


def test_blood_blurs_into_the_wall_along_phase(cohort):
    """Normal heart (38.9 ms): the 40 % phase-resolution acquisition reads T2* higher."""
    ideal = synthesize_cohort(load_synth_config("ideal"), cohort, seed=4, n_subjects=1)
    noise_free = {"acquisition": {**NO_ARTEFACTS["acquisition"], "snr": None}}
    blurred = synthesize_cohort(
        load_synth_config("clinical", noise_free), cohort, seed=4, n_subjects=1
    )
    te = ideal.te_ms[0].astype(float)
    for i in range(3):
        truth = float(ideal.t2star_ms[i][ideal.labels[i] == 2].mean())
        bias_ideal = _wall_fit_t2star_ms(te, ideal.images[i], ideal.labels[i]) / truth - 1
        bias_blur = _wall_fit_t2star_ms(te, blurred.images[i], ideal.labels[i]) / truth - 1
        assert np.array_equal(ideal.labels[i], blurred.labels[i])
        assert 0 <= bias_ideal < 0.06
        assert bias_blur > bias_ideal


def test_noise_floor_and_snr(clinical_slices, cohort):
    n_coils = load_synth_config("clinical").acquisition.n_coils
    # mean of the noncentral-chi (here central: no signal) RSS magnitude of n_coils coils
    chi_mean = math.sqrt(2) * math.exp(gammaln(n_coils + 0.5) - gammaln(n_coils))
    air = TISSUES.index("air")
    for s in clinical_slices:
        # columns left of the body: free of ghosts, which run along the phase direction (rows)
        body_cols = np.nonzero((s.tissue != air).any(axis=0))[0]
        background = s.images[-1][:, : max(body_cols.min() - 4, 1)]
        assert background.size > 100
        assert background.mean() / s.sigma == pytest.approx(chi_mean, rel=0.08)


# --------------------------------------------------------------------------- command line


def test_cli_writes_a_valid_file(tmp_path):
    out = tmp_path / "phantom.h5"
    code = main([str(out), "--subjects", "1", "--seed", "3", "--preset", "clean", "--no-progress"])
    assert code == 0
    info = inspect_echo_stack(out)
    assert info.n_slices == 3 and info.subject_id == ("S0001",) * 3
    assert {"labels", "rv_insertion", "t2star_ms", "phase_encoding_axis"} <= info.datasets
    assert info.field_strength_t.tolist() == [1.5] * 3
    summary = summarize(str(out))
    assert "field strength  {'1.5 T': 3}" in summary and "slices          3 of 8 echoes" in summary


def test_cli_field_strength_3t(tmp_path):
    out = tmp_path / "phantom_3t.h5"
    args = [str(out), "--subjects", "1", "--preset", "clean", "--field-strength", "3.0"]
    assert main([*args, "--no-progress"]) == 0
    stack = read_echo_stack(out)
    assert stack.field_strength_t.tolist() == [3.0] * 3
    cfg = load_synth_config("clean", {"field_strength_t": 3.0})
    expected = float(cfg.t2star_at_field("myocardium", PAPER_T2STAR_MS[0]))
    assert stack.t2star_ms[0][stack.labels[0] == 2].mean() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    "args",
    [
        ["--subjects", "99"],
        ["--preset", "nope"],
        ["--cohort", "missing.yaml"],
        ["--field-strength", "7.0"],
    ],
)
def test_cli_refuses_bad_input(tmp_path, capsys, args):
    out = tmp_path / "phantom.h5"
    assert main([str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cmrseg-synth: error:")
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args", [["--subjects", "0"], ["--seed", "-1"], ["--snr", "x"], ["--jobs", "0"]]
)
def test_cli_refuses_bad_arguments(tmp_path: Path, args):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "o.h5"), *args])
    assert exc.value.code == 2


# --------------------------------------------------------------------------- domain randomization


@pytest.fixture(scope="module")
def randomized(cohort):
    return synthesize_cohort(load_synth_config("randomized"), cohort, seed=3, n_subjects=3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"field_strength_t": 7.0}, r"field_strength_t: must be one of \(1\.5, 3\.0\)"),
        ({"randomize": {"n_echoes": [1, 12]}}, r"randomize\.n_echoes: min must be >= 2"),
        (
            {"randomize": {"snr": {"low": 0.0, "high": 10.0, "log": True}}},
            r"randomize\.snr: log needs low > 0",
        ),
        ({"randomize": {"field_strength_t": [1.5, 7.0]}}, r"randomize\.field_strength_t"),
        (
            {"randomize": {"organ_probability": {"heart": 0.5}}},
            r"randomize\.organ_probability: must list exactly",
        ),
        ({"randomize": {"flip_probability": 1.5}}, r"randomize\.flip_probability: probability"),
        (
            {"randomize": {"black_blood_probability": -0.1}},
            r"randomize\.black_blood_probability: probability",
        ),
    ],
)
def test_randomized_config_is_checked_by_key(overrides, message):
    with pytest.raises(SynthConfigError, match=message):
        load_synth_config("randomized", overrides)


def test_randomized_draws_cover_the_ranges(cohort):
    from cmrseg.synth.config import ORGANS_THAT_MAY_BE_ABSENT
    from cmrseg.synth.randomize import randomize_file, randomize_subject

    cfg = load_synth_config("randomized")
    r = cfg.randomize
    files = [randomize_file(cfg, seed) for seed in range(60)]
    assert {f.echoes.n_echoes for f in files} == set(range(6, 13))
    assert {tuple(f.grid.shape) for f in files} == {tuple(m) for m in r.matrix_choices}
    draws = [randomize_subject(files[0], plan) for plan in cohort.plan(0)] + [
        randomize_subject(files[1], plan) for plan in cohort.plan(1)
    ]
    subjects = [d[0] for d in draws]
    variations = [d[2] for d in draws]

    def spread(values, low, high, margin):
        values = np.asarray(values)
        assert values.min() >= low and values.max() <= high
        assert values.min() < low + margin * (high - low) and values.max() > high - margin * (
            high - low
        )

    spread([s.acquisition.phase_resolution for s in subjects], 0.3, 1.0, 0.15)
    spread([s.acquisition.n_coils for s in subjects], 1, 12, 0.1)
    spread([s.acquisition.snr for s in subjects], 6, 150, 0.2)
    spread([s.echoes.te_first_ms for s in subjects], 0.8, 3.5, 0.15)
    spread([s.grid.pixel_spacing_mm * s.grid.shape[1] for s in subjects], 240, 420, 0.15)
    spread([s.anatomy.wall_thickness_mm.mean for s in subjects], 3, 16, 0.15)
    lv_scale = [s.anatomy.lv_endo_radius_mm.mean / 24.0 for s in subjects]
    spread(lv_scale, 0.35, 1.4, 0.15)
    spread([math.degrees(v.rotation_rad) for v in variations], -180, 180, 0.1)
    spread([v.bias_sd for v in variations], 0.0, 0.5, 0.15)
    assert {s.field_strength_t for s in subjects} == {1.5, 3.0}
    assert {v.flip_rows for v in variations} == {v.flip_cols for v in variations} == {0, 1}
    for organ in ORGANS_THAT_MAY_BE_ABSENT:
        present = [v.tissue_map[TISSUES.index(organ)] == TISSUES.index(organ) for v in variations]
        assert 0 < np.mean(present) < 1, organ
    lung_s0 = [s.tissues["lung"].s0 for s in subjects]
    assert 0 < np.mean(np.asarray(lung_s0) > 0) < 1
    # tissue contrast beyond the base table, both ways
    muscle = np.array([s.tissues["skeletal_muscle"].s0 for s in subjects]) / 90.0
    assert muscle.min() < 0.4 and muscle.max() > 2.5
    # black blood on about black_blood_probability of the subjects, within its S0 range
    blood = np.array([s.tissues["lv_blood"].s0 / s.tissues["myocardium"].s0 for s in subjects])
    dark = blood <= r.black_blood_s0_fraction.high
    assert 0.08 < dark.mean() < 0.35
    assert blood[dark].min() >= r.black_blood_s0_fraction.low
    # the myocardial T2* stays the cohort's truth
    assert [d[1].myocardium_t2star_ms for d in draws[:51]] == [
        p.myocardium_t2star_ms for p in cohort.plan(0)
    ]


def test_randomized_cohort_is_a_valid_file_with_exact_truth(randomized, cohort, tmp_path):
    cfg = load_synth_config("randomized")
    n = randomized.n_slices
    assert n == 9 and 6 <= randomized.images.shape[1] <= 12
    assert np.isfinite(randomized.images).all() and (randomized.images >= 0).all()
    path = tmp_path / "randomized.h5"
    write_echo_stack(path, randomized)
    info = inspect_echo_stack(path)  # the contract's checks: increasing TEs, label values, ...
    assert {"labels", "rv_insertion", "t2star_ms", "field_strength_t"} <= info.datasets
    plans = cohort.plan(3, 3)
    area = []
    for i in range(n):
        labels, truth = randomized.labels[i], randomized.t2star_ms[i]
        assert set(np.unique(labels)) <= {0, 1, 2} and (labels == 2).any()
        assert np.isfinite(truth[labels > 0]).all()
        field_cfg = load_synth_config(
            "clinical", {"field_strength_t": float(randomized.field_strength_t[i])}
        )
        expected = float(
            field_cfg.t2star_at_field("myocardium", plans[i // 3].myocardium_t2star_ms)
        )
        assert truth[labels == 2].mean() == pytest.approx(expected, rel=1e-4)
        # the anterior RV insertion point sits on the LV epicardium, flips and rotation included
        heart = labels > 0
        rr, cc = np.nonzero(heart & ~ndimage.binary_erosion(heart))
        row, col = randomized.rv_insertion[i]
        assert np.hypot(rr - row, cc - col).min() < 2.5
        area.append(heart.sum() * float(randomized.pixel_spacing_mm[i, 0]) ** 2)
    # per subject: one TE set, spacing and field for its three slices; subjects differ
    for name in ("te_ms", "pixel_spacing_mm", "field_strength_t"):
        values = getattr(randomized, name)
        assert all(
            np.array_equal(values[3 * k], values[3 * k + j]) for k in range(3) for j in (1, 2)
        )
    assert len({float(v) for v in randomized.pixel_spacing_mm[:, 0]}) == 3
    assert np.all(np.diff(randomized.te_ms, axis=1) > 0)
    # same seed, same file
    again = synthesize_cohort(cfg, cohort, seed=3, n_subjects=1)
    assert again.images.tobytes() == randomized.images[:3].tobytes()


def test_randomized_flips_move_labels_truth_and_point_together(cohort):
    """Forcing both flips mirrors the images, labels, truth and RV point of the same subject."""
    from cmrseg.synth.randomize import randomize_subject

    cfg = load_synth_config("randomized", {"randomize": {"flip_probability": 0.0}})
    flipped_cfg = load_synth_config("randomized", {"randomize": {"flip_probability": 1.0}})
    plain = synthesize_subject(cfg, cohort.plan(4, 1)[0])
    flipped = synthesize_subject(flipped_cfg, cohort.plan(4, 1)[0])
    assert randomize_subject(flipped_cfg, cohort.plan(4, 1)[0])[2].flip_rows
    h, w = plain[0].labels.shape
    for a, b in zip(plain, flipped, strict=True):
        np.testing.assert_array_equal(b.labels, a.labels[::-1, ::-1])
        np.testing.assert_array_equal(b.t2star_ms, a.t2star_ms[::-1, ::-1])
        np.testing.assert_allclose(b.rv_insertion, [h - 1, w - 1] - a.rv_insertion, atol=1e-4)


def test_black_blood_darkens_the_blood_pools_and_draws_nothing_else(cohort):
    """A black-blood subject is the same subject with dark blood: other draws are untouched."""
    from cmrseg.synth.randomize import randomize_subject

    def fixed(value: float) -> dict:
        return {"low": value, "high": value, "log": False}

    # a clean acquisition, so that the first echo shows the S0 contrast
    clean = {"snr": fixed(150.0), "phase_resolution": fixed(1.0), "ghosting_mm": fixed(0.0)}
    dark_cfg = load_synth_config(
        "randomized",
        {
            "randomize": clean
            | {"black_blood_probability": 1.0, "black_blood_s0_fraction": fixed(0.1)}
        },
    )
    bright_cfg = load_synth_config(
        "randomized", {"randomize": clean | {"black_blood_probability": 0.0}}
    )
    dark, _, dark_variation = randomize_subject(dark_cfg, cohort.plan(4, 1)[0])
    bright, _, bright_variation = randomize_subject(bright_cfg, cohort.plan(4, 1)[0])
    for name, tissue in dark.tissues.items():
        if name in ("lv_blood", "rv_blood", "aorta_blood"):
            assert tissue.s0 == pytest.approx(0.1 * dark.tissues["myocardium"].s0)
            assert tissue.t2star_ms == bright.tissues[name].t2star_ms
        else:
            assert tissue == bright.tissues[name], name
    assert dark.acquisition == bright.acquisition and dark.anatomy == bright.anatomy
    assert dark_variation.rotation_rad == bright_variation.rotation_rad
    for image in synthesize_subject(dark_cfg, cohort.plan(4, 1)[0]):
        first = image.images[0]
        blood = ndimage.binary_erosion(image.labels == 1, iterations=2)  # no partial volume
        wall = ndimage.binary_erosion(image.labels == 2)
        assert np.median(first[blood]) < 0.25 * np.median(first[wall])  # 0.13-0.16 measured


def test_cli_writes_a_randomized_file(tmp_path):
    out = tmp_path / "randomized.h5"
    args = [str(out), "--subjects", "1", "--preset", "randomized", "--seed", "2", "--no-progress"]
    assert main(args) == 0
    info = inspect_echo_stack(out)
    assert info.n_slices == 3 and 6 <= info.n_echoes <= 12
    assert {"labels", "rv_insertion", "t2star_ms"} <= info.datasets


def test_subjects_synthesized_side_by_side_give_the_same_file(randomized, cohort, tmp_path):
    cfg = load_synth_config("randomized")
    three = synthesize_cohort(cfg, cohort, seed=3, n_subjects=3, jobs=3)
    for field in dataclasses.fields(randomized):
        a, b = getattr(randomized, field.name), getattr(three, field.name)
        if isinstance(a, np.ndarray):
            assert a.tobytes() == b.tobytes(), field.name
        else:
            assert a == b, field.name
    with pytest.raises(ValueError, match="jobs"):
        synthesize_cohort(cfg, cohort, seed=3, n_subjects=1, jobs=0)
    paths = [tmp_path / "one.h5", tmp_path / "two.h5"]
    for path, jobs in zip(paths, ("1", "2"), strict=True):
        args = [str(path), "--subjects", "2", "--seed", "4", "--jobs", jobs, "--no-progress"]
        assert main(args) == 0
    first, second = (read_echo_stack(p) for p in paths)
    assert first.images.tobytes() == second.images.tobytes()
    assert first.subject_id == second.subject_id
