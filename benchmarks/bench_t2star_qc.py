"""Per-slice QC flag against the error of the global T2* on predicted masks: the curve.

Reads a ``cmrseg-predict`` output file (``predictions.h5``: the input's ``images``, ``labels``
and true map ``t2star_ms`` plus ``labels_pred`` and, when predict measured it,
``seg_uncertainty``), fits every slice's global myocardium on the predicted mask once through
:func:`cmrseg.t2star.quantify_stack` (the ``cmrseg-predict`` path) with QC thresholds that make
every value-carrying reason appear in ``qc_reasons`` (``r2=``, ``failed_pixels=``,
``censored_pixels=``, ``ci_width=``, ``seg_uncertainty=``, ``fit_echoes=``, ``few_pixels=``),
then applies the shipped thresholds of ``conf/t2star/default.yaml`` (``qc``), sweeping one of
them at a time: first with the others off (what each reason separates alone), then with the
others at their shipped values (the curve of the shipped flag).
A slice is flagged when its row would say ``qc=review``: a reason past a threshold, a reason
without a value (noise model fallback, background with artifacts, field), or no value at all.
The truth of a slice is the mean of the true map over the reference myocardium. Issue 14
target: the flag catches >= 80% of the slices whose global T2* is off by more than 10% while
flagging <= 25% of all slices.

    python benchmarks/bench_t2star_qc.py PREDICTIONS.h5 [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import sys

import h5py
import numpy as np

from cmrseg.core.labels import MYOCARDIUM
from cmrseg.t2star import load_t2star_config, quantify_stack

#: Thresholds swept (``qc`` keys) and their values; a reason ``name=value`` is past the
#: threshold when the comparison holds.
SWEEP = {
    "min_r2": ("r2", np.less, (0.5, 0.6, 0.7, 0.8, 0.9)),
    "max_failed_share": ("failed_pixels", np.greater, (0.1, 0.2, 0.3, 0.4, 0.5)),
    "max_ci_relative_width": ("ci_width", np.greater, (0.05, 0.06, 0.07, 0.08, 0.1, 0.2, 0.5)),
    "max_censored_share": ("censored_pixels", np.greater, (0.05, 0.1, 0.25, 0.5)),
    "max_seg_uncertainty": (
        "seg_uncertainty",
        np.greater,
        (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
    ),
    "min_fit_echoes": ("fit_echoes", np.less, (0, 3, 4, 5, 6)),
}
_ALWAYS = [
    "qc.min_r2=2.0",
    "qc.max_failed_share=-1.0",
    "qc.max_censored_share=-1.0",
    "qc.max_ci_relative_width=-1.0",
    "qc.max_seg_uncertainty=-1.0",
    "qc.min_fit_echoes=99",
]


def _text(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _slices(
    path: str, overrides: list[str]
) -> tuple[np.ndarray, np.ndarray, list[dict[str, float]], np.ndarray]:
    """Truth [N], value [N] (NaN: none), reason values per slice, bare-reason flag [N]."""
    with h5py.File(path, "r") as f:
        n = f["images"].shape[0]
        labels, true_map = f["labels"][:], f["t2star_ms"][:]
        rows = quantify_stack(
            [f["images"][i] for i in range(n)],
            f["te_ms"][:],
            list(f["labels_pred"][:]),
            _text(f["subject_id"][:]),
            _text(f["slice_location"][:]),
            config=load_t2star_config(overrides=[*overrides, *_ALWAYS]),
            rv_insertion=f["rv_insertion"][:],
            phase_encoding_axis=f["phase_encoding_axis"][:],
            pixel_spacing_mm=f["pixel_spacing_mm"][:],
            field_strength_t=f["field_strength_t"][:],
            progress=False,
            seg_uncertainty=f["seg_uncertainty"][:] if "seg_uncertainty" in f else None,
        )
    glob = [r for r in rows if r["region"] == "global"]
    truth = np.array([np.mean(true_map[i][labels[i] == MYOCARDIUM]) for i in range(n)])
    value = np.array([float(r["t2star_ms"]) if r["t2star_ms"] else np.nan for r in glob])
    reasons, bare = [], []
    for r in glob:
        parts = [p for p in r["qc_reasons"].split(";") if p]
        reasons.append({k: float(v) for k, v in (p.split("=", 1) for p in parts if "=" in p)})
        bare.append(any("=" not in p for p in parts) or r["status"] not in ("ok", "below_range"))
    return truth, value, reasons, np.array(bare)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", help="predictions.h5 of cmrseg-predict (with the truth)")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="T2* settings other than conf/t2star/default.yaml, e.g. region.global_lines=all",
    )
    args = parser.parse_args()
    print("command: python benchmarks/bench_t2star_qc.py " + " ".join(sys.argv[1:]))
    qc = load_t2star_config(overrides=args.set).qc
    truth, value, reasons, bare = _slices(args.predictions, args.set)
    off = np.abs(value / truth - 1.0) > 0.10
    print(
        f"{len(truth)} slices: {np.isfinite(value).sum()} with a value, {off.sum()} of them off "
        f"by > 10%; no value: {np.sum(~np.isfinite(value))}"
    )

    def flagged(thresholds: dict[str, float]) -> np.ndarray:
        out = bare.copy()
        for key, (name, past, _) in SWEEP.items():
            out |= np.array([name in r and bool(past(r[name], thresholds[key])) for r in reasons])
        few = np.array([r.get("few_pixels", np.inf) < qc.min_pixels for r in reasons])
        return out | few

    shipped = {key: getattr(qc, key) for key in SWEEP}
    off_values = {
        **{k: np.inf for k in SWEEP},
        "min_r2": -np.inf,
        "min_fit_echoes": 0,
    }
    has = np.isfinite(value)
    if not any("seg_uncertainty" in r for r in reasons):
        print("no seg_uncertainty in the file (cmrseg-predict seg_uncertainty=none, or older)")
    for title, others in (
        ("one threshold at a time (the others off)", off_values),
        ("one threshold at a time (the others at their shipped values)", shipped),
    ):
        print(f"{title}; 'of valued': among slices with a value")
        print(f"{'threshold':>22s} {'value':>6s} {'caught':>7s} {'flagged':>8s} {'of valued':>10s}")
        for key, (_, _, values) in SWEEP.items():
            for v in sorted({*values, shipped[key]}):
                flags = flagged({**others, key: v})
                caught = flags[off].mean() if off.any() else np.nan
                mark = " (shipped)" if v == shipped[key] else ""
                print(
                    f"{key:>22s} {v:6.2f} {100 * caught:6.1f}% {100 * flags.mean():7.1f}% "
                    f"{100 * flags[has].mean():9.1f}%{mark}"
                )
    without = flagged({**shipped, "max_seg_uncertainty": np.inf})
    caught_without = without[off].mean() if off.any() else np.nan
    print(
        f"shipped thresholds without seg_uncertainty: catch {100 * caught_without:.1f}% "
        f"flagging {100 * without.mean():.1f}%"
    )
    flags = flagged(shipped)
    caught = flags[off].mean() if off.any() else np.nan
    passed = caught >= 0.8 and flags.mean() <= 0.25
    print(
        f"must reach: shipped thresholds catch {100 * caught:.1f}% (>= 80%) flagging "
        f"{100 * flags.mean():.1f}% (<= 25%): {'PASS' if passed else 'FAIL'}"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
