"""Classical segmenters (cmrseg.classical): accuracy on the phantom, bad input, calibration."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import yaml

from cmrseg.classical import (
    METHODS,
    GACParams,
    RegionGrowingParams,
    calibrate,
    make_params,
    myocardium_jaccard,
    segment,
)
from cmrseg.conf import CONF_DIR
from cmrseg.core.labels import BACKGROUND, BLOOD_POOL, MYOCARDIUM
from cmrseg.data.echo_stack import EchoStack
from cmrseg.synth import load_cohort, load_synth_config, synthesize_cohort

METHOD_NAMES = sorted(METHODS)


def method_config(method: str) -> dict[str, Any]:
    """The ``model`` node of ``conf/model/<method>.yaml`` as plain data (``params``...)."""
    config = yaml.safe_load((CONF_DIR / "model" / f"{method}.yaml").read_text(encoding="utf-8"))
    return config["model"]


def default_params(method: str) -> Any:
    return make_params(method, method_config(method)["params"])


def synth(preset: str, n_subjects: int, seed: int = 3) -> EchoStack:
    return synthesize_cohort(
        load_synth_config(preset), load_cohort("paper"), seed=seed, n_subjects=n_subjects, workers=1
    )


@pytest.fixture(scope="module")
def clean() -> EchoStack:
    """2 subjects x base, mid, apex of the clean preset (192 x 256, 8 echoes)."""
    return synth("clean", 2)


@pytest.fixture(scope="module")
def hard() -> EchoStack:
    """2 subjects x base, mid, apex of the hard preset (SNR 12, ghosting, misregistration)."""
    return synth("hard", 2)


def run(method: str, stack: EchoStack, i: int, params: Any = None, images: Any = None):
    params = default_params(method) if params is None else params
    images = stack.images[i] if images is None else images
    return segment(images, stack.te_ms[i], stack.pixel_spacing_mm[i], params)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_finds_the_myocardium_on_clean_slices(method: str, clean: EchoStack) -> None:
    for i in range(clean.images.shape[0]):
        result = run(method, clean, i)
        assert result.reason == "" and result.found
        assert result.labels.dtype == np.uint8 and result.labels.shape == clean.labels[i].shape
        assert set(np.unique(result.labels)) == {BACKGROUND, BLOOD_POOL, MYOCARDIUM}
        jaccard = myocardium_jaccard(result.labels, clean.labels[i])
        assert jaccard >= 0.5, f"{method} slice {i} ({clean.slice_location[i]}): {jaccard:.2f}"


def no_blood_contrast(stack: EchoStack, i: int) -> np.ndarray:
    """The slice's first echo decaying everywhere with T2* 8 ms: no blood bright at late echoes."""
    te = stack.te_ms[i].astype(float)
    decay = np.exp(-(te - te[0]) / 8.0)[:, None, None]
    return (stack.images[i, 0][None] * decay).astype(np.float32)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_bad_slices_give_empty_labels_and_a_reason(method: str, clean: EchoStack) -> None:
    rng = np.random.default_rng(0)
    cases = {
        "empty_slice": np.zeros_like(clean.images[0]),
        "non_finite_image": np.where(rng.random(clean.images[0].shape) < 0.01, np.nan, 1.0),
        "no_lv_found": no_blood_contrast(clean, 1),
    }
    for reason, images in cases.items():
        result = run(method, clean, 1, images=images)
        assert result.reason == reason and not result.found
        assert result.labels.shape == clean.labels[1].shape and not result.labels.any()
    noise = np.abs(rng.normal(0, 1, clean.images[0].shape)) * 100  # no anatomy at all
    assert run(method, clean, 1, images=noise).reason == "no_lv_found"
    one_echo = segment(
        clean.images[1, :1], clean.te_ms[1, :1], clean.pixel_spacing_mm[1], default_params(method)
    )
    assert one_echo.reason == "too_few_echoes" and not one_echo.labels.any()


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_malformed_arguments_raise(method: str, clean: EchoStack) -> None:
    params = default_params(method)
    with pytest.raises(ValueError, match="images"):
        segment(clean.images[0, 0], clean.te_ms[0], clean.pixel_spacing_mm[0], params)
    with pytest.raises(ValueError, match="te_ms"):
        segment(clean.images[0], clean.te_ms[0, :3], clean.pixel_spacing_mm[0], params)
    with pytest.raises(ValueError, match="pixel_spacing_mm"):
        segment(clean.images[0], clean.te_ms[0], [0.0, 1.4], params)
    with pytest.raises(ValueError, match="params"):
        segment(clean.images[0], clean.te_ms[0], clean.pixel_spacing_mm[0], {"a": 1})


@pytest.mark.parametrize(
    ("method", "key", "value"),
    [
        ("gac", "max_wall_mm", 2.0),
        ("gac", "endo_threshold", 1.5),
        ("gac", "epi_iterations", 2.5),
        ("gac", "lv_radius_mm", (30.0, 10.0)),
        ("region_growing", "wall_tolerance", 0.0),
        ("region_growing", "n_seeds", 0),
        ("region_growing", "opening_mm", -1.0),
    ],
)
def test_invalid_parameters_are_named(method: str, key: str, value: Any) -> None:
    values = {**method_config(method)["params"], key: value}
    with pytest.raises(ValueError, match=key.replace("max_wall_mm", "min_wall_mm")):
        make_params(method, values)


def test_make_params_names_missing_and_unknown_keys() -> None:
    values = method_config("gac")["params"]
    with pytest.raises(ValueError, match="missing: endo_alpha"):
        make_params("gac", {k: v for k, v in values.items() if k != "endo_alpha"})
    with pytest.raises(ValueError, match="unknown: colour"):
        make_params("gac", {**values, "colour": 1})
    with pytest.raises(ValueError, match="method must be one of"):
        make_params("snake", values)
    assert isinstance(make_params("gac", values), GACParams)
    region = make_params("region_growing", method_config("region_growing")["params"])
    assert isinstance(region, RegionGrowingParams)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_config_search_space_names_parameters(method: str) -> None:
    cfg = method_config(method)
    params = make_params(method, cfg["params"])
    for name, values in cfg["search_space"].items():
        for value in values:  # every grid value is a valid setting
            dataclasses.replace(params, **{name: value})


def _calibrate(stack: EchoStack, method: str, space: dict[str, list], **kwargs: Any):
    return calibrate(
        method,
        stack.images,
        stack.te_ms,
        stack.pixel_spacing_mm,
        stack.labels,
        method_config(method)["params"],
        space,
        progress=False,
        **kwargs,
    )


#: One parameter per method whose best value differs between the clean and the hard preset.
DATA_DEPENDENT = {
    "gac": {"smoothing_mm": [1.0, 2.0, 3.0, 4.5]},
    "region_growing": {"wall_tolerance": [0.15, 0.25, 0.35, 0.5]},
}


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_calibration_follows_the_data(method: str, clean: EchoStack, hard: EchoStack) -> None:
    """Calibrated on the clean preset and on the hard one, the chosen values differ."""
    space = DATA_DEPENDENT[method]
    (name,) = space
    on_clean = _calibrate(clean, method, space)
    on_hard = _calibrate(hard, method, space)
    assert getattr(on_clean.params, name) != getattr(on_hard.params, name)
    for result in (on_clean, on_hard):
        scores = [row["jaccard_mean"] for row in result.table]
        assert result.jaccard == max(scores) >= scores[0]  # never below the given parameters
        assert [row[name] for row in result.table] == [
            getattr(default_params(method), name),
            *(v for v in space[name] if v != getattr(default_params(method), name)),
        ]


def test_calibration_is_deterministic_and_parallel(clean: EchoStack) -> None:
    space = method_config("region_growing")["search_space"]
    kwargs = {"max_trials": 2, "seed": 7}
    serial = _calibrate(clean, "region_growing", space, n_workers=1, **kwargs)
    parallel = _calibrate(clean, "region_growing", space, n_workers=2, **kwargs)
    assert serial.params == parallel.params and serial.table == parallel.table
    assert len(serial.table) == 3  # the given parameters + 2 drawn grid points
    other = _calibrate(clean, "region_growing", space, n_workers=1, max_trials=2, seed=8)

    def trials(result: Any) -> list[tuple]:
        return [tuple(row[name] for name in sorted(space)) for row in result.table]

    assert trials(other) != trials(serial)  # another seed draws other grid points
    assert serial.seconds_per_slice > 0


def test_calibration_rejects_bad_arguments(clean: EchoStack) -> None:
    with pytest.raises(ValueError, match="colour is not a parameter"):
        _calibrate(clean, "gac", {"colour": [1, 2]})
    with pytest.raises(ValueError, match="max_wall_mm has no values"):
        _calibrate(clean, "gac", {"max_wall_mm": []})
    with pytest.raises(ValueError, match="labels"):
        calibrate(
            "gac",
            clean.images,
            clean.te_ms,
            clean.pixel_spacing_mm,
            clean.labels[:2],
            method_config("gac")["params"],
            {},
            progress=False,
        )


def test_segment_is_deterministic(clean: EchoStack) -> None:
    for method in METHOD_NAMES:
        first, second = run(method, clean, 2), run(method, clean, 2)
        assert np.array_equal(first.labels, second.labels)


def test_myocardium_jaccard() -> None:
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    assert myocardium_jaccard(a, b) == 1.0
    a[0, :2] = MYOCARDIUM
    b[0, 1:3] = MYOCARDIUM
    b[3, 3] = BLOOD_POOL
    assert myocardium_jaccard(a, b) == pytest.approx(1 / 3)
