"""Small helpers on composed Hydra configs (the configs themselves: :mod:`cmrseg.conf`)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict

__all__ = ["fill_missing"]


def fill_missing(node: DictConfig, values: dict[str, object]) -> None:
    """Set the keys of ``node`` that are ``???`` (missing) from ``values``; check the set ones.

    Used to complete a network config from the datamodule (``in_channels``, ``num_classes``...).
    Keys of ``values`` that ``node`` does not have are ignored (a network without that argument).

    Raises:
        ValueError: A key is set in the config to a value that differs from ``values``.
    """
    with open_dict(node):
        for key, value in values.items():
            if key not in set(node.keys()):  # `key in node` is False for ??? values too
                continue
            if OmegaConf.is_missing(node, key):
                node[key] = value
            elif _plain(node[key]) != value:
                raise ValueError(
                    f"config sets {key}={_plain(node[key])} but the data gives {value}; "
                    f"remove {key} from the config or change the data settings"
                )


def _plain(value: object) -> object:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
