r"""``cmrseg-predict``: segment every slice of an echo-stack file (Hydra; ``conf/predict.yaml``).

Writes ``output/predictions.h5`` (the input plus ``labels_pred`` and ``t2star_map_ms``) and
``output/t2star.csv`` (global and sector T2* per slice, contract section 2), each atomically.
The network and its preprocessing come from the checkpoint; the input needs no labels. T2*
settings: ``conf/t2star/default.yaml`` or ``t2star_config=FILE``.

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
import torch
from lightning import LightningDataModule, Trainer
from omegaconf import DictConfig

from cmrseg.conf import HYDRA_CONFIG_PATH
from cmrseg.core.errors import InputError
from cmrseg.data.echo_stack import inspect_echo_stack, read_echo_stack, write_echo_stack
from cmrseg.t2star import load_t2star_config, quantify_stack, t2star_map, write_t2star_csv
from cmrseg.utils.checkpoint import (
    inference_overrides,
    load_module_from_checkpoint,
    slice_wise_data_config,
)
from cmrseg.utils.extras import extras, task_wrapper
from cmrseg.utils.instantiate import instantiate_datamodule

__all__ = ["PREDICTIONS_FILE", "T2STAR_FILE", "main", "predict"]

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.h5"
T2STAR_FILE = "t2star.csv"


def _assemble_labels(batches: list[dict[str, torch.Tensor]], n_slices: int) -> np.ndarray:
    """Put per-batch ``labels [B, H, W]`` into slice order using ``sample_id`` (slice index)."""
    labels = torch.cat([b["labels"] for b in batches]).cpu().numpy().astype(np.uint8)
    slice_index = torch.cat([b["sample_id"] for b in batches]).cpu().numpy()
    if sorted(slice_index.tolist()) != list(range(n_slices)):
        raise RuntimeError(f"prediction covers slices {slice_index.tolist()}, expected {n_slices}")
    out = np.empty((n_slices, *labels.shape[1:]), dtype=np.uint8)
    out[slice_index] = labels
    return out


@task_wrapper("cmrseg-predict")
def predict(cfg: DictConfig) -> dict[str, Any]:
    """Segment every slice of ``cfg.input``, fit T2*, write ``predictions.h5`` and ``t2star.csv``.

    Args:
        cfg: The composed ``predict.yaml`` config.

    Returns:
        ``{"predictions": Path, "t2star_csv": Path, "labels_pred": uint8 [N, H, W]}``.
    """
    input_path = Path(cfg.input)
    output_dir = Path(cfg.output)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir}: output must be a folder")
    info = inspect_echo_stack(input_path)
    model, stored_data = load_module_from_checkpoint(cfg.ckpt_path, inference_overrides(cfg))
    data_cfg = slice_wise_data_config(stored_data, model.in_channels)
    data_cfg.path = None
    data_cfg.predict_path = str(input_path)
    data_cfg.split_file = None
    data_cfg.augmentation = None
    if cfg.get("batch_size"):
        data_cfg.batch_size = cfg.batch_size
    datamodule: LightningDataModule = instantiate_datamodule(data_cfg)
    trainer: Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
    if trainer.world_size != 1:
        raise InputError("cmrseg-predict runs in one process; use trainer=default or trainer=gpu")
    batches = trainer.predict(model, datamodule=datamodule)
    labels_pred = _assemble_labels(batches, info.n_slices)

    stack = read_echo_stack(input_path)
    stack.labels_pred = labels_pred
    t2star_cfg = load_t2star_config(cfg.get("t2star_config"))
    stack.t2star_map_ms = np.stack(
        [
            t2star_map(stack.images[i], stack.te_ms[i], labels_pred[i], t2star_cfg).t2star_ms
            for i in range(stack.n_slices)
        ]
    ).astype(np.float32)
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
        progress=False,
    )
    out_path, csv_path = output_dir / PREDICTIONS_FILE, output_dir / T2STAR_FILE
    write_echo_stack(out_path, stack)
    write_t2star_csv(csv_path, rows)
    log.info("Wrote %s and %s (%d slices)", out_path, csv_path, info.n_slices)
    return {"predictions": out_path, "t2star_csv": csv_path, "labels_pred": labels_pred}


@hydra.main(version_base="1.3", config_path=HYDRA_CONFIG_PATH, config_name="predict.yaml")
def main(cfg: DictConfig) -> None:
    """Console entry point."""
    extras(cfg)
    predict(cfg)
