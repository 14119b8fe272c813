"""Speed and fidelity of the synthetic phantom cohort.

Speed: synthesizes the default cohort (51 subjects, 153 slices) with the ``clinical`` preset
(k-space acquisition) and, as the baseline measured in the same run, with the ``ideal`` preset
(image-domain area-mean voxels, no FFTs); prints seconds and their ratio. ``--randomized SEEDS``
also times the domain-randomized preset on that many files (seeds 0..SEEDS-1, each with its own
drawn matrix and echo count) and prints milliseconds per slice and per megapixel-echo.

Fidelity (``--science``): for each preset, the whole-wall mean-signal mono-exponential fit with
the true labels against the true T2* (median relative error by T2* bin), and the noise floor
(mean background magnitude at the last echo, in units of the single-coil noise SD).

    python benchmarks/bench_synth.py [--subjects N] [--science] [--randomized SEEDS]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.optimize import curve_fit

from cmrseg.synth import load_cohort, load_synth_config, synthesize_cohort, synthesize_subject
from cmrseg.synth.config import TISSUES

BINS_MS = [(0, 10), (10, 14), (14, 20), (20, 30), (30, 60)]
AIR = TISSUES.index("air")


def timed(preset: str, n_subjects: int, seed: int = 0) -> tuple[float, float, tuple[int, ...]]:
    """Wall and CPU seconds of one cohort, and the shape ``(N, E, H, W)`` of its images."""
    cfg, cohort = load_synth_config(preset), load_cohort("paper")
    wall, cpu = time.perf_counter(), time.process_time()
    stack = synthesize_cohort(cfg, cohort, seed=seed, n_subjects=n_subjects)
    return time.perf_counter() - wall, time.process_time() - cpu, stack.images.shape


def wall_fit_ms(te_ms: np.ndarray, signal: np.ndarray) -> float:
    (_, t2), _ = curve_fit(
        lambda te, s0, t2: s0 * np.exp(-te / t2),
        te_ms,
        signal,
        p0=(signal[0] * 1.2, 20.0),
        bounds=([0.0, 0.1], [np.inf, 1e4]),
    )
    return float(t2)


def fidelity(preset: str, n_subjects: int, overrides: dict | None = None) -> str:
    cfg, cohort = load_synth_config(preset, overrides), load_cohort("paper")
    te = cfg.echoes.te_ms.astype(float)
    truth, fitted, floor, floor_rel = [], [], [], []
    for plan in cohort.plan(0, n_subjects):
        for s in synthesize_subject(cfg, plan):
            myo = s.labels == 2
            truth.append(float(s.t2star_ms[myo].mean()))
            fitted.append(wall_fit_ms(te, s.images[:, myo].mean(axis=1).astype(float)))
            if s.sigma is not None:
                body_cols = np.nonzero((s.tissue != AIR).any(axis=0))[0]
                background = s.images[-1][:, : max(body_cols.min() - 4, 1)]
                floor.append(background.mean() / s.sigma)
                floor_rel.append(background.mean() / s.images[0][myo].mean())
    truth_a, rel = np.array(truth), np.array(fitted) / np.array(truth) - 1
    parts = []
    for lo, hi in BINS_MS:
        m = (truth_a >= lo) & (truth_a < hi)
        if m.any():
            parts.append(f"[{lo},{hi}) n={m.sum()}: {np.median(rel[m]) * 100:+.1f}%")
    text = " | ".join(parts)
    if floor:
        text += (
            f"\n    noise floor at TE{len(te)}: {np.mean(floor):.2f} sigma "
            f"({np.mean(floor_rel) * 100:.1f}% of the first-echo myocardium)"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=51)
    parser.add_argument("--science", action="store_true")
    parser.add_argument("--randomized", type=int, default=0, metavar="SEEDS")
    args = parser.parse_args()
    n = args.subjects

    timed("ideal", 1)  # warm-up (imports, FFT plans)
    base_wall, base_cpu, _ = timed("ideal", n)
    full_wall, full_cpu, shape = timed("clinical", n)
    print(f"cohort: {n} subjects, {3 * n} slices")
    print(f"image-domain baseline (ideal): {base_wall:6.1f} s wall, {base_cpu:6.1f} s CPU")
    print(f"k-space acquisition (clinical): {full_wall:6.1f} s wall, {full_cpu:6.1f} s CPU")
    print(f"ratio clinical / baseline: {full_wall / base_wall:.2f}x wall")
    print(f"per slice: {full_wall / (3 * n) * 1e3:.0f} ms wall")
    print(f"per megapixel-echo: {full_wall / math.prod(shape) * 1e9:.0f} ms wall (clinical)")
    for seed in range(args.randomized):
        wall, _, shape = timed("randomized", n, seed)
        print(
            f"randomized seed {seed}: {shape[3]}x{shape[2]} px, {shape[1]} echoes: "
            f"{wall / shape[0] * 1e3:.0f} ms per slice, "
            f"{wall / math.prod(shape) * 1e9:.0f} ms per megapixel-echo"
        )

    if args.science:
        print("\nwhole-wall fit with true labels, median relative error of T2* by true T2* bin:")
        no_noise = {"acquisition": {"snr": None, "ghosting_mm": 0.0, "misregistration_mm": 0.0}}
        print(f"  ideal (area mean, noise-free):  {fidelity('ideal', n)}")
        print(f"  40% phase res., noise-free:     {fidelity('clinical', n, no_noise)}")
        for preset in ("clean", "clinical", "hard"):
            print(f"  {preset:30s}  {fidelity(preset, n)}")
        n_coils = load_synth_config("clinical").acquisition.n_coils
        chi = math.sqrt(2) * math.exp(math.lgamma(n_coils + 0.5) - math.lgamma(n_coils))
        print(f"  (expected noise floor of {n_coils}-coil RSS: {chi:.2f} sigma)")


if __name__ == "__main__":
    main()
