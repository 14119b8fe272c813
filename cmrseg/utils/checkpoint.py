"""Self-describing checkpoints: the run's model and data config travel inside the ``.ckpt``.

``cmrseg-eval`` and ``cmrseg-predict`` rebuild the network from the checkpoint alone, so a
checkpoint cannot be paired with the wrong architecture or preprocessing by mistake.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import hydra
from lightning import Callback, LightningModule, Trainer
from omegaconf import DictConfig, OmegaConf

from cmrseg.core.errors import InputError
from cmrseg.modules.transfer import load_checkpoint

__all__ = [
    "INFERENCE_SETTINGS",
    "RUN_CONFIG_KEY",
    "StoreRunConfig",
    "inference_overrides",
    "load_module_from_checkpoint",
    "slice_wise_data_config",
]

log = logging.getLogger(__name__)

RUN_CONFIG_KEY = "cmrseg_config"
# module and datamodule arguments added after checkpoints were first written, with the behaviour
# they had then
_ADDED_MODULE_ARGS = {"test_time_augmentation": "none"}
_ADDED_DATA_ARGS = {"sharing_strategy": None}
# module arguments that cmrseg-eval and cmrseg-predict may change (conf/eval.yaml, predict.yaml)
INFERENCE_SETTINGS = ("echo_fusion", "test_time_augmentation")


def inference_overrides(cfg: DictConfig) -> dict[str, Any]:
    """The inference settings of an eval or predict config (``None``: the checkpoint's value)."""
    return {key: cfg.get(key) for key in INFERENCE_SETTINGS}


class StoreRunConfig(Callback):
    """Write ``{"model": ..., "data": ...}`` (resolved, plain containers) into every checkpoint.

    Args:
        config: The run's composed config; its ``model`` and ``data`` nodes are stored.
    """

    def __init__(self, config: DictConfig) -> None:
        self.config = {
            key: OmegaConf.to_container(config[key], resolve=True) for key in ("model", "data")
        }

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Add the run config to the checkpoint dict."""
        checkpoint[RUN_CONFIG_KEY] = self.config


def load_module_from_checkpoint(
    path: str | os.PathLike[str], model_overrides: dict[str, Any]
) -> tuple[LightningModule, DictConfig]:
    """Rebuild the trained module of a ``cmrseg-train`` checkpoint with its weights.

    Args:
        path: The ``.ckpt`` file.
        model_overrides: Module arguments to change (e.g. ``{"echo_fusion": "first"}``);
            ``None`` values are ignored. Pretrained-weight copying (``init_from``) is off.

    Returns:
        The module with the checkpoint's weights, and the data config of the training run.

    Raises:
        InputError: Missing or unreadable file, not a cmrseg checkpoint, or weights that do
            not fit the stored network.
    """
    ckpt = load_checkpoint(path)
    if RUN_CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise InputError(f"{path}: not a cmrseg-train checkpoint (no stored run config)")
    stored = ckpt[RUN_CONFIG_KEY]
    model_cfg = OmegaConf.create(stored["model"])
    model_cfg.init_from = None
    for key, value in _ADDED_MODULE_ARGS.items():
        if key not in model_cfg:
            model_cfg[key] = value
    for key, value in model_overrides.items():
        if value is not None:
            model_cfg[key] = value
    module = hydra.utils.instantiate(model_cfg)
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise InputError(
            f"{path}: weights do not fit the stored network {model_cfg.net._target_}: "
            f"{' '.join(first[:2])}"
        ) from None
    log.info("Loaded %s (%s)", path, model_cfg.net._target_)
    data_cfg = OmegaConf.create(stored["data"])
    for key, value in _ADDED_DATA_ARGS.items():
        if key not in data_cfg:
            data_cfg[key] = value
    return module, data_cfg


def slice_wise_data_config(data_cfg: DictConfig, net_in_channels: int) -> DictConfig:
    """Data config that serves one sample per slice, for evaluation and prediction.

    A one-channel network trained with ``input_mode: echoes_as_samples`` (each echo its own
    sample) is evaluated per slice: the same echoes come as channels and the module fuses
    them (``echo_fusion``). ``mvn`` normalization of a one-echo sample equals
    ``mvn_per_channel`` of that echo as a channel, so the network sees identical inputs.

    Args:
        data_cfg: The training data config (``conf/data/echo_stack.yaml`` keys).
        net_in_channels: Input channels of the network.

    Returns:
        A copy with ``input_mode: echoes_as_channels`` where needed; unchanged otherwise.
    """
    out = data_cfg.copy()
    if out.get("input_mode") == "echoes_as_samples" and net_in_channels == 1:
        out.input_mode = "echoes_as_channels"
        if out.get("normalization") == "mvn":
            out.normalization = "mvn_per_channel"
    return out
