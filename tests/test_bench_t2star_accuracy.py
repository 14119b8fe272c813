"""benchmarks/bench_t2star_accuracy.py: the must-reach checks and their summary over seeds."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_t2star_accuracy.py"
_spec = importlib.util.spec_from_file_location("bench_t2star_accuracy", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_t2star_accuracy"] = bench
_spec.loader.exec_module(bench)


def _clinical(within_share: float) -> list:
    """The clinical musts of a cohort whose 2-45 ms slices are within 5% at ``within_share``."""
    truth = np.array([3.0, 4.0] + [30.0] * 18)
    n_off = round((1 - within_share) * truth.size)
    value = truth * np.where(np.arange(truth.size) < n_off, 1.2, 1.01)
    return bench._musts("clinical", truth, value, 0.04, 1.002)


def test_musts_print_as_before_and_judge_their_thresholds() -> None:
    musts = {m.name: m for m in _clinical(0.9)}
    within = musts["within 5% (2-45 ms)"]
    assert within.line() == "within 5% (2-45 ms) 90.0% >= 85%" and within.passed
    assert musts["median |err| 2-5 ms"].value == pytest.approx(20.0)  # both 2-5 ms slices off
    assert not musts["median |err| 2-5 ms"].passed
    assert musts["noise SD median ratio"].line() == "noise SD median ratio 1.0020 within 3%"
    assert not {m.name: m for m in _clinical(0.8)}["within 5% (2-45 ms)"].passed
    hard = bench._musts("hard", np.array([8.0, 30.0]), np.array([9.6, 30.6]), 0.1, 1.05)
    assert [(m.name, m.passed) for m in hard] == [
        ("median |err| 5-45 ms", False),  # the median of 20% and 2%
        ("noise SD median ratio", False),
    ]


def test_seed_summary_counts_passes_and_gives_the_t_interval_of_the_mean() -> None:
    lines = bench.seed_summary({1: _clinical(0.9), 2: _clinical(0.8), 3: _clinical(0.85)})
    assert lines[0] == "over 3 seeds (1, 2, 3):"
    within = next(line for line in lines if "within 5%" in line)
    # mean 85%, SD 5 points over 3 seeds: half-width t(0.975, 2) x 5 / sqrt(3) = 12.42 points
    assert within == (
        "  clinical within 5% (2-45 ms) >= 85%: passed on 2 of 3; mean 85.0% [72.6%, 97.4%]; "
        "per seed 90.0% 80.0% 85.0%"
    )
    one = bench.seed_summary({7: _clinical(0.9)})
    assert "passed on 1 of 1; mean 90.0%; per seed 90.0%" in one[2]


def test_sector_bias_is_the_median_signed_error_of_each_sector_number() -> None:
    # two slices, six sector rows each; sector 2 reads 10% low on both, sector 6 is never used
    truth = np.full(12, 20.0)
    value = truth * np.array([1.0, 0.9, 1.0, 1.02, 1.0, 1.0, 1.04, 0.9, 1.0, 1.02, 1.0, 1.0])
    use = np.ones(12, dtype=bool)
    use[[5, 11]] = False
    bias = bench.sector_bias(value / truth - 1.0, use)
    assert bias[:5] == pytest.approx([0.02, -0.1, 0.0, 0.02, 0.0])
    assert np.isnan(bias[5])
    assert bench._signed(bias[:2]) == "1: +2.0% 2: -10.0%"


def test_roi_truth_is_the_true_mean_of_the_pixels_the_method_names() -> None:
    # a square wall (rows 2-13, columns 2-13) around a blood pool (rows 5-10, columns 5-10);
    # phase along the rows: columns 5-10 cross the cavity, the others do not
    labels = np.zeros((16, 16), np.int8)
    labels[2:14, 2:14] = 2
    labels[5:11, 5:11] = 1
    t2 = np.tile(np.arange(16, dtype=float), (16, 1)) + 20.0  # T2* rises with the column
    wall = labels == 2
    off = wall.copy()
    off[:, 5:11] = False
    core = wall.copy()
    core[[2, 4, 11, 13], 5:11] = False  # 1 px off each border along the rows, cavity columns
    core[[2, 13], :] = False  # and the outer rows of the off-cavity columns
    roi = bench.roi_truth
    assert roi(t2, labels, "median_pixel/full/noise_corrected", 1, 0) == pytest.approx(
        t2[wall].mean()
    )
    assert roi(t2, labels, "median_pixel/full_off_cavity/mono", 1, 0) == pytest.approx(
        t2[off].mean()
    )
    assert roi(t2, labels, "median_pixel/core/mono", 1, 0) == pytest.approx(t2[core].mean())
    both = roi(t2, labels, "median_pixel/core+core_off_cavity/mono/first_3_echoes", 1, 0)
    assert both == pytest.approx(np.sqrt(t2[core].mean() * t2[core & off].mean()))
    long_wall = roi(t2, labels, "median_pixel/core_off_cavity+core_deblurred/noise_corrected", 1, 0)
    assert long_wall == pytest.approx(np.sqrt(t2[core & off].mean() * t2[core].mean()))


def test_read_line_compares_ok_rows_with_both_truths() -> None:
    truth = np.array([30.0, 30.0, 10.0, 3.0, 60.0])
    read = np.array([31.0, 28.0, 10.0, np.nan, 60.0])  # the pixels read differ from the wall
    value = np.array([31.0, 28.0, 10.8, np.nan, 60.0])  # the 60 ms row is outside 2-45 ms
    line = bench._read_line(truth, value, read)
    # within 5% of what they read: 2 of 3 (10.8 / 10 is 8% off); of the wall: 1 of 3 (31 / 30)
    assert line.startswith(
        "ok rows 2-45 ms within 5% of the true mean of the pixels they read 66.7%, "
        "of the whole wall's 33.3%"
    )
    assert bench._read_line(truth[3:4], value[3:4], read[3:4]) == "no ok global row of 2-45 ms"


def test_a_band_without_slices_is_not_judged_and_warns_nothing() -> None:
    # a smoke cohort with no true 2-5 ms slice: that must has no value, neither PASS nor FAIL
    truth, value = np.array([8.0, 30.0, 30.0]), np.array([8.1, 30.3, 29.7])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        musts = {m.name: m for m in bench._musts("clinical", truth, value, 0.04, 1.0)}
    low = musts["median |err| 2-5 ms"]
    assert np.isnan(low.value) and low.verdict().startswith("n/a")
    assert musts["largest ok error 2-5 ms"].verdict().startswith("n/a")
    assert musts["within 5% (2-45 ms)"].verdict() == "PASS"
    assert bench._musts("clinical", truth, value * 1.2, 0.04, 1.0)[1].verdict() == "FAIL"
