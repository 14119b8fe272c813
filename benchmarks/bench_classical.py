"""Speed and accuracy of the classical segmenters (GAC, region growing) on synthetic cohorts.

Speed: seconds per slice of ``segment`` in this process (no pool) on ``--speed-slices`` slices
of the first file, spread evenly over it. Accuracy, per file: myocardial Jaccard, mean (SD)
over slices, of the default parameters (``conf/model/<method>.yaml``) on every slice, then on
the test subjects of the project's fixed split (``conf/data/echo_stack.yaml``: 10% val, 10%
test, split seed 2025, the U-Nets' test split) the defaults against parameters calibrated on
training subjects. The calibration sees ``--calibrate-slices`` training slices spread evenly
over the training subjects and ``--max-trials`` grid points of the search space drawn with
``--seed``; it never sees a test subject.

    .venv/bin/cmrseg-synth /tmp/c/cohort.h5                     # the default cohort
    .venv/bin/cmrseg-synth /tmp/c/s1_clean.h5 --preset clean --seed 1
    .venv/bin/cmrseg-synth /tmp/c/s1_hard.h5 --preset hard --seed 1
    python benchmarks/bench_classical.py --data /tmp/c/cohort.h5 /tmp/c/s1_clean.h5 ...
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cmrseg.classical import METHODS, calibrate, make_params, myocardium_jaccard, segment
from cmrseg.conf import CONF_DIR
from cmrseg.data import read_echo_stack
from cmrseg.data.splits import make_subject_split


def method_config(method: str) -> dict[str, Any]:
    config = yaml.safe_load((CONF_DIR / "model" / f"{method}.yaml").read_text(encoding="utf-8"))
    return config["model"]


def spread(indices: np.ndarray, n: int | None) -> np.ndarray:
    """``n`` of ``indices`` evenly spread (all when ``n`` is None or larger)."""
    if n is None or n >= indices.size:
        return indices
    return indices[np.linspace(0, indices.size - 1, n).round().astype(int)]


def score(stack: Any, indices: np.ndarray, params: Any) -> tuple[np.ndarray, int]:
    """Per-slice myocardial Jaccard and the number of empty predictions."""
    jaccards, empty = [], 0
    for i in indices:
        result = segment(stack.images[i], stack.te_ms[i], stack.pixel_spacing_mm[i], params)
        jaccards.append(myocardium_jaccard(result.labels, stack.labels[i]))
        empty += not result.found
    return np.array(jaccards), empty


def bench_speed(stack: Any, n_slices: int) -> None:
    indices = spread(np.arange(stack.images.shape[0]), n_slices)
    h, w = stack.images.shape[2:]
    print(f"speed: {indices.size} slices of {h} x {w} x {stack.images.shape[1]} echoes, 1 process")
    for method in METHODS:
        params = make_params(method, method_config(method)["params"])
        seconds = []
        for i in indices:
            start = time.perf_counter()
            segment(stack.images[i], stack.te_ms[i], stack.pixel_spacing_mm[i], params)
            seconds.append(time.perf_counter() - start)
        s = np.array(seconds)
        print(
            f"  {method:15s} mean {s.mean():.3f} s/slice, median {np.median(s):.3f}, "
            f"max {s.max():.3f}"
        )


def bench_accuracy(path: Path, stack: Any, args: argparse.Namespace) -> None:
    split = make_subject_split(stack.subject_id, val_fraction=0.1, test_fraction=0.1, seed=2025)
    subjects = np.array(stack.subject_id)
    test = np.flatnonzero(np.isin(subjects, split.test))
    train = spread(np.flatnonzero(np.isin(subjects, split.train)), args.calibrate_slices)
    print(
        f"\n{path.name}: test {test.size} slices ({len(split.test)} subjects), "
        f"calibration on {train.size} training slices ({len(split.train)} subjects)"
    )
    every = np.arange(stack.images.shape[0])
    for method in METHODS:
        cfg = method_config(method)
        default = make_params(method, cfg["params"])
        j_all, e_all = score(stack, every, default)
        print(
            f"  {method:15s} default on all {every.size} slices {j_all.mean():.3f} "
            f"({j_all.std():.3f}) [{e_all} empty]"
        )
        if args.no_calibration:
            continue
        j_default, e_default = score(stack, test, default)
        start = time.perf_counter()
        result = calibrate(
            method,
            stack.images[train],
            stack.te_ms[train],
            stack.pixel_spacing_mm[train],
            stack.labels[train],
            default,
            cfg["search_space"],
            max_trials=args.max_trials,
            seed=args.seed,
            n_workers=args.workers,
            progress=False,
        )
        minutes = (time.perf_counter() - start) / 60
        j_cal, e_cal = score(stack, test, result.params)
        chosen = {k: getattr(result.params, k) for k in sorted(cfg["search_space"])}
        print(
            f"  {method:15s} default {j_default.mean():.3f} ({j_default.std():.3f}) "
            f"[{e_default} empty] | calibrated {j_cal.mean():.3f} ({j_cal.std():.3f}) "
            f"[{e_cal} empty]; train Jaccard {result.table[0]['jaccard_mean']:.3f} -> "
            f"{result.jaccard:.3f}, {len(result.table)} trials in {minutes:.1f} min; {chosen}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="echo-stack files")
    parser.add_argument("--speed-slices", type=int, default=30)
    parser.add_argument("--calibrate-slices", type=int, default=40)
    parser.add_argument("--max-trials", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-accuracy", action="store_true", help="speed only")
    parser.add_argument(
        "--no-calibration", action="store_true", help="accuracy of the defaults on all slices only"
    )
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    stacks = [read_echo_stack(p) for p in args.data]
    bench_speed(stacks[0], args.speed_slices)
    if not args.no_accuracy:
        for path, stack in zip(args.data, stacks, strict=True):
            bench_accuracy(path, stack, args)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
