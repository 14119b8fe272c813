"""``cmrseg-ensemble OUT.ckpt A.ckpt B.ckpt [...]``: one checkpoint from several trained networks.

The written checkpoint's network averages the members' class probabilities
(:class:`cmrseg.models.ProbabilityMean`); ``cmrseg-eval``, ``cmrseg-predict`` and
``cmrseg-report`` take it like any checkpoint. Members that read or label the data differently
are refused with one line naming the setting (exit 2, nothing written).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from cmrseg.cli._common import run_cli
from cmrseg.core.atomic import atomic_path
from cmrseg.core.errors import InputError
from cmrseg.inference import ensemble_checkpoint

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cmrseg-ensemble``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="cmrseg-ensemble", description=__doc__.splitlines()[0].split(": ", 1)[1]
    )
    parser.add_argument("output", help="the ensemble checkpoint to write (.ckpt)")
    parser.add_argument("members", nargs="+", help="two or more cmrseg-train checkpoints")
    args = parser.parse_args(argv)

    def body() -> None:
        output = Path(args.output)
        if any(output.resolve() == Path(m).resolve() for m in args.members):
            raise InputError(f"{output}: the output is one of the members; choose another name")
        ckpt = ensemble_checkpoint(args.members)
        with atomic_path(output) as tmp:
            torch.save(ckpt, tmp)
        print(f"wrote {output}: the mean of {len(args.members)} networks' probabilities")

    return run_cli("cmrseg-ensemble", body)
