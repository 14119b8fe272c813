"""``cmrseg-import-dicom DIR OUT.h5``: multi-echo GRE DICOM series to a pseudonymized echo stack.

The import rules are documented in :mod:`cmrseg.data.dicom`. ``DIR`` is only read; ``OUT.h5``
(and the optional key file) must lie outside it and are written atomically, together: if
anything fails, neither appears.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from cmrseg.cli._common import run_cli, setup_logging
from cmrseg.core.atomic import atomic_path
from cmrseg.core.errors import InputError
from cmrseg.data.echo_stack import write_echo_stack

__all__ = ["main"]

PROG = "cmrseg-import-dicom"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Turn the multi-echo GRE DICOM series found under DIR into one echo-stack HDF5 "
            "file with new subject keys (S0001, ...; one per patient, follow-up studies are "
            "visits of it), each slice in the standard short-axis view. No names, IDs, dates, "
            "institutions or UIDs are copied."
        ),
    )
    parser.add_argument("dicom_dir", type=Path, metavar="DIR", help="folder searched recursively")
    parser.add_argument("output", type=Path, metavar="OUT.h5", help="echo-stack file to write")
    parser.add_argument(
        "--key-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=(
            "write the mapping subject_id,visit,patient_id,study_instance_uid,study_date to "
            "this CSV file, one row per imported subject and visit; without it the mapping is "
            "written nowhere"
        ),
    )
    parser.add_argument(
        "--visit",
        type=int,
        default=None,
        metavar="N",
        help=(
            "import only visit N (1-based, by study date) of every patient; by default all "
            "visits are imported under one subject key per patient. Keys are the same for "
            "every import of one folder, so baseline and follow-up can go to separate files"
        ),
    )
    parser.add_argument(
        "--no-reorient",
        action="store_true",
        help=(
            "keep the scanner's view instead of rotating/flipping each slice to the standard "
            "short-axis view (anterior up, septum left)"
        ),
    )
    parser.add_argument(
        "--series-description",
        default=None,
        metavar="REGEX",
        help=(
            "only consider series whose SeriesDescription matches this regular expression "
            "(case-insensitive search), e.g. to leave out a liver T2* series"
        ),
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def _is_within(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _check_paths(args: argparse.Namespace) -> None:
    outputs = [("OUT.h5", args.output)]
    if args.key_file is not None:
        outputs.append(("--key-file", args.key_file))
        if args.key_file.resolve() == args.output.resolve():
            raise InputError(f"{args.key_file}: --key-file must differ from OUT.h5")
    for what, path in outputs:
        if args.dicom_dir.is_dir() and _is_within(path, args.dicom_dir):
            raise InputError(
                f"{path}: {what} lies inside the input folder {args.dicom_dir}, which is never "
                "modified; write it elsewhere"
            )
        if path.is_dir():
            raise InputError(f"{path}: {what} is a folder")


def _run(args: argparse.Namespace) -> int:
    _check_paths(args)
    # pydicom comes with the `dicom` extra; imported here so that a missing one is one line
    from cmrseg.data.dicom import import_dicom, write_key_file

    result = import_dicom(
        args.dicom_dir,
        series_description=args.series_description,
        visit=args.visit,
        reorient=not args.no_reorient,
        progress=not args.no_progress,
    )
    with contextlib.ExitStack() as stack:
        if args.key_file is not None:
            # The key file moves into place only after OUT.h5 was written completely.
            key_tmp = stack.enter_context(atomic_path(args.key_file))
            write_key_file(key_tmp, result.keys)
        bar = stack.enter_context(
            tqdm(
                total=result.stack.n_slices,
                desc="reading pixel data, writing slices",
                unit="slice",
                disable=None if not args.no_progress else True,
            )
        )
        write_echo_stack(args.output, result.stack, progress=bar.update)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (0 ok, 2 refused input)."""
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return run_cli(PROG, lambda: _run(args))
    except ModuleNotFoundError as err:
        if err.name != "pydicom":
            raise
        print(f"{PROG}: error: needs pydicom: pip install 'cmrseg[dicom]'", file=sys.stderr)
        return 1
