"""Which acquisition effect biases the per-slice T2*: one phantom setting changed at a time.

Synthesizes the ``paper`` cohort with a preset plus dotted overrides of the phantom's settings
(``--synth acquisition.ghosting_mm=0``) and fits every slice's global myocardium with the true
labels through :func:`cmrseg.t2star.quantify_slice` (the package default, plus dotted
overrides of the T2* settings: ``--t2star region.floor_factor=1.5``). Prints one line: per
true-T2* band (2-5, 5-10, 10-20, 20-45 ms) the median signed error of the slices with a value,
how many have one, and the share within 5% (slices without a value count as outside); then the
median absolute error over 5-45 ms, the share within 5% over 2-45 ms, and for 2-5 ms the median
absolute error, the largest error of an ``ok`` row and the count of ``below_range`` rows.

Use it on a seed the defaults are not reported on (the accuracy benchmark reports seed 1 and 4):

    python benchmarks/bench_t2star_ablation.py --preset hard --seed 3 \\
        --synth acquisition.ghosting_mm=0 [--t2star region.floor_factor=1.5] [--subjects 51]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from cmrseg.core.labels import MYOCARDIUM
from cmrseg.synth import load_cohort, load_synth_config, synthesize_subject
from cmrseg.t2star import load_t2star_config, quantify_slice

PHASE_ENCODING_AXIS = 0  # the phantom encodes phase along rows
BANDS_MS = ((2.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 45.0))


def nested(overrides: list[str]) -> dict[str, Any]:
    """``["a.b=1", "a.c=null"]`` as ``{"a": {"b": 1, "c": None}}``."""
    for item in overrides:
        if "=" not in item:
            raise SystemExit(f"--synth {item!r}: expected key.path=value")
    return OmegaConf.to_container(OmegaConf.from_dotlist(overrides))


def _subject(
    preset: str, synth: dict[str, Any], t2star: list[str], seed: int, index: int
) -> list[tuple[float, float, str]]:
    """``(true T2*, value or NaN, status)`` of the global region of each slice of a subject."""
    cfg = load_synth_config(preset, synth or None)
    plan = load_cohort("paper").plan(seed, index + 1)[index]
    config = load_t2star_config(overrides=t2star)
    rows = []
    for s in synthesize_subject(cfg, plan, workers=1):
        truth = float(np.mean(s.t2star_ms[s.labels == MYOCARDIUM]))
        result = quantify_slice(
            s.images,
            s.te_ms.astype(float),
            s.labels,
            s.rv_insertion,
            config=config,
            phase_encoding_axis=PHASE_ENCODING_AXIS,
            pixel_spacing_mm=(s.pixel_spacing_mm, s.pixel_spacing_mm),
        )[0]
        ok = result.status.value == "ok"
        rows.append((truth, result.t2star_ms if ok else np.nan, result.status.value))
    return rows


def summary(truth: np.ndarray, value: np.ndarray, status: np.ndarray) -> str:
    """The one-line summary described in the module docstring."""
    err = value / truth - 1.0
    parts = []
    for low, high in BANDS_MS:
        band = (truth >= low) & (truth < high)
        has = band & np.isfinite(err)
        bias = f"{100 * np.median(err[has]):+.1f}%" if has.any() else "-"
        within = 100 * np.mean(np.abs(err[band]) <= 0.05) if band.any() else np.nan
        parts.append(
            f"{low:.0f}-{high:.0f} ms {bias} ({has.sum()}/{band.sum()}, {within:.0f}% <=5%)"
        )
    mid = (truth >= 5) & (truth < 45) & np.isfinite(err)
    all_band = (truth >= 2) & (truth < 45)
    low = (truth >= 2) & (truth < 5)
    low_has = low & np.isfinite(err)
    low_abs = f"{100 * np.median(np.abs(err[low_has])):.1f}%" if low_has.any() else "-"
    worst = f"{100 * np.max(np.abs(err[low_has])):.0f}%" if low_has.any() else "-"
    parts.append(
        f"5-45 ms |err| {100 * np.median(np.abs(err[mid])):.2f}%; "
        f"within 5% {100 * np.mean(np.abs(err[all_band]) <= 0.05):.1f}%; "
        f"2-5 ms |err| {low_abs}, worst ok {worst}, "
        f"below_range {np.sum(status[low] == 'below_range')}"
    )
    return "; ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="hard")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--subjects", type=int, default=51, help="first N subjects of the cohort")
    parser.add_argument("--synth", nargs="*", default=[], help="phantom overrides key.path=value")
    parser.add_argument("--t2star", nargs="*", default=[], help="T2* overrides key.path=value")
    parser.add_argument("--workers", type=int, default=1, help="processes")
    args = parser.parse_args()
    job = partial(_subject, args.preset, nested(args.synth), args.t2star, args.seed)
    with ProcessPoolExecutor(args.workers) as pool:
        rows = [row for part in pool.map(job, range(args.subjects)) for row in part]
    truth, value, status = (np.array(column) for column in zip(*rows, strict=True))
    label = " ".join([args.preset, *args.synth, *args.t2star])
    line = summary(truth, value.astype(float), status)
    print(f"seed {args.seed}, {len(rows)} slices, {label}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
