"""The shipped configuration (package ``cmrseg.conf``: the repository's ``conf/`` folder).

One place says where the configs are, for every layer and every kind of install: Hydra composes
the training, evaluation and prediction configs from :data:`HYDRA_CONFIG_PATH`, and the T2* and
phantom settings (``t2star/``, ``synth/``) are read from :data:`CONF_DIR` by
:func:`load_structured`, which merges YAML files onto a dataclass schema with OmegaConf: unknown
and missing keys, wrong types and non-finite numbers are refused by name.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from cmrseg.core.errors import InputError

__all__ = ["CONF_DIR", "HYDRA_CONFIG_PATH", "ConfigError", "load_structured", "stage_widths"]

#: This folder: ``conf/`` of the repository in an editable install, ``cmrseg/conf`` in a wheel.
CONF_DIR = Path(__file__).resolve().parent
#: The ``config_path`` of the Hydra entry points (``hydra.main``, ``initialize_config_module``).
HYDRA_CONFIG_PATH = "pkg://cmrseg.conf"

T = TypeVar("T")
Source = str | os.PathLike[str] | Mapping[str, Any]


class ConfigError(InputError):
    """A settings file or override is refused (the message names the file and the key)."""


def load_structured(
    schema: type[T],
    sources: Sequence[Source],
    dotlist: Sequence[str] = (),
    *,
    name: str | None = None,
    retired: Mapping[str, str] | None = None,
    error: type[ConfigError] = ConfigError,
) -> T:
    """Merge YAML files and mappings, then dotted overrides, onto a dataclass and build it.

    Args:
        schema: A dataclass whose fields have no defaults: every key must be set once merged.
        sources: YAML file paths or mappings, merged in order (later ones win).
        dotlist: Overrides such as ``["fit.model=mono", "noise_sigma=null"]``, merged last.
        name: How messages name a mapping source (default ``overrides``).
        retired: Keys that no longer exist (dotted), each with the hint printed when it is used.
        error: The exception raised (a :class:`ConfigError`).

    Returns:
        The schema instance (its ``__post_init__`` checks ran).

    Raises:
        ConfigError: A file is unreadable, or a key is unknown, missing, mistyped or out of range.
    """
    label = name or "overrides"
    cfg = OmegaConf.structured(schema)
    try:
        for source in sources:
            label = name or "overrides"
            if not isinstance(source, Mapping):
                label = str(source)
                source = _read_yaml(Path(source), error)
            cfg = OmegaConf.merge(cfg, source)
            _check_finite(cfg, "", label, error)
        if dotlist:
            label = "overrides"
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(dotlist)))
            _check_finite(cfg, "", label, error)
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except ConfigError:
        raise
    except ConfigKeyError as err:
        hint = (retired or {}).get(err.full_key)
        raise error(f"{label}: unknown key {err.full_key!r}{f': {hint}' if hint else ''}") from None
    except MissingMandatoryValue as err:
        raise error(f"{label}: missing key {err.full_key!r}") from None
    except OmegaConfBaseException as err:
        raise error(f"{label}: {err.full_key}: {str(err).splitlines()[0]}") from None
    except ValueError as err:  # a schema's own check (__post_init__)
        raise error(f"{label}: {err}") from None


def _read_yaml(path: Path, error: type[ConfigError]) -> DictConfig:
    try:
        data = OmegaConf.load(path)
    except (OSError, yaml.YAMLError) as err:
        raise error(f"{path}: cannot read YAML: {err}") from None
    if not isinstance(data, DictConfig):
        raise error(f"{path}: expected a mapping at the top level")
    return data


def _check_finite(node: Any, key: str, label: str, error: type[ConfigError]) -> None:
    if isinstance(node, DictConfig):
        for child in node:
            if not OmegaConf.is_missing(node, child):
                _check_finite(node[child], f"{key}.{child}" if key else str(child), label, error)
    elif isinstance(node, ListConfig):
        for index, child in enumerate(node):
            _check_finite(child, f"{key}[{index}]", label, error)
    elif isinstance(node, float) and not math.isfinite(node):
        raise error(f"{label}: {key}: expected a finite number, got {node}")


def stage_widths(base: int, n_stages: int, cap: int) -> list[int]:
    """Channels per U-Net stage: doubling from ``base``, capped at ``cap`` (nnU-Net's rule).

    Registered as the OmegaConf resolver ``cmrseg.stage_widths``, so a config can scale a
    network's width with one number (``conf/hparams_search/unet_optuna.yaml``), e.g.
    ``stage_widths(32, 6, 512)`` gives ``[32, 64, 128, 256, 512, 512]``.

    Args:
        base: Channels of the first stage, >= 1.
        n_stages: Number of stages, >= 1.
        cap: Largest number of channels of a stage.
    """
    if base < 1 or n_stages < 1:
        raise ConfigError(f"cmrseg.stage_widths: base {base} and n_stages {n_stages} must be >= 1")
    return [min(int(base) * 2**i, int(cap)) for i in range(int(n_stages))]


if not OmegaConf.has_resolver("cmrseg.stage_widths"):
    OmegaConf.register_new_resolver("cmrseg.stage_widths", stage_widths)
