"""``cmrseg-report RUNS... OUT_DIR``: collect finished runs into the study's tables and figures.

RUNS are run folders or Hydra multirun folders (their numbered job folders are the runs), in
the Run-folder format v1 (``run.json``, ``slices.csv``, ``t2star/test_table.csv``). Runs that
cannot be used are listed with the reason (``runs.csv``, ``report.md`` and the log) and left
out; the command fails (exit 2, one line) only when no usable run is left. The Figure 2 analog
re-runs inference from each run's checkpoint on the three slices it shows
(:mod:`cmrseg.inference`); ``--no-inference`` draws the reference contours only.

Example::

    cmrseg-report outputs/train/multiruns/2026-11-29_10-00-00 outputs/study
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from cmrseg.cli._common import run_cli, setup_logging
from cmrseg.core.errors import InputError
from cmrseg.report.runs import Run, collect_runs, select_runs
from cmrseg.report.study_report import cohort_file, log_study_to_wandb, write_study_report
from cmrseg.stats import DEFAULT_N_BOOT

__all__ = ["main", "report", "run_checkpoint"]

log = logging.getLogger(__name__)


def _run_config(run: Run) -> dict:
    path = run.path / ".hydra" / "config.yaml"
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def run_checkpoint(run: Run) -> Path:
    """The checkpoint a run scored: ``ckpt_path`` of an eval run, the tested one of a train run.

    A train run records its tested checkpoint in ``run.json``; without that record, its best
    checkpoint (``checkpoints/epoch_*.ckpt``), or ``last.ckpt`` when there is no best (a
    classical segmenter's calibration).

    Raises:
        InputError: No checkpoint is found.
    """
    if run.checkpoint is not None:
        if (run.path / run.checkpoint).is_file():
            return run.path / run.checkpoint
        raise InputError(f"{run.path / run.checkpoint}: the tested checkpoint is missing")
    if run.task == "eval":
        given = _run_config(run).get("ckpt_path")
        if given and Path(given).is_file():
            return Path(given)
        raise InputError(f"{run.path}: the evaluated checkpoint {given!r} is not found")
    folder = run.path / "checkpoints"
    best = sorted(folder.glob("epoch_*.ckpt"))
    if best:
        return best[-1]
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    raise InputError(f"{folder}: no checkpoint")


def inference_masks(run: Run, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """Predicted labels of some slices of a run's cohort, from the run's checkpoint.

    The checkpoint's module and preprocessing are rebuilt by :mod:`cmrseg.inference` (with the
    inference settings an eval run was given) and predict only ``indices``.
    """
    import torch
    from lightning import Trainer
    from omegaconf import OmegaConf

    from cmrseg.data.datamodule import collate_samples
    from cmrseg.inference import (
        inference_datamodule,
        inference_overrides,
        load_module_from_checkpoint,
        slice_labels,
    )

    source = cohort_file(run)
    if source is None:
        raise InputError(f"{run.path}: cohort file {run.cohort['file']!r} not found")
    overrides = (
        inference_overrides(OmegaConf.create(_run_config(run))) if run.task == "eval" else {}
    )
    module, data_cfg = load_module_from_checkpoint(run_checkpoint(run), overrides)
    datamodule = inference_datamodule(data_cfg, {"num_workers": 0}, predict_path=source)
    datamodule.setup("predict")
    dataset = torch.utils.data.Subset(datamodule.dataset("predict"), list(indices))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=len(indices), collate_fn=collate_samples
    )
    trainer = Trainer(
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    try:
        return slice_labels(trainer.predict(module, dataloaders=loader))
    finally:
        datamodule.teardown("predict")


def report(
    runs: Sequence[str],
    out_dir: str,
    *,
    proposed: str,
    n_boot: int,
    seed: int,
    inference: bool,
    wandb_mode: str,
) -> Path:
    """Collect ``runs``, write the study report into ``out_dir`` and log it to W&B.

    Returns:
        The path of ``report.md``.

    Raises:
        InputError: No usable run is left (the first refusal is named).
    """
    found, refused = collect_runs(runs)
    selection = select_runs(found, refused)
    for refusal in selection.refused:
        log.warning("refused %s: %s", refusal.path, refusal.reason)
    if not selection.in_domain:
        first = selection.refused[0]
        more = len(selection.refused) - 1
        extra = f" ({more} more refused; see the log)" if more else ""
        raise InputError(f"{first.path}: {first.reason}; no usable run left{extra}")
    summary = write_study_report(
        out_dir,
        selection,
        proposed=proposed,
        n_boot=n_boot,
        seed=seed,
        masks=inference_masks if inference else None,
    )
    for note in summary["notes"]:
        log.warning("%s", note)
    log_study_to_wandb(summary, out_dir, wandb_mode)
    path = Path(out_dir) / "report.md"
    print(
        f"cmrseg-report: {len(selection.in_domain)} runs used, {len(selection.external)} "
        f"external, {len(selection.refused)} refused; wrote {path}",
        flush=True,
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    parser = argparse.ArgumentParser(
        prog="cmrseg-report",
        description="Collect finished cmrseg runs into the study's tables and figures.",
    )
    parser.add_argument("paths", nargs="+", metavar="RUNS... OUT_DIR")
    parser.add_argument("--proposed", default="unet", help="method the others are tested against")
    parser.add_argument("--n-boot", type=int, default=DEFAULT_N_BOOT, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument(
        "--no-inference",
        action="store_true",
        help="draw Figure 2 without re-running the methods' checkpoints",
    )
    parser.add_argument(
        "--wandb",
        choices=("offline", "online", "disabled"),
        default="offline",
        help="W&B mode of the summary (WANDB_MODE wins)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if len(args.paths) < 2:
        parser.error("give at least one run folder and the output folder")
    if args.n_boot < 1:
        parser.error("--n-boot must be >= 1")
    setup_logging(args.verbose)

    def body() -> None:
        report(
            args.paths[:-1],
            args.paths[-1],
            proposed=args.proposed,
            n_boot=args.n_boot,
            seed=args.seed,
            inference=not args.no_inference,
            wandb_mode=args.wandb,
        )

    return run_cli("cmrseg-report", body)
