"""Time validation epochs of the demo with and without the T2* callback, side by side.

1. Training: the demo (``conf/experiment/demo.yaml``) is trained on ``--data`` for ``--epochs``
   epochs with the callback reporting after every validation (the demo reports every 6th);
   for each validation epoch the script prints its wall time and the time spent inside the
   callback's hooks, and the ratio of the two parts. Predictions change from epoch to epoch as
   they do in a real run; the first report also fits the reference masks (kept afterwards).
2. Pairs: with the trained weights, ``trainer.validate`` runs ``--repeats`` times in pairs,
   without and with the callback, alternating so that load from other processes hits both
   alike; the predictions are the same in every run, so after the first run the callback fits
   no pixel again (its best case).

The CPU may be shared: the load average is printed; the in-run hook share is the robust number.

    cmrseg-synth outputs/demo/cohort.h5
    python benchmarks/bench_t2star_callback.py --data outputs/demo/cohort.h5 --epochs 3
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

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from lightning import Callback, LightningDataModule, LightningModule, Trainer
from omegaconf import open_dict

from cmrseg.callbacks import T2StarCallback
from cmrseg.cli.train import train
from cmrseg.conf import CONF_DIR

HOOKS = ("on_validation_epoch_start", "on_validation_batch_end", "on_validation_epoch_end")


class TimedT2StarCallback(T2StarCallback):
    """The T2* callback with the wall time of its validation hooks summed in ``seconds``."""

    seconds = 0.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in HOOKS:
            setattr(self, name, self._timed(getattr(self, name)))

    def _timed(self, hook: Callable[..., None]) -> Callable[..., None]:
        def timed(*args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            hook(*args, **kwargs)
            self.seconds += time.perf_counter() - start

        return timed


class ValidationClock(Callback):
    """Prints each validation's wall time and the share the T2* callback's hooks took of it."""

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the clock."""
        self.start = time.perf_counter()
        self.hooks_before = _t2star(trainer).seconds

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Print the epoch's times (not the sanity check)."""
        total = time.perf_counter() - self.start
        hooks = _t2star(trainer).seconds - self.hooks_before
        if not trainer.sanity_checking:
            print(
                f"training epoch {trainer.current_epoch}: validation {total:.2f} s, of which "
                f"T2* callback {hooks:.2f} s: +{100 * hooks / (total - hooks):.1f}%",
                flush=True,
            )


def _t2star(trainer: Trainer) -> TimedT2StarCallback:
    (callback,) = [c for c in trainer.callbacks if isinstance(c, TimedT2StarCallback)]
    return callback


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
    """Train the demo with the callback every epoch, then time validation pairs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the demo cohort (labelled)")
    parser.add_argument("--epochs", type=int, default=3, help="demo epochs to train")
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
        cfg.trainer.enable_progress_bar = False
        cfg.test = False
        cfg.callbacks.pop("lr_monitor")  # needs a logger
        cfg.callbacks.pop("progress_bar", None)
        cfg.callbacks.t2star._target_ = f"{__name__}.TimedT2StarCallback"
        cfg.callbacks.t2star.every_n_epochs = 1
        cfg.callbacks.clock = {"_target_": f"{__name__}.ValidationClock"}
    print(
        f"demo on {args.data}, {args.threads} torch threads, {os.cpu_count()} CPUs; "
        f"load average at start {os.getloadavg()[0]:.2f} (1 min)",
        flush=True,
    )
    _, objects = train(cfg)
    module, datamodule = objects["model"], objects["datamodule"]
    (callback,) = [c for c in objects["callbacks"] if isinstance(c, TimedT2StarCallback)]
    print(
        f"validation split: {len(datamodule.split_indices('val'))} slices, callback on at most "
        f"{callback.max_slices}; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    pairs, hook_shares = [], []
    for k in range(1, args.repeats + 1):
        plain = _validate_s(module, datamodule, [])
        callback.seconds = 0.0
        with_callback = _validate_s(module, datamodule, [callback])
        hooks = callback.seconds
        label = f"pair {k}"
        print(
            f"{label}: without {plain:.2f} s, with {with_callback:.2f} s, "
            f"ratio {with_callback / plain:.3f}; in-run: hooks {hooks:.2f} s, "
            f"+{100 * hooks / (with_callback - hooks):.1f}% of the rest of that run",
            flush=True,
        )
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
