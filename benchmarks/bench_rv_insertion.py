"""Anterior RV insertion point found in the image, against the phantom's marked point.

Synthesizes the ``paper`` cohort for each preset, drops the file's ``rv_insertion`` and finds
the point with :func:`cmrseg.t2star.estimate_rv_insertion_from_image` (the default
``region.rv_insertion_fallback: image`` of ``conf/t2star/default.yaml``) on the true labels.
The error is the angle around the LV centroid between the estimate and the true point; a slice
whose estimate is missing or below ``region.rv_insertion_min_confidence`` counts as a miss (its
sector rows say ``no_reference_point``). Issue 14 target: within 15 degrees on >= 90% of base
and mid slices. For reference the fixed-angle fallback (``standard_orientation``, 120 degrees)
runs on the same slices.

    python benchmarks/bench_rv_insertion.py [--subjects 51] [--presets clinical hard]
        [--seed 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np

from cmrseg.core.geometry import estimate_rv_insertion, lv_centroid
from cmrseg.synth import load_cohort, load_synth_config, synthesize_subject
from cmrseg.t2star import estimate_rv_insertion_from_image, load_t2star_config

TOLERANCE_DEG = 15.0


def _angle_error(labels: np.ndarray, point: tuple[float, float], truth: np.ndarray) -> float:
    """Signed angle (degrees) from the true point to ``point`` around the LV centroid."""
    row0, col0 = lv_centroid(labels)
    est = np.degrees(np.arctan2(-(point[0] - row0), point[1] - col0))
    true = np.degrees(np.arctan2(-(truth[0] - row0), truth[1] - col0))
    return float((est - true + 180.0) % 360.0 - 180.0)


def _subject(preset: str, seed: int, index: int) -> list[tuple[str, float, float, float]]:
    """Per slice: location, image-estimate error (NaN: none), its confidence, fixed-angle error."""
    cfg = load_synth_config(preset)
    region = load_t2star_config().region
    plan = load_cohort("paper").plan(seed, index + 1)[index]
    out = []
    for s in synthesize_subject(cfg, plan, workers=1):
        estimate = estimate_rv_insertion_from_image(s.images, s.labels)
        error, confidence = np.nan, 0.0
        if estimate is not None:
            error = _angle_error(s.labels, estimate.point, s.rv_insertion)
            confidence = estimate.confidence
        fixed = estimate_rv_insertion(s.labels, region.standard_rv_angle_deg)
        fixed_error = np.nan if fixed is None else _angle_error(s.labels, fixed, s.rv_insertion)
        out.append((s.location, error, confidence, fixed_error))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=51, help="first N subjects of the cohort")
    parser.add_argument("--presets", nargs="+", default=["clinical", "hard"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="processes")
    args = parser.parse_args()
    print("command: python benchmarks/bench_rv_insertion.py " + " ".join(sys.argv[1:]))
    min_confidence = load_t2star_config().region.rv_insertion_min_confidence
    print(
        f"cohort paper, first {args.subjects} subjects, seed {args.seed}; "
        f"min confidence {min_confidence}"
    )
    failed = False
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        for preset in args.presets:
            rows = [
                r
                for part in pool.map(partial(_subject, preset, args.seed), range(args.subjects))
                for r in part
            ]
            print(f"\npreset {preset}")
            for name, locations in (("base+mid", ("base", "mid")), ("apex", ("apex",))):
                sel = [r for r in rows if r[0] in locations]
                error = np.array([r[1] for r in sel])
                confident = np.array([r[2] >= min_confidence for r in sel])
                fixed = np.array([r[3] for r in sel])
                hit = confident & (np.abs(error) <= TOLERANCE_DEG)
                used = confident & np.isfinite(error)
                print(
                    f"  {name:8s} {len(sel):4d} slices: image estimate within "
                    f"{TOLERANCE_DEG:.0f} deg {100 * hit.mean():5.1f}% (confident "
                    f"{100 * confident.mean():5.1f}%, median |err| of confident "
                    f"{np.median(np.abs(error[used])) if used.any() else np.nan:.1f} deg, "
                    f"largest {np.max(np.abs(error[used])) if used.any() else np.nan:.1f}); "
                    f"fixed angle: within {100 * np.mean(np.abs(fixed) <= TOLERANCE_DEG):.1f}%"
                )
                if name == "base+mid":
                    passed = hit.mean() >= 0.9
                    failed |= not passed
                    print(
                        f"  must reach: within 15 deg on >= 90% of base and mid slices: "
                        f"{'PASS' if passed else 'FAIL'}"
                    )
    print(f"\nwall time {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
