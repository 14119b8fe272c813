"""Segmenting files acquired otherwise than the training file (issue 16 item 2).

Given a checkpoint trained on a cohort of the default phantom (``clinical``: 192 x 256 px of
1.40625 mm, 8 echoes 2.97-21.68 ms, 1.5 T), synthesizes held-out subjects (``--seed``, first
``--subjects`` of the ``paper`` cohort) in several acquisitions: as trained; other pixel spacing
and matrix; other echo count and times; 3 T; and the ``randomized`` preset. Each file is predicted
with the checkpoint as written (its stored training echo times and spacing: decay and grid
resampled, :mod:`cmrseg.inference`) and as a checkpoint without them is (echoes by index, no
resampling). Prints per family and mode the myocardial Jaccard per slice: mean (SD), the share
of slices below 0.5 and the apex mean.

    python benchmarks/bench_any_acquisition.py CKPT [--subjects N] [--seed S]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmrseg.core.errors import InputError
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.data.echo_stack import EchoStack, write_echo_stack
from cmrseg.inference import (
    RUN_CONFIG_KEY,
    inference_datamodule,
    load_module_from_checkpoint,
    predict_stack,
)
from cmrseg.synth import load_cohort, load_synth_config, synthesize_cohort

FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "as trained (clinical)": ("clinical", {}),
    "1.0 mm, 256 x 320 px": ("clinical", {"grid": {"shape": [256, 320], "pixel_spacing_mm": 1.0}}),
    "1.8 mm, 160 x 192 px": ("clinical", {"grid": {"shape": [160, 192], "pixel_spacing_mm": 1.8}}),
    "10 echoes 1.2-18 ms": (
        "clinical",
        {"echoes": {"te_first_ms": 1.2, "te_last_ms": 18.0, "n_echoes": 10}},
    ),
    "3 T": ("clinical", {"field_strength_t": 3.0}),
    "randomized preset": ("randomized", {}),
}


def jaccard_per_slice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Myocardial Jaccard of each slice, ``[N]``."""
    p, t = pred == MYOCARDIUM, truth == MYOCARDIUM
    inter = (p & t).sum(axis=(1, 2))
    union = (p | t).sum(axis=(1, 2))
    return inter / np.maximum(union, 1)


def predict(ckpt: Path, stack: EchoStack, folder: Path) -> np.ndarray:
    path = folder / "input.h5"
    write_echo_stack(path, stack)
    module, data_cfg = load_module_from_checkpoint(ckpt, {})
    datamodule = inference_datamodule(data_cfg, {"num_workers": 0}, predict_path=path)
    return predict_stack(module, datamodule)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    torch.set_num_threads(2)
    cohort = load_cohort("paper")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        raw = torch.load(args.ckpt, weights_only=True)
        if "acquisition" not in raw[RUN_CONFIG_KEY]:
            raise SystemExit(f"{args.ckpt}: no stored acquisition (trained before it was stored)")
        print(f"training acquisition: {raw[RUN_CONFIG_KEY]['acquisition']}")
        del raw[RUN_CONFIG_KEY]["acquisition"]
        old = folder / "without_acquisition.ckpt"
        torch.save(raw, old)
        print(f"{args.subjects} subjects, seed {args.seed}; myocardial Jaccard per slice")
        print(f"{'family':24s} {'mode':22s} {'mean (SD)':>15s} {'< 0.5':>6s} {'apex':>6s}")
        for name, (preset, overrides) in FAMILIES.items():
            cfg = load_synth_config(preset, overrides or None)
            stack = synthesize_cohort(cfg, cohort, args.seed, args.subjects)
            apex = np.array([loc == "apex" for loc in stack.slice_location])
            for mode, ckpt in (("resampled (stored)", args.ckpt), ("as stored (no resamp.)", old)):
                try:
                    labels = predict(ckpt, stack, folder)
                except InputError as err:  # a refusal is a result here
                    print(f"{name:24s} {mode:22s} refused: {str(err).splitlines()[0][:60]}")
                    continue
                j = jaccard_per_slice(labels, stack.labels)
                print(
                    f"{name:24s} {mode:22s} {j.mean():8.3f} ({j.std():.3f}) "
                    f"{(j < 0.5).mean():6.0%} {j[apex].mean():6.3f}"
                )


if __name__ == "__main__":
    main()
