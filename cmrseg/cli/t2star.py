"""``cmrseg-t2star IN.h5 OUT.csv``: fit T2* on given masks and write the contract's CSV.

One row per slice and region (``global``, ``sector1`` .. ``sector6``); see
:mod:`cmrseg.t2star.table`. The input is only read; the CSV appears complete or not at all.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cmrseg.cli._common import run_cli, setup_logging
from cmrseg.core.errors import InputError
from cmrseg.data.echo_stack import EchoStackError, EchoStackFile, inspect_echo_stack
from cmrseg.t2star import SIGNAL_MODELS, load_t2star_config, quantify_stack, write_t2star_csv

__all__ = ["main"]

PROG = "cmrseg-t2star"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Fit myocardial T2* on every slice (global and six 60-degree sectors; signal model "
            "and region estimator from the T2* config, by default the median of noise-corrected "
            "pixel fits in the wall core) and write one CSV row per slice and region."
        ),
    )
    parser.add_argument("input", type=Path, metavar="IN.h5", help="echo-stack file")
    parser.add_argument("output", type=Path, metavar="OUT.csv", help="T2* table to write")
    parser.add_argument(
        "--labels",
        choices=("labels", "labels_pred"),
        default="labels",
        help="mask dataset to fit on (default: labels)",
    )
    parser.add_argument(
        "--model", choices=SIGNAL_MODELS, default=None, help="signal model (default: from config)"
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise SD per coil channel in image units (default: from config, else estimated)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="T2* config YAML with every key of the shipped conf/t2star/default.yaml (default: "
        "that file)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


class _LazySlices:
    """``[i]`` reads slice ``i`` of one dataset from the file on demand."""

    def __init__(self, stack: EchoStackFile, name: str) -> None:
        self._stack, self._name = stack, name

    def __len__(self) -> int:
        return len(self._stack)

    def __getitem__(self, index: int) -> np.ndarray:
        return self._stack.read(self._name, index)


def _run(args: argparse.Namespace) -> int:
    if args.output.is_dir():
        raise InputError(f"{args.output}: OUT.csv is a folder")
    if args.input.exists() and args.output.resolve() == args.input.resolve():
        raise InputError(f"{args.output}: OUT.csv would overwrite the input file")
    overrides = []
    if args.model is not None:
        overrides.append(f"fit.model={args.model}")
    if args.sigma is not None:
        if not np.isfinite(args.sigma) or args.sigma < 0:
            raise InputError(f"--sigma: must be finite and >= 0, got {args.sigma}")
        overrides.append(f"noise_sigma={args.sigma!r}")
    config = load_t2star_config(args.config, overrides)
    info = inspect_echo_stack(args.input)
    if args.labels not in info.datasets:
        raise EchoStackError(args.input, args.labels, "dataset is not in this file")
    stack = EchoStackFile(args.input, info)
    try:
        rows = quantify_stack(
            _LazySlices(stack, "images"),
            info.te_ms,
            _LazySlices(stack, args.labels),
            info.subject_id,
            info.slice_location,
            config=config,
            rv_insertion=info.rv_insertion,
            phase_encoding_axis=info.phase_encoding_axis,
            pixel_spacing_mm=info.pixel_spacing_mm,
            field_strength_t=info.field_strength_t,
            progress=not args.no_progress,
        )
    finally:
        stack.close()
    write_t2star_csv(args.output, rows)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (0 ok, 2 refused input)."""
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_cli(PROG, lambda: _run(args))
