"""Score checkpoints on every slice of a held-out labelled cohort, to choose without the test set.

The 15 test slices of the default split say little about rare failures; a second synthetic cohort
with its own seed (none of its subjects trained any of the checkpoints) gives ten times as many
slices for choosing between recipes. Each checkpoint segments every slice of ``--data`` as
``cmrseg-eval`` would (its stored data settings, echo fusion and test-time rotations); the script
prints per checkpoint the myocardial Jaccard over slices (mean (SD) with a 95% bootstrap interval
over subjects, median, minimum, slices below 50% and 70%, mean per slice location) and, for each
further checkpoint, the paired per-slice difference against the first; with several checkpoints
(e.g. training seeds of one recipe) also the mean of their per-slice scores, with its interval
over subjects. Slices with no myocardium in either mask (Jaccard undefined) are left out of every
statistic.

    cmrseg-synth outputs/select_hard.h5 --preset hard --seed 202
    python benchmarks/bench_held_out_cohort.py --data outputs/select_hard.h5 A.ckpt B.ckpt ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from lightning import Trainer

from cmrseg.core.labels import MYOCARDIUM
from cmrseg.data.echo_stack import EchoStackFile
from cmrseg.inference import inference_datamodule, load_module_from_checkpoint, predict_stack
from cmrseg.metrics.functional import per_sample_confusion, scores_from_confusion
from cmrseg.stats import Interval, mean_interval

BOOT_SEED = 0


def slice_jaccard(ckpt: Path, data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Myocardial Jaccard (%) of every slice of ``data``, each slice's location and subject.

    Raises:
        SystemExit: The file has no labels.
    """
    module, data_cfg = load_module_from_checkpoint(ckpt, {})
    datamodule = inference_datamodule(data_cfg, {"num_workers": 0}, predict_path=data)
    info = datamodule.predict_info
    if "labels" not in info.datasets:
        raise SystemExit(f"{data}: no labels to score against")
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    pred = predict_stack(module, datamodule, trainer)
    source = EchoStackFile(info.path, info=info)
    try:
        ref = np.stack([source.read("labels", i) for i in range(info.n_slices)])
    finally:
        source.close()
    confusion = per_sample_confusion(
        torch.from_numpy(pred == MYOCARDIUM), torch.from_numpy(ref == MYOCARDIUM)
    )
    jaccard = scores_from_confusion(confusion)["jaccard"].numpy() * 100
    return jaccard, np.asarray(info.slice_location), np.asarray(info.subject_id)


def _interval(jaccard: np.ndarray, subjects: np.ndarray) -> Interval:
    return mean_interval(jaccard, list(subjects), seed=BOOT_SEED)


def main() -> None:
    """Score each checkpoint, then the paired differences against the first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="labelled echo-stack file")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("ckpts", type=Path, nargs="+", help="checkpoints; the first is the base")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [slice_jaccard(ckpt, args.data) for ckpt in args.ckpts]
    print(f"myocardial Jaccard (%) over the {len(results[0][0])} slices of {args.data}")
    for ckpt, (jaccard, location, subjects) in zip(args.ckpts, results, strict=True):
        per_location = ", ".join(
            f"{name} {np.nanmean(jaccard[location == name]):.2f}" for name in sorted(set(location))
        )
        ci = _interval(jaccard, subjects)
        print(
            f"{ckpt}: {np.nanmean(jaccard):.2f} ({np.nanstd(jaccard, ddof=1):.2f}) "
            f"[{ci.low:.2f}, {ci.high:.2f}], median "
            f"{np.nanmedian(jaccard):.2f}, min {np.nanmin(jaccard):.1f}, below 50: "
            f"{(jaccard < 50).sum()}, below 70: {(jaccard < 70).sum()}; {per_location}"
        )
    base = results[0][0]
    for ckpt, (jaccard, _, _) in zip(args.ckpts[1:], results[1:], strict=True):
        diff = jaccard - base
        print(
            f"{ckpt} - {args.ckpts[0]}: mean {np.nanmean(diff):+.2f}, "
            f"median {np.nanmedian(diff):+.2f}, "
            f"better on {(diff > 0).sum()} slices, worse on {(diff < 0).sum()}"
        )
    if len(results) > 1:
        mean = np.mean([r[0] for r in results], axis=0)
        ci = _interval(mean, results[0][2])
        print(
            f"mean of the {len(results)} checkpoints per slice: {ci.value:.2f} "
            f"[{ci.low:.2f}, {ci.high:.2f}] (95% bootstrap interval over subjects)"
        )


if __name__ == "__main__":
    main()
