"""``cmrseg-train``: train one segmentation model (Hydra; see ``conf/train.yaml``).

Examples::

    cmrseg-train data.path=cohort.h5 experiment=paper
    cmrseg-train data.path=cohort.h5 model=martini_unet trainer=ddp
    cmrseg-train hydra.run.dir=outputs/train/runs/<run> ckpt_path=last   # resume a killed run
"""

from __future__ import annotations

import logging
import os
from typing import Any

import hydra
from lightning import LightningDataModule, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from cmrseg.callbacks.run_record import RunRecordCallback
from cmrseg.conf import HYDRA_CONFIG_PATH
from cmrseg.inference import StoreRunConfig
from cmrseg.utils.config import fill_missing
from cmrseg.utils.extras import extras, metric_value, task_wrapper
from cmrseg.utils.instantiate import (
    instantiate_callbacks,
    instantiate_datamodule,
    instantiate_loggers,
)
from cmrseg.utils.run_record import update_run_record

__all__ = ["main", "train"]

log = logging.getLogger(__name__)


def _tested_checkpoint(trainer: Trainer) -> str:
    """The checkpoint ``test`` scores: the best by a monitor, else the last epoch's ("": none).

    A classical segmenter's calibration takes no optimizer step, so no monitor ever saves a best:
    its last checkpoint (conf/callbacks/model_checkpoint.yaml, ``last_checkpoint``) is tested.
    """
    for monitored in (True, False):
        for callback in trainer.checkpoint_callbacks:
            if bool(callback.monitor) == monitored and callback.best_model_path:
                return callback.best_model_path
    return ""


@task_wrapper("cmrseg-train", run_task="train")
def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit a model, then test the best checkpoint.

    Validation and testing are per slice: a one-channel network trained on echoes as separate
    samples is evaluated on the slices with their echoes fused (``echo_fusion``), as
    ``cmrseg-eval`` does.

    Args:
        cfg: The composed ``train.yaml`` config.

    Returns:
        The logged metrics (``train/...``, ``val/...``, ``test/...``) and the objects built
        (``cfg``, ``datamodule``, ``model``, ``callbacks``, ``loggers``, ``trainer``).
    """
    if cfg.get("seed") is not None:
        seed_everything(cfg.seed, workers=True)

    datamodule: LightningDataModule = instantiate_datamodule(cfg.data)
    if "net" in cfg.model:  # a network (the classical segmenters have none)
        fill_missing(
            cfg.model.net,
            {
                "in_channels": datamodule.in_channels,
                "num_classes": datamodule.num_classes,
                "myocardium_classes": list(datamodule.myocardium_classes),
            },
        )
    log.info("Instantiating model <%s>", cfg.model._target_)
    model: LightningModule = hydra.utils.instantiate(cfg.model)

    callbacks = [
        *instantiate_callbacks(cfg.get("callbacks")),
        StoreRunConfig(cfg),
        RunRecordCallback(cfg.paths.output_dir, split="test"),
    ]
    loggers = instantiate_loggers(cfg.get("logger"))
    if not loggers and any(isinstance(c, LearningRateMonitor) for c in callbacks):
        # Lightning refuses a learning-rate monitor without a logger (e.g. logger=none)
        log.info("No logger: the learning-rate monitor is left out")
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    metric_dict = {k: float(v) for k, v in trainer.callback_metrics.items()}

    if cfg.test:
        best = _tested_checkpoint(trainer)
        if not best:
            log.warning("No best checkpoint (no checkpoint callback?): testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        log.info("Tested checkpoint: %s", best)
        if best:  # the tested weights, for evaluations on other data and the report's figures
            update_run_record(
                cfg.paths.output_dir, checkpoint=os.path.relpath(best, cfg.paths.output_dir)
            )
        metric_dict.update({k: float(v) for k, v in trainer.callback_metrics.items()})

    objects = {
        "cfg": cfg,
        "datamodule": datamodule,
        "model": model,
        "callbacks": callbacks,
        "loggers": loggers,
        "trainer": trainer,
    }
    return metric_dict, objects


@hydra.main(version_base="1.3", config_path=HYDRA_CONFIG_PATH, config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    """Console entry point; returns ``cfg.optimized_metric`` for hyperparameter sweepers."""
    extras(cfg)
    metric_dict, _ = train(cfg)
    return metric_value(metric_dict, cfg.get("optimized_metric"))
