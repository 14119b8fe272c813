"""``cmrseg-nnunet``: nnU-Net v2 as a method of the study (export a cohort, import predictions).

``cmrseg-nnunet export IN.h5 OUT_DIR`` writes an nnU-Net v2 raw data set with the project's
subject split as ``splits_final.json`` (:mod:`cmrseg.data.nnunet`). After nnU-Net has trained
and predicted, ``cmrseg-nnunet import IN.h5 EXPORT_DIR PRED_DIR RUN_DIR`` makes a run folder of
the run-folder format (``run.json`` with method ``nnunet``, ``slices.csv`` scored with the
project's metrics, ``t2star/test_table.csv`` fitted with the project's T2* code), so
``cmrseg-report`` puts nnU-Net into the study's tables beside the other methods:

- ``IN.h5`` is the exported file: ``--fold k`` takes the test subjects of the project's fold
  ``k`` (nnU-Net's ``fold_k/validation/`` predictions), split ``test``;
- ``IN.h5`` is another labelled cohort (exported too, and predicted with
  ``nnUNetv2_predict -i ITS_EXPORT/imagesTr``): every subject is scored, split ``all``, and the
  record's training cohort is the file of ``EXPORT_DIR`` (a domain-shift evaluation).

The run folder appears complete or not at all.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cmrseg.callbacks.run_record import SLICES_FILE, slice_scores, write_slice_scores
from cmrseg.cli._common import run_cli, setup_logging
from cmrseg.conf import CONF_DIR
from cmrseg.core.atomic import atomic_dir
from cmrseg.core.errors import InputError
from cmrseg.data.echo_stack import EchoStackFile, inspect_echo_stack
from cmrseg.data.nnunet import export_nnunet, load_export, read_nnunet_predictions
from cmrseg.data.splits import echo_stack_fingerprint
from cmrseg.report import write_agreement_report
from cmrseg.t2star import load_t2star_config
from cmrseg.t2star.mask_agreement import MaskAgreement, agreement_summary
from cmrseg.utils.run_record import begin_run_record, end_run_record, update_run_record

__all__ = ["main"]

PROG = "cmrseg-nnunet"
METHOD = "nnunet"

log = logging.getLogger(__name__)


def _split_defaults() -> dict[str, Any]:
    """The split settings of ``conf/data/echo_stack.yaml`` (the project's runs' defaults)."""
    data = yaml.safe_load((CONF_DIR / "data" / "echo_stack.yaml").read_text(encoding="utf-8"))
    return {k: data[k] for k in ("num_folds", "val_fraction", "test_fraction", "split_seed")}


def _parser() -> argparse.ArgumentParser:
    defaults = _split_defaults()
    parser = argparse.ArgumentParser(
        prog=PROG, description="nnU-Net v2 export of a cohort and import of its predictions."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser(
        "export",
        help="write IN.h5 as an nnU-Net v2 raw data set",
        description="One case per subject (slices as z), one channel per echo, the reference "
        "labels, dataset.json, splits_final.json (the project's subject folds) and "
        "cmrseg_export.json.",
    )
    export.add_argument("input", type=Path, metavar="IN.h5", help="labelled echo-stack file")
    export.add_argument(
        "output", type=Path, metavar="OUT_DIR", help="new folder, e.g. nnUNet_raw/Dataset501_CMR"
    )
    export.add_argument("--name", default="cmrseg", help="name in dataset.json")
    export.add_argument(
        "--echoes", type=int, nargs="+", default=None, help="0-based echoes (default: all)"
    )
    export.add_argument(
        "--num-folds",
        type=int,
        default=defaults["num_folds"],
        help=f"folds as data.num_folds of cmrseg-train (default: {defaults['num_folds']}, the "
        "fixed split)",
    )
    for key in ("val_fraction", "test_fraction", "split_seed"):
        export.add_argument(
            f"--{key.replace('_', '-')}",
            type=type(defaults[key]),
            default=defaults[key],
            help=f"data.{key} of the project's runs (default: {defaults[key]})",
        )

    imp = commands.add_parser(
        "import",
        help="score nnU-Net's predictions as a run folder of method nnunet",
        description="Reads PRED_DIR/<subject>.nii.gz for the scored subjects and writes RUN_DIR "
        "with run.json, slices.csv and t2star/test_table.csv.",
    )
    imp.add_argument("input", type=Path, metavar="IN.h5", help="labelled echo-stack file scored")
    imp.add_argument("export", type=Path, metavar="EXPORT_DIR", help="export nnU-Net trained on")
    imp.add_argument("predictions", type=Path, metavar="PRED_DIR", help="nnU-Net's predictions")
    imp.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run folder to create")
    imp.add_argument(
        "--fold", type=int, default=None, help="the fold that predicted (IN.h5 = the export's)"
    )
    imp.add_argument(
        "--t2star-config", type=Path, default=None, help="T2* config YAML (default: the shipped)"
    )
    imp.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _export(args: argparse.Namespace) -> int:
    export = export_nnunet(
        args.input,
        args.output,
        dataset_name=args.name,
        echoes=args.echoes,
        num_folds=args.num_folds,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
    )
    log.info(
        "%s: %d cases, %d channels, %d fold(s) in splits_final.json",
        args.output,
        len(export.cases),
        len(export.echoes),
        len(export.splits),
    )
    return 0


def _import(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.run_dir.exists():
        raise InputError(f"{args.run_dir}: already exists; give a new run folder")
    info = inspect_echo_stack(args.input)
    if "labels" not in info.datasets:
        raise InputError(f"{info.path}: labels: dataset is missing, needed to score")
    export = load_export(args.export)
    cohort = {"file": info.path.name, "fingerprint": echo_stack_fingerprint(info)}
    train_cohort = {"file": export.source_file, "fingerprint": export.fingerprint}
    if cohort["fingerprint"] == export.fingerprint:
        split = export.split_of(args.fold)
        subjects, scored = (
            split.test,
            {
                "split": "test",
                "fold": split.fold,
                "num_folds": split.num_folds,
                "split_seed": split.seed,
            },
        )
    else:
        if args.fold is not None:
            log.info("%s is not the exported file: every subject is scored", info.path)
        subjects = info.subjects
        scored = {"split": "all", "fold": None, "num_folds": None, "split_seed": None}
    labels = read_nnunet_predictions(args.predictions, info, subjects)
    rows = slice_scores(info.path, labels, info=info)
    source = EchoStackFile(info.path, info=info)
    try:
        agreement = MaskAgreement(load_t2star_config(args.t2star_config))
        t2star_rows = agreement.rows(source, labels, progress=not args.no_progress)
    finally:
        source.close()
    with atomic_dir(args.run_dir) as tmp:
        begin_run_record(tmp, "eval", None, [PROG, *argv])
        write_slice_scores(tmp / SLICES_FILE, rows)
        if t2star_rows:
            write_agreement_report(
                tmp / "t2star",
                t2star_rows,
                agreement_summary(t2star_rows),
                stage="test",
                epoch=0,
                global_step=0,
                has_true="t2star_ms" in info.datasets,
                figures=True,
            )
        update_run_record(tmp, method=METHOD, cohort=cohort, train_cohort=train_cohort, **scored)
        end_run_record(tmp, None)
    log.info("%s: %d slices of %d subjects scored", args.run_dir, len(rows), len(subjects))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (0 ok, 2 refused input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "export":
        return run_cli(PROG, lambda: _export(args))
    return run_cli(PROG, lambda: _import(args, argv))
