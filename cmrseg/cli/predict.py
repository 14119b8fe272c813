r"""``cmrseg-predict``: segment every slice of an echo-stack file (Hydra; ``conf/predict.yaml``).

Writes ``output/predictions.h5`` (the input plus ``labels_pred``, ``t2star_map_ms`` and, with
``seg_uncertainty: rot90``, the per-slice ``seg_uncertainty`` that the T2* QC flag uses),
``output/t2star.csv`` (global and sector T2* per slice, contract section 2) and, with
``report: true``, the per-patient report ``output/report/`` (:mod:`cmrseg.report.patient`) as
one unit: all are written into a temporary folder, ``fsync``-ed and moved into ``output`` only
when all are complete, so a failure leaves no partial result. The run's log and composed
config go to ``output/logs``. The network and its preprocessing come from the checkpoint; the
input needs no labels. T2* settings: ``conf/t2star/default.yaml`` or ``t2star_config=FILE``.

Example::

    cmrseg-predict ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt \\
        input=scans.h5 output=results/
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from lightning import LightningModule, Trainer
from omegaconf import DictConfig

from cmrseg import __version__
from cmrseg.conf import HYDRA_CONFIG_PATH
from cmrseg.core.atomic import atomic_dir
from cmrseg.core.errors import InputError
from cmrseg.data.echo_stack import inspect_echo_stack, read_echo_stack, write_echo_stack
from cmrseg.inference import (
    inference_datamodule,
    inference_overrides,
    load_module_from_checkpoint,
    predict_slices,
)
from cmrseg.report.patient import write_patient_reports
from cmrseg.t2star import T2StarConfig, load_t2star_config, quantify_stack, write_t2star_csv
from cmrseg.utils.extras import extras, task_wrapper

__all__ = ["PREDICTIONS_FILE", "REPORT_DIR", "T2STAR_FILE", "main", "predict"]

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.h5"
T2STAR_FILE = "t2star.csv"
REPORT_DIR = "report"


@task_wrapper("cmrseg-predict")
def predict(cfg: DictConfig) -> dict[str, Any]:
    """Segment every slice of ``cfg.input``, fit T2*, write the predictions, table and report.

    Args:
        cfg: The composed ``predict.yaml`` config.

    Returns:
        ``{"predictions": Path, "t2star_csv": Path, "report": Path | None,
        "labels_pred": uint8 [N, H, W]}`` (``report``: the folder, ``None`` without one).
    """
    input_path = Path(cfg.input)
    output_dir = Path(cfg.output)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir}: output must be a folder")
    info = inspect_echo_stack(input_path)
    model, stored_data = load_module_from_checkpoint(cfg.ckpt_path, inference_overrides(cfg))
    datamodule = inference_datamodule(
        stored_data, {"batch_size": cfg.get("batch_size")}, predict_path=input_path
    )
    trainer: Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
    labels_pred, seg_uncertainty = predict_slices(model, datamodule, trainer)

    stack = read_echo_stack(input_path)
    stack.labels_pred = labels_pred
    measured = bool(np.isfinite(seg_uncertainty).any())
    stack.seg_uncertainty = seg_uncertainty if measured else None
    t2star_cfg = load_t2star_config(cfg.get("t2star_config"))
    stack.t2star_map_ms = np.empty(labels_pred.shape, np.float32)
    rows = quantify_stack(
        stack.images,
        stack.te_ms,
        labels_pred,
        stack.subject_id,
        stack.slice_location,
        config=t2star_cfg,
        rv_insertion=stack.rv_insertion,
        phase_encoding_axis=stack.phase_encoding_axis,
        pixel_spacing_mm=stack.pixel_spacing_mm,
        field_strength_t=stack.field_strength_t,
        progress=False,
        t2star_maps=stack.t2star_map_ms,
        seg_uncertainty=stack.seg_uncertainty,
    )
    with atomic_dir(output_dir) as tmp:
        write_echo_stack(tmp / PREDICTIONS_FILE, stack)
        write_t2star_csv(tmp / T2STAR_FILE, rows)
        if cfg.report:
            method = _method_name(model, Path(cfg.ckpt_path).name, t2star_cfg)
            write_patient_reports(
                tmp / REPORT_DIR, stack, rows, t2star_cfg, method=method, version=__version__
            )
    out_path, csv_path = output_dir / PREDICTIONS_FILE, output_dir / T2STAR_FILE
    report_dir = output_dir / REPORT_DIR if cfg.report else None
    log.info("Wrote %s and %s (%d slices)", out_path, csv_path, info.n_slices)
    if report_dir is not None:
        log.info("Per-patient report: %s", report_dir / "index.html")
    return {
        "predictions": out_path,
        "t2star_csv": csv_path,
        "report": report_dir,
        "labels_pred": labels_pred,
    }


def _method_name(model: LightningModule, checkpoint: str, t2star_cfg: T2StarConfig) -> str:
    """What made the report's masks and values: network (or classical method), checkpoint, T2*."""
    net = getattr(model, "net", None)
    name = type(net).__name__ if net is not None else str(model.hparams.get("method", ""))
    region = t2star_cfg.region
    return (
        f"{name or type(model).__name__} (checkpoint {checkpoint}); T2*: {region.estimator} "
        f"of the {region.wall} wall, {t2star_cfg.fit.model} signal model"
    )


@hydra.main(version_base="1.3", config_path=HYDRA_CONFIG_PATH, config_name="predict.yaml")
def main(cfg: DictConfig) -> None:
    """Console entry point."""
    extras(cfg)
    predict(cfg)
