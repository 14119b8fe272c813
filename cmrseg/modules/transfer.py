"""Transfer learning: copy selected pretrained layers into a network, shape-checked.

A source is a Lightning checkpoint written by ``cmrseg-train`` (network weights under ``net.``)
or a plain ``state_dict`` of the network. Files are read with ``torch.load(weights_only=True)``
so a checkpoint cannot run code.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cmrseg.core.errors import InputError

__all__ = ["TransferReport", "copy_matching_weights", "load_checkpoint", "load_net_state_dict"]

log = logging.getLogger(__name__)

_NET_PREFIX = "net."


def load_checkpoint(path: str | os.PathLike[str]) -> dict:
    """Load a checkpoint file safely (``weights_only=True``) onto the CPU.

    Raises:
        InputError: The file is missing or not a readable PyTorch checkpoint.
    """
    where = Path(path)
    if not where.is_file():
        raise InputError(f"{where}: checkpoint file not found")
    try:
        ckpt = torch.load(where, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{where}: not a readable PyTorch checkpoint: {first_line}") from None
    if not isinstance(ckpt, dict):
        raise InputError(f"{where}: not a checkpoint (expected a dict, got {type(ckpt).__name__})")
    return ckpt


def load_net_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Return the network weights of a Lightning checkpoint or a plain state dict.

    Args:
        path: A ``.ckpt`` from ``cmrseg-train`` or a ``torch.save(net.state_dict())`` file.

    Returns:
        Weights keyed like ``net.state_dict()`` (the ``net.`` prefix removed).
    """
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict", ckpt)
    if any(k.startswith(_NET_PREFIX) for k in state):
        state = {k[len(_NET_PREFIX) :]: v for k, v in state.items() if k.startswith(_NET_PREFIX)}
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InputError(f"{path}: checkpoint holds no network weights")
    return tensors


@dataclass(frozen=True)
class TransferReport:
    """Outcome of :func:`copy_matching_weights`, one row per target tensor.

    Attributes:
        rows: ``(name, status, detail)``; status is ``copied``, ``shape_mismatch``,
            ``missing_in_source`` or ``not_selected``.
    """

    rows: tuple[tuple[str, str, str], ...]

    @property
    def copied(self) -> list[str]:
        """Names of the tensors that were copied."""
        return [name for name, status, _ in self.rows if status == "copied"]

    @property
    def skipped(self) -> list[str]:
        """Names of the tensors that kept their initial values."""
        return [name for name, status, _ in self.rows if status != "copied"]

    def table(self) -> str:
        """Plain-text table of every tensor and what happened to it."""
        width = max([len(n) for n, _, _ in self.rows] + [len("tensor")])
        lines = [f"{'tensor':<{width}}  {'status':<17}  detail", "-" * (width + 40)]
        lines += [f"{n:<{width}}  {s:<17}  {d}" for n, s, d in self.rows]
        lines.append(f"copied {len(self.copied)}, skipped {len(self.skipped)}")
        return "\n".join(lines)


def copy_matching_weights(
    net: nn.Module, source: Mapping[str, torch.Tensor], patterns: Sequence[str]
) -> TransferReport:
    """Copy tensors of ``source`` into ``net`` where the name matches and the shape agrees.

    Args:
        net: Target network; changed in place.
        source: Pretrained weights keyed like ``net.state_dict()``.
        patterns: ``fnmatch`` patterns on tensor names to copy, e.g. ``["encoder.*"]``
            or ``["*"]``; BatchNorm running statistics follow their layer's name.

    Returns:
        What was copied and what was skipped, and why.

    Raises:
        InputError: Nothing at all could be copied (e.g. a checkpoint of another architecture).
    """
    target = net.state_dict()
    update: dict[str, torch.Tensor] = {}
    rows = []
    for name, tensor in target.items():
        if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            rows.append((name, "not_selected", ""))
        elif name not in source:
            rows.append((name, "missing_in_source", ""))
        elif source[name].shape != tensor.shape:
            detail = f"source {tuple(source[name].shape)} != target {tuple(tensor.shape)}"
            rows.append((name, "shape_mismatch", detail))
        else:
            update[name] = source[name]
            rows.append((name, "copied", str(tuple(tensor.shape))))
    report = TransferReport(tuple(rows))
    if not update:
        raise InputError(
            f"no pretrained tensor matches {list(patterns)} with the same name and shape; "
            "is the checkpoint of another architecture?\n" + report.table()
        )
    net.load_state_dict(update, strict=False)
    return report
