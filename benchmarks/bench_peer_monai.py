"""Peer comparison: the proposed U-Net against MONAI's UNet on the same data, split and CPU time.

Trains the proposed U-Net with the demo recipe (``experiment=demo``: 16..256 features, Dice + CE,
AdamW, poly schedule, 12 epochs), then MONAI's ``UNet`` as a MONAI user would train it
(``experiment=monai_peer``: residual units, ``monai.losses.DiceCELoss``, Adam at 1e-3) on the same
cohort, subject split, augmentation, training patches and threads, stopped by
``trainer.max_time`` at the proposed run's training wall time. Both last checkpoints are tested by
``cmrseg-eval`` on the test subjects; prints both test Jaccards and their ratio (target >= 1).
The T2* callback is off during training in both arms (it is no part of either recipe's cost).

    python benchmarks/bench_peer_monai.py [--data COHORT.h5] [--out outputs/peer_monai]

Needs MONAI (``pip install -e '.[dev]'`` installs it).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

COMMON = [
    "test=false",
    "extras.print_config=false",
    "logger=csv",
    "callbacks.t2star.every_n_epochs=0",
]


def _dhms(seconds: int) -> str:
    """``DD:HH:MM:SS``, the string form of ``Trainer(max_time=...)``."""
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    return f"{days:02d}:{h:02d}:{m:02d}:{s:02d}"


def run(cmd: list[str], log: Path) -> float:
    """Run a command with its output in ``log``; return its wall time in seconds."""
    start = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def train_and_test(name: str, overrides: list[str], data: Path, out: Path) -> dict[str, Any]:
    """Train one arm, test its last checkpoint; return wall times, epochs and test metrics."""
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=True)
    train_s = run(
        [
            "cmrseg-train",
            *overrides,
            f"data.path={data}",
            f"hydra.run.dir={run_dir}/train",
            *COMMON,
        ],
        run_dir / "train.log",
    )
    ckpt = run_dir / "train" / "checkpoints" / "last.ckpt"
    epochs = torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"] + 1
    run(
        [
            "cmrseg-eval",
            f"ckpt_path={ckpt}",
            f"hydra.run.dir={run_dir}/eval",
            "extras.print_config=false",
            "callbacks=none",
        ],
        run_dir / "eval.log",
    )
    with (run_dir / "eval" / "metrics.csv").open() as f:
        metrics = {
            row["metric"]: (float(row["mean"]), float(row["sd"])) for row in csv.DictReader(f)
        }
    return {"train_s": train_s, "epochs": epochs, **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="cohort file (default: synthesize the default)")
    parser.add_argument("--out", type=Path, default=Path("outputs/peer_monai"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        data = args.out / "cohort.h5"
        if not data.exists():
            run(["cmrseg-synth", str(data), "--no-progress"], args.out / "synth.log")

    proposed = train_and_test("proposed", ["experiment=demo"], data, args.out)
    budget_s = int(proposed["train_s"])
    monai = train_and_test(
        "monai",
        ["experiment=monai_peer", f"++trainer.max_time='{_dhms(budget_s)}'"],
        data,
        args.out,
    )

    print(f"data: {data}; test metrics: mean (SD) over test slices")
    print(f"{'':26} {'train s':>8} {'epochs':>7} {'Jaccard %':>14} {'Dice %':>14} {'HD95 mm':>12}")
    for name, r in (("proposed U-Net (demo)", proposed), ("MONAI UNet, Dice+CE, Adam", monai)):
        cells = [f"{r[m][0]:7.2f} ({r[m][1]:4.2f})" for m in ("jaccard", "dice", "hd95")]
        print(f"{name:26} {r['train_s']:8.0f} {r['epochs']:7d} " + " ".join(cells))
    ratio = proposed["jaccard"][0] / monai["jaccard"][0]
    print(f"ratio of test Jaccards proposed / MONAI: {ratio:.3f} (target >= 1)")


if __name__ == "__main__":
    main()
