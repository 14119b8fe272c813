"""cmrseg.stats: subject bootstrap, Wilcoxon and Holm, percent Bland-Altman, weighted kernels."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from cmrseg.stats import (
    agreement_intervals,
    bland_altman,
    bland_altman_percent,
    cohen_kappa,
    group_means,
    holm,
    icc,
    mean_interval,
    ordinal_median,
    replicate_weights,
    weighted_icc,
    wilcoxon_signed_rank,
)

GRADES = ("normal", "mild", "moderate", "severe")


def _exact_wilcoxon_p(diff: list[float]) -> float:
    """Two-sided exact p of the signed-rank statistic by enumerating all 2^n sign patterns."""
    ranks = np.argsort(np.argsort(np.abs(diff))) + 1.0  # distinct |d|: ranks 1..n
    observed = ranks[np.asarray(diff) > 0].sum()
    totals = [
        sum(r for r, s in zip(ranks, signs, strict=True) if s)
        for signs in itertools.product((0, 1), repeat=len(diff))
    ]
    totals = np.array(totals)
    low, high = np.mean(totals <= observed), np.mean(totals >= observed)
    return min(1.0, 2.0 * min(low, high))


def test_wilcoxon_matches_enumeration() -> None:
    a = np.array([0.90, 0.85, 0.88, 0.92, 0.80, 0.86, np.nan])
    b = np.array([0.85, 0.87, 0.80, 0.82, 0.79, 0.70, 0.5])
    diff = list((a - b)[:6])  # 0.05, -0.02, 0.08, 0.10, 0.01, 0.16: distinct magnitudes
    p, n = wilcoxon_signed_rank(a, b)
    assert n == 6
    # ranks 3, 2, 4, 5, 1, 6; W+ = 19 of 21; W+ >= 19 when the negative ranks sum to <= 2
    # ({}, {1}, {2}): P = 3/64, two-sided p = 6/64
    assert _exact_wilcoxon_p(diff) == pytest.approx(6 / 64)
    assert p == pytest.approx(6 / 64)
    assert math.isnan(wilcoxon_signed_rank([1.0, 2.0], [1.0, 2.0])[0])  # no difference


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 (m = 3): 0.03, max(0.03, 0.06), max(0.06, 0.04)
    adjusted = holm([0.04, 0.01, np.nan, 0.03])
    assert adjusted[:2] == pytest.approx([0.06, 0.03])
    assert math.isnan(adjusted[2]) and adjusted[3] == pytest.approx(0.06)
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]).size == 0


def test_mean_interval_resamples_subjects_as_an_independent_loop_does() -> None:
    subjects = ["A", "A", "B", "C", "C", "C", "D", "E"]
    values = np.array([0.8, 0.9, 0.5, 0.7, np.nan, 0.75, 0.95, 0.6])
    seed, n_boot = 7, 500
    interval = mean_interval(values, subjects, n_boot=n_boot, seed=seed)
    assert interval.value == pytest.approx(np.nanmean(values))
    # the same draws, done plainly: k subjects with replacement, all their rows, nanmean
    rows = {s: [i for i, t in enumerate(subjects) if t == s] for s in dict.fromkeys(subjects)}
    keys = list(rows)
    picks = np.random.default_rng(seed).integers(0, len(keys), size=(n_boot, len(keys)))
    means = [np.nanmean(values[[i for p in pick for i in rows[keys[p]]]]) for pick in picks]
    low, high = np.quantile(means, [0.025, 0.975])
    assert (interval.low, interval.high) == pytest.approx((low, high))
    assert mean_interval(values, subjects, n_boot=n_boot, seed=seed) == interval  # repeatable
    assert mean_interval(values, subjects, n_boot=n_boot, seed=seed + 1) != interval


def test_replicate_weights_count_whole_subjects() -> None:
    weights = replicate_weights(["A", "A", "B"], n_boot=50, seed=0)
    assert weights.shape == (50, 3)
    assert np.all(weights[:, 0] == weights[:, 1])  # both slices of A enter together
    assert np.all(weights[:, :2].mean(axis=1) + weights[:, 2] == 2)  # 2 subjects drawn


def test_agreement_intervals_match_plain_statistics_on_resampled_subjects() -> None:
    rng = np.random.default_rng(3)
    subjects = np.repeat([f"S{i}" for i in range(8)], 3)
    ref = np.repeat(rng.uniform(5, 40, 8), 3) + rng.normal(0, 1, 24)
    pred = ref + rng.normal(0.5, 1.5, 24)
    pred[4] = np.nan

    def grade(v: float) -> str:
        return (
            "" if not np.isfinite(v) else "normal" if v >= 20 else "mild" if v >= 14 else "severe"
        )

    grades = ([grade(v) for v in pred], [grade(v) for v in ref])
    n, out = agreement_intervals(
        pred, ref, subjects, grades=grades, categories=GRADES, n_boot=300, seed=11
    )
    assert n == 23
    plain = bland_altman(pred, ref)
    assert out["bias"].value == pytest.approx(plain.bias)
    assert out["loa_high"].value == pytest.approx(plain.loa_high)
    assert out["bias_pct"].value == pytest.approx(bland_altman_percent(pred, ref).bias)
    assert out["icc"].value == pytest.approx(icc(np.stack([pred, ref], 1), "2,1"))
    assert out["kappa_linear"].value == pytest.approx(
        cohen_kappa(*grades, categories=GRADES, weights="linear")
    )
    # independent loop over the same subject draws
    keys = list(dict.fromkeys(subjects))
    picks = np.random.default_rng(11).integers(0, 8, size=(300, 8))
    bias, iccs, kappas = [], [], []
    for pick in picks:
        rows = np.concatenate([np.flatnonzero(subjects == keys[p]) for p in pick])
        bias.append(bland_altman(pred[rows], ref[rows]).bias)
        iccs.append(icc(np.stack([pred[rows], ref[rows]], 1), "2,1"))
        kappas.append(
            cohen_kappa(
                [grades[0][i] for i in rows],
                [grades[1][i] for i in rows],
                categories=GRADES,
                weights="linear",
            )
        )
    for name, reps in (("bias", bias), ("icc", iccs), ("kappa_linear", kappas)):
        reps = np.array(reps)
        low, high = np.quantile(reps[np.isfinite(reps)], [0.025, 0.975])
        assert (out[name].low, out[name].high) == pytest.approx((low, high)), name


def test_agreement_intervals_without_grades_or_rows() -> None:
    n, out = agreement_intervals([1.0, 2.0], [1.5, 2.5], ["A", "B"], n_boot=20, seed=0)
    assert n == 2 and "kappa" not in out and out["bias"].value == pytest.approx(-0.5)
    n, out = agreement_intervals([], [], [], seed=0)
    assert n == 0 and math.isnan(out["icc"].value)


def test_bland_altman_percent_by_hand() -> None:
    # pairs (11, 9) and (9, 11): +20% and -20% of the mean 10 -> bias 0, SD sqrt(800)
    stats = bland_altman_percent([11.0, 9.0, np.nan, -1.0], [9.0, 11.0, 5.0, -3.0])
    assert stats.n == 2 and stats.bias == pytest.approx(0.0)
    assert stats.sd == pytest.approx(math.sqrt(800.0))


def test_weighted_icc_equals_icc_of_repeated_rows() -> None:
    x = np.array([[1.0, 1.5], [4.0, 3.0], [2.0, 2.2], [7.0, 8.0]])
    weights = np.array([[2.0, 0.0, 1.0, 3.0]])
    repeated = np.repeat(x, [2, 0, 1, 3], axis=0)
    for kind in ("2,1", "3,1"):
        assert weighted_icc(x, weights, kind)[0] == pytest.approx(icc(repeated, kind))


def test_group_means_and_ordinal_median() -> None:
    keys, means = group_means(["B", "A", "B", "A"], [1.0, np.nan, 3.0, np.nan])
    assert keys == ["B", "A"] and means[0] == 2.0 and math.isnan(means[1])
    _, both = group_means(["x", "x"], np.array([[1.0, 2.0], [3.0, np.nan]]))
    assert group_means([], np.zeros((0, 3)))[1].shape == (0, 3)
    assert both.tolist() == [[2.0, 2.0]]
    assert ordinal_median(["normal", "severe", "mild"], GRADES) == "mild"
    assert ordinal_median(["normal", "moderate", ""], GRADES) == "moderate"  # even: severer
    assert ordinal_median(["", ""], GRADES) == ""
