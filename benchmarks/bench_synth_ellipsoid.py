"""Speed and make-up of the second phantom (``cmrseg-synth OUT.h5 --anatomy ellipsoid``).

Synthesizes a cohort with the library call the CLI makes, writes and validates it, and prints
the wall and CPU time of the synthesis (writing and validation apart), then what the cohort
holds: label sizes per slice location, base/mid slices whose blood pool is not enclosed by
myocardium, the grades of the drawn myocardial T2*, black-blood subjects, phase-encoding axes,
and how much the true map varies over each subject's myocardium (half its range over its mean).

    python benchmarks/bench_synth_ellipsoid.py [--subjects 51] [--seed 0] [--keep FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from cmrseg.core.labels import BLOOD_POOL, MYOCARDIUM
from cmrseg.data.echo_stack import inspect_echo_stack, write_echo_stack
from cmrseg.synth.ellipsoid import draw_subject, synthesize_ellipsoid_cohort


def _not_enclosed(labels: np.ndarray) -> bool:
    blood = labels == BLOOD_POOL
    ring = ndimage.binary_dilation(blood) & ~blood
    return not blood.any() or not np.all(labels[ring] == MYOCARDIUM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=51)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="write the cohort here")
    args = parser.parse_args()

    start, cpu = time.perf_counter(), time.process_time()
    stack = synthesize_ellipsoid_cohort(args.subjects, args.seed)
    synth_s, synth_cpu = time.perf_counter() - start, time.process_time() - cpu
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep if args.keep is not None else Path(tmp) / "ellipsoid.h5"
        start = time.perf_counter()
        write_echo_stack(path, stack)
        inspect_echo_stack(path)
        write_s = time.perf_counter() - start
    print(
        f"{args.subjects} subjects, {stack.n_slices} slices: synthesis {synth_s:.1f} s wall, "
        f"{synth_cpu:.1f} s CPU ({synth_s / stack.n_slices * 1e3:.0f} ms wall per slice), "
        f"write + validate {write_s:.1f} s"
    )
    for location in ("base", "mid", "apex"):
        idx = [i for i, loc in enumerate(stack.slice_location) if loc == location]
        blood = [(stack.labels[i] == BLOOD_POOL).sum() for i in idx]
        myo = [(stack.labels[i] == MYOCARDIUM).sum() for i in idx]
        open_rings = sum(_not_enclosed(stack.labels[i]) for i in idx)
        print(
            f"{location:5s} blood pool px min/median/max {np.min(blood)}/{np.median(blood):.0f}/"
            f"{np.max(blood)}, myocardium px {np.min(myo)}/{np.median(myo):.0f}/{np.max(myo)}, "
            f"blood pool not enclosed by myocardium: {open_rings}"
        )
    subjects = [draw_subject(args.seed, i) for i in range(args.subjects)]
    t2 = np.array([s.myocardium_t2star_ms for s in subjects])
    counts = "/".join(str(c) for c in np.histogram(t2, [0.0, 10.0, 14.0, 20.0, np.inf])[0])
    black = sum(s.tissues.black_blood for s in subjects)
    columns = sum(s.scanner.phase_axis == 1 for s in subjects)
    print(
        f"myocardial T2* {t2.min():.1f}-{t2.max():.1f} ms; severe/moderate/mild/normal {counts}; "
        f"black-blood {black}; phase along columns {columns}"
    )
    spread = []
    for k in range(args.subjects):
        rows = slice(3 * k, 3 * k + 3)
        values = stack.t2star_ms[rows][stack.labels[rows] == MYOCARDIUM]
        spread.append((values.max() - values.min()) / 2 / values.mean())
    lo, med, hi = np.percentile(spread, [0, 50, 100]) * 100
    print(f"regional T2* half-range / mean per subject: {lo:.1f}% / {med:.1f}% / {hi:.1f}%")


if __name__ == "__main__":
    main()
