"""Time validation epochs of the demo with and without the T2* callback, side by side.

The demo (``conf/experiment/demo.yaml``) is composed on ``--data``, trained for ``--epochs``
epochs (or loaded from ``--ckpt``) so that the masks are a trained network's, and then
``trainer.validate`` runs ``--repeats`` times in pairs, without and with the callback (the
demo's ``callbacks.t2star`` settings; it reports after every ``trainer.validate``), alternating
so that load from other processes hits both alike. The first run with the callback also fits
the reference masks (kept for later epochs) and is reported apart; the ratio of the later runs
is what every further report during training costs. Because other processes' load makes the
pairs noisy, the time spent inside the callback's hooks is also measured within each run with
the callback and set against the rest of that run.

    cmrseg-synth outputs/demo/cohort.h5
    python benchmarks/bench_t2star_callback.py --data outputs/demo/cohort.h5 --epochs 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from lightning import Callback, LightningDataModule, LightningModule, Trainer
from omegaconf import open_dict

from cmrseg.cli.train import train
from cmrseg.inference import inference_datamodule, load_module_from_checkpoint
from cmrseg.utils.config import CONF_DIR


class _HookTimer:
    """Wraps the callback's hooks (instance attributes) and sums the wall time spent in them."""

    def __init__(self, callback: Callback) -> None:
        self.seconds = 0.0
        for name in (
            "on_validation_epoch_start",
            "on_validation_batch_end",
            "on_validation_epoch_end",
        ):
            setattr(callback, name, self._timed(getattr(callback, name)))

    def _timed(self, hook: Callable[..., None]) -> Callable[..., None]:
        def timed(*args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            hook(*args, **kwargs)
            self.seconds += time.perf_counter() - start

        return timed


def _validate_s(
    module: LightningModule, datamodule: LightningDataModule, callbacks: list[Callback]
) -> float:
    """Wall time (s) of one ``trainer.validate`` on the CPU."""
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return time.perf_counter() - start


def main() -> None:
    """Train or load the demo model, then time validation without and with the callback."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the demo cohort (labelled)")
    parser.add_argument("--ckpt", type=Path, help="a demo checkpoint instead of training")
    parser.add_argument("--epochs", type=int, default=1, help="demo epochs to train first")
    parser.add_argument("--repeats", type=int, default=4, help="pairs of validation epochs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix="bench_t2star_callback."))
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train.yaml",
            overrides=["experiment=demo", f"data.path={args.data}", "logger=none"],
            return_hydra_config=True,
        )
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.extras.print_config = False
        cfg.trainer.max_epochs = args.epochs
        cfg.test = False
        callback_cfg = cfg.callbacks.pop("t2star")
        cfg.callbacks.pop("lr_monitor")  # needs a logger
    if args.ckpt is None:
        _, objects = train(cfg)
        module, datamodule = objects["model"], objects["datamodule"]
    else:
        module, data_cfg = load_module_from_checkpoint(args.ckpt, {})
        datamodule = inference_datamodule(data_cfg, {"path": str(args.data)})
    datamodule.setup("validate")
    callback = hydra.utils.instantiate(callback_cfg, output_dir=str(out / "t2star"))
    timer = _HookTimer(callback)
    n_val = len(datamodule.split_indices("val"))
    load_start = os.getloadavg()
    print(
        f"validation epochs of the demo on {args.data}: {n_val} slices, callback on at most "
        f"{callback.max_slices} of them, {args.threads} torch threads; load average at start "
        f"{load_start[0]:.2f} (1 min), {os.cpu_count()} CPUs"
    )
    pairs, hook_shares = [], []
    for k in range(args.repeats + 1):
        plain = _validate_s(module, datamodule, [])
        timer.seconds = 0.0
        with_callback = _validate_s(module, datamodule, [callback])
        hooks = timer.seconds
        label = "first (fits the references too)" if k == 0 else f"pair {k}"
        print(
            f"{label}: without {plain:.2f} s, with {with_callback:.2f} s, "
            f"ratio {with_callback / plain:.3f}; in-run: hooks {hooks:.2f} s, "
            f"+{100 * hooks / (with_callback - hooks):.1f}% of the rest of that run"
        )
        if k:
            pairs.append((plain, with_callback))
            hook_shares.append(hooks / (with_callback - hooks))
    without = statistics.median(p for p, _ in pairs)
    with_cb = statistics.median(w for _, w in pairs)
    ratios = [w / p for p, w in pairs]
    print(
        f"median of pairs 1-{args.repeats}: without {without:.2f} s, with {with_cb:.2f} s, "
        f"ratio {statistics.median(ratios):.3f} (range {min(ratios):.3f}..{max(ratios):.3f}); "
        f"load average at end {os.getloadavg()[0]:.2f}"
    )
    print(
        f"in-run hook time, median of pairs 1-{args.repeats}: "
        f"+{100 * statistics.median(hook_shares):.1f}% of a validation epoch"
    )


if __name__ == "__main__":
    main()
