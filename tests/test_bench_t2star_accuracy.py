"""benchmarks/bench_t2star_accuracy.py: the must-reach checks and their summary over seeds."""

from __future__ import annotations

import importlib.util
import sys
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
