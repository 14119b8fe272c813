"""Instantiate config groups: datamodule, callbacks and loggers (entries with ``_target_``)."""

from __future__ import annotations

import logging
from typing import TypeVar

import hydra
from hydra.errors import InstantiationException
from lightning import Callback, LightningDataModule
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from cmrseg.core.errors import InputError

__all__ = [
    "instantiate_callbacks",
    "instantiate_datamodule",
    "instantiate_group",
    "instantiate_loggers",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


def instantiate_group(group: DictConfig | None, kind: type[T], name: str) -> list[T]:
    """Instantiate every entry of ``group`` that has a ``_target_``.

    An entry whose factory returns ``None`` (e.g. a logger that could not start) is left out.

    Args:
        group: The config group, e.g. ``cfg.callbacks``; ``None`` or empty gives ``[]``.
        kind: The type every object must have.
        name: Group name for messages.

    Returns:
        The objects, in config order.

    Raises:
        TypeError: The group is not a mapping or an entry builds an object of another type.
    """
    if not group:
        log.warning("No %s configured", name)
        return []
    if not isinstance(group, DictConfig):
        raise TypeError(f"{name} config must be a mapping of entries, got {type(group).__name__}")
    objects: list[T] = []
    for key, entry in group.items():
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            continue
        log.info("Instantiating %s <%s>", name, entry._target_)
        obj = hydra.utils.instantiate(entry)
        if obj is None:
            log.warning("%s %r is disabled (its factory returned None)", name, key)
            continue
        if not isinstance(obj, kind):
            raise TypeError(f"{name} {key!r} is a {type(obj).__name__}, expected {kind.__name__}")
        objects.append(obj)
    return objects


def instantiate_callbacks(callbacks_cfg: DictConfig | None) -> list[Callback]:
    """Instantiate the Lightning callbacks of ``cfg.callbacks``."""
    return instantiate_group(callbacks_cfg, Callback, "callback")


def instantiate_loggers(logger_cfg: DictConfig | None) -> list[Logger]:
    """Instantiate the Lightning loggers of ``cfg.logger``."""
    return instantiate_group(logger_cfg, Logger, "logger")


def instantiate_datamodule(data_cfg: DictConfig) -> LightningDataModule:
    """Instantiate ``cfg.data`` with plain containers (``_convert_="all"``).

    Lightning stores the datamodule's hyperparameters in checkpoints; plain lists keep them
    loadable with ``torch.load(weights_only=True)``.

    Raises:
        InputError: The datamodule refused a setting (unwrapped from Hydra's exception, so
            that the entry points report it in one line).
        TypeError: The config builds something other than a ``LightningDataModule``.
    """
    log.info("Instantiating datamodule <%s>", data_cfg.get("_target_"))
    try:
        datamodule = hydra.utils.instantiate(data_cfg, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, InputError):
            raise err.__cause__ from None
        raise
    if not isinstance(datamodule, LightningDataModule):
        raise TypeError(f"data config builds a {type(datamodule).__name__}, not a datamodule")
    return datamodule
