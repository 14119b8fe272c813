"""``cmrseg-eval``: evaluate a trained checkpoint on a split or a whole cohort (``conf/eval.yaml``).

The network and the data settings (input mode, echoes, target, normalization, split) are
rebuilt from the checkpoint; ``data.*`` keys set here override the stored ones (e.g. another
file). Metrics are per slice: a one-channel network trained on echoes as separate samples sees
each slice's echoes fused by ``echo_fusion``. Prints the Table-1 summary (mean (SD) over
slices) and, with the T2* callback (the default), the T2* agreement per slice and per subject
with bootstrap intervals over subjects; writes ``metrics.csv`` and ``metrics.json`` (with the
T2* summary under ``t2star``) into the run folder.

``split``: ``test`` or ``val`` of the training run's subject split (read back from its
``split.json``), or ``all``: every slice of ``data.path`` (labels needed), for an external
evaluation on a cohort the model never trained on. ``all`` makes, reads and writes no split
file (``data.test_subjects=all``); it runs as a test, so the metrics are ``test/...`` and the
T2* callback writes ``t2star/test_table.csv``.

Examples::

    cmrseg-eval ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt
    cmrseg-eval ckpt_path=.../last.ckpt data.path=other_cohort.h5 split=all
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from lightning import Trainer
from omegaconf import DictConfig, OmegaConf

from cmrseg.callbacks import T2StarCallback
from cmrseg.callbacks.run_record import RunRecordCallback
from cmrseg.conf import HYDRA_CONFIG_PATH
from cmrseg.core.errors import InputError
from cmrseg.inference import (
    INFERENCE_SETTINGS,
    checkpoint_train_cohort,
    inference_datamodule,
    inference_overrides,
    load_module_from_checkpoint,
)
from cmrseg.report import (
    format_agreement_summary,
    format_table1,
    json_number,
    table1_rows,
    write_table1,
)
from cmrseg.utils.extras import extras, task_wrapper
from cmrseg.utils.instantiate import instantiate_callbacks, instantiate_loggers
from cmrseg.utils.run_record import update_run_record

__all__ = ["evaluate", "main"]

log = logging.getLogger(__name__)


@task_wrapper("cmrseg-eval", run_task="eval")
def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Evaluate a checkpoint on the test or validation split, or on every slice (``all``).

    Args:
        cfg: The composed ``eval.yaml`` config.

    Returns:
        The ``test/...`` (split test or all) or ``val/...`` metrics and the objects built
        (``cfg``, ``datamodule``, ``model``, ``trainer``).
    """
    if cfg.split not in ("test", "val", "all"):
        raise InputError(f"split: {cfg.split!r} is not 'test', 'val' or 'all'")
    model, stored_data = load_module_from_checkpoint(cfg.ckpt_path, inference_overrides(cfg))
    # the evaluated weights (a model of its own, e.g. one fold's of a multirun)
    update_run_record(cfg.paths.output_dir, checkpoint=str(Path(cfg.ckpt_path).resolve()))
    data_overrides = OmegaConf.to_container(cfg.data) if cfg.get("data") else {}
    if cfg.split == "all":
        data_overrides["test_subjects"] = "all"
    datamodule = inference_datamodule(stored_data, data_overrides)
    trainer: Trainer = hydra.utils.instantiate(
        cfg.trainer,
        logger=instantiate_loggers(cfg.get("logger")),
        callbacks=[
            *instantiate_callbacks(cfg.get("callbacks")),
            RunRecordCallback(
                cfg.paths.output_dir,
                split=cfg.split,
                train_cohort=checkpoint_train_cohort(cfg.ckpt_path),
            ),
        ],
    )
    stage = "val" if cfg.split == "val" else "test"
    run = trainer.validate if stage == "val" else trainer.test
    results = run(model, datamodule=datamodule, verbose=False)
    metric_dict = {k: float(v) for k, v in results[0].items()} if results else {}

    if trainer.is_global_zero:
        rows = table1_rows(metric_dict, f"{stage}/")
        title = (
            f"{cfg.split} metrics of {cfg.ckpt_path} on {datamodule.path} (mean (SD) over slices)"
        )
        print(format_table1(rows, title), flush=True)
        t2star = next((c for c in trainer.callbacks if isinstance(c, T2StarCallback)), None)
        t2star_summary = t2star.last_summary if t2star is not None else {}
        if t2star_summary:
            print(format_agreement_summary(t2star_summary), flush=True)
        csv_path, json_path = write_table1(
            rows,
            cfg.paths.output_dir,
            {
                "ckpt_path": str(cfg.ckpt_path),
                "split": cfg.split,
                **{key: model.hparams[key] for key in INFERENCE_SETTINGS if key in model.hparams},
                "data": dict(datamodule.hparams),
                "t2star": {k: json_number(v) for k, v in t2star_summary.items()},
            },
        )
        log.info("Wrote %s and %s", csv_path, json_path)
    objects = {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}
    return metric_dict, objects


@hydra.main(version_base="1.3", config_path=HYDRA_CONFIG_PATH, config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    """Console entry point."""
    extras(cfg)
    evaluate(cfg)
