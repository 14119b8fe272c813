"""Finished run folders of a study (Run-folder format v1): discovery, reading, refusal.

A run folder holds ``run.json`` (format ``cmrseg.run``, version 1), ``slices.csv`` (one row per
scored slice) and, with the T2* callback, ``t2star/test_table.csv``. A Hydra multirun folder is
the set of its numbered job folders. :func:`collect_runs` reads every run it is given and
:func:`select_runs` keeps those that belong to one study; every other run is refused with one
line saying why (:class:`Refusal`), never averaged in silently.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "RUN_FILE",
    "RUN_FORMAT",
    "RUN_VERSION",
    "SLICES_FILE",
    "SLICE_COLUMNS",
    "Refusal",
    "Run",
    "RunRefused",
    "Selection",
    "collect_runs",
    "discover_run_dirs",
    "read_run",
    "select_runs",
]

# The format's names, here once: cmrseg.utils.run_record and cmrseg.callbacks.run_record write it.
RUN_FILE = "run.json"
RUN_FORMAT = "cmrseg.run"
RUN_VERSION = 1
SLICES_FILE = "slices.csv"
#: Columns of ``slices.csv``, in the order they are written (a reader allows more).
SLICE_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "slice_index",
    "slice_location",
    "jaccard",
    "dice",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "hd95_mm",
)
_T2STAR_TABLE = Path("t2star") / "test_table.csv"
_T2STAR_COLUMNS = ("subject_id", "slice_index", "region", "t2star_pred_ms", "t2star_ref_ms")
_MASKS = ("pred", "ref", "true")


class RunRefused(Exception):  # noqa: N818 (a refusal, not an error of the program)
    """A run folder the report cannot use; the message is the reason."""


@dataclass(frozen=True)
class Refusal:
    """A refused run folder and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Run:
    """One finished run, as the report uses it.

    Attributes:
        path: The run folder.
        method: ``unet``, ``martini_unet``, ``gac``, ...
        task: ``train`` or ``eval``.
        seed: Training seed (``None`` when not given).
        split: ``test``, ``val`` or ``all``.
        fold: Held-out fold (``None`` for ``split=all``).
        num_folds: Folds of the split (``None`` when not a k-fold run).
        split_seed: Seed of the subject split.
        cohort: ``{"file", "fingerprint"}`` of the scored slices.
        train_cohort: ``{"file", "fingerprint"}`` the model was trained or calibrated on.
        trained_as: ``(seed, fold)`` of the training run whose checkpoint an evaluation scored
            (``train_cohort.seed`` / ``.fold`` of the record; ``(None, None)`` when not
            recorded): the models of an external evaluation's folds are different runs.
        slices: ``slices.csv`` rows; metric values as floats (NaN where empty).
        checkpoint: The tested checkpoint: relative to the run folder for a training run,
            absolute for an evaluation; ``None`` when not recorded.
        t2star: ``t2star/test_table.csv`` rows: ``subject_id``, ``region``, T2* values as
            floats (NaN where empty), grades; ``None`` when the run has no such table.
    """

    path: Path
    method: str
    task: str
    seed: int | None
    split: str
    fold: int | None
    num_folds: int | None
    split_seed: int | None
    cohort: dict[str, str]
    train_cohort: dict[str, str]
    trained_as: tuple[int | None, int | None]
    checkpoint: str | None
    slices: list[dict[str, Any]] = field(repr=False)
    t2star: list[dict[str, Any]] | None = field(repr=False)

    @property
    def external(self) -> bool:
        """Whether the scored cohort is not the one the model was trained on (domain shift)."""
        return self.cohort["fingerprint"] != self.train_cohort["fingerprint"]


def discover_run_dirs(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[Refusal]]:
    """The run folders named by ``paths``: run folders as given, multirun folders' job folders.

    A folder with ``run.json`` is a run; otherwise its sub-folders named by a number (Hydra's
    job folders ``0``, ``1``, ...) are, in numeric order. Anything else is refused.

    Returns:
        Run folders (each once, in the order given) and refusals.
    """
    found: list[Path] = []
    refused: list[Refusal] = []
    for given in map(Path, paths):
        if not given.is_dir():
            refused.append(Refusal(given, "no such folder"))
        elif (given / "run.json").exists():
            found.append(given)
        else:
            jobs = sorted(
                (p for p in given.iterdir() if p.is_dir() and p.name.isdigit()),
                key=lambda p: int(p.name),
            )
            if jobs:
                found += jobs
            else:
                refused.append(
                    Refusal(given, "run.json missing (not a run folder nor a multirun folder)")
                )
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, refused


def _float(text: str) -> float:
    try:
        return float(text) if text not in ("", None) else math.nan
    except ValueError:
        return math.nan


def _read_csv(path: Path, needed: Sequence[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing:
                raise RunRefused(f"{path.name} lacks column {missing[0]}")
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise RunRefused(f"{path.name} unreadable: {err}") from None


def _cohort(record: dict[str, Any], key: str) -> dict[str, str]:
    value = record.get(key)
    if not isinstance(value, dict) or not value.get("fingerprint"):
        raise RunRefused(f"run.json: {key}.fingerprint missing")
    return {"file": str(value.get("file", "")), "fingerprint": str(value["fingerprint"])}


def _optional_int(record: dict[str, Any], key: str) -> int | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RunRefused(f"run.json: {key} is not an integer: {value!r}")
    return value


def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a run folder.

    Raises:
        RunRefused: ``run.json`` missing, unreadable, of another format or version, or its
            status not ``finished`` (``running``: the run did not finish; ``failed``: with its
            error); ``slices.csv`` missing, unreadable, without a needed column or empty.
    """
    folder = Path(path)
    try:
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunRefused("run.json missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunRefused(f"run.json unreadable: {err}") from None
    if not isinstance(record, dict):
        raise RunRefused("run.json is not an object")
    kind = (record.get("format"), record.get("version"))
    if kind != (RUN_FORMAT, RUN_VERSION):
        raise RunRefused(
            f"run.json is format {kind[0]!r} version {kind[1]!r}, not {RUN_FORMAT!r} "
            f"version {RUN_VERSION}"
        )
    status = record.get("status")
    if status == "running":
        raise RunRefused("did not finish (status running: crashed, killed or still running)")
    if status == "failed":
        raise RunRefused(f"failed: {record.get('error') or 'no error given'}")
    if status != "finished":
        raise RunRefused(f"run.json: unknown status {status!r}")
    if not record.get("method"):
        raise RunRefused("run.json: method missing")
    if not (folder / "slices.csv").is_file():
        raise RunRefused("slices.csv missing")
    rows = _read_csv(folder / "slices.csv", SLICE_COLUMNS)
    if not rows:
        raise RunRefused("slices.csv has no slice")
    try:
        slices = [
            {
                "subject_id": r["subject_id"],
                "slice_index": int(r["slice_index"]),
                "slice_location": r["slice_location"],
                **{c: _float(r[c]) for c in SLICE_COLUMNS[3:]},
            }
            for r in rows
        ]
    except ValueError as err:
        raise RunRefused(f"slices.csv: slice_index is not an integer: {err}") from None
    table = folder / _T2STAR_TABLE
    t2star = None
    if table.is_file():
        t2star = [
            {
                "subject_id": r["subject_id"],
                "region": r["region"],
                **{f"t2star_{m}_ms": _float(r.get(f"t2star_{m}_ms", "")) for m in _MASKS},
                **{f"grade_{m}": r.get(f"grade_{m}") or "" for m in _MASKS},
            }
            for r in _read_csv(table, _T2STAR_COLUMNS)
        ]
    return Run(
        path=folder,
        method=str(record["method"]),
        task=str(record.get("task", "")),
        seed=_optional_int(record, "seed"),
        split=str(record.get("split", "")),
        fold=_optional_int(record, "fold"),
        num_folds=_optional_int(record, "num_folds"),
        split_seed=_optional_int(record, "split_seed"),
        cohort=_cohort(record, "cohort"),
        train_cohort=_cohort(record, "train_cohort"),
        trained_as=(
            _optional_int(record.get("train_cohort") or {}, "seed"),
            _optional_int(record.get("train_cohort") or {}, "fold"),
        ),
        checkpoint=str(record["checkpoint"]) if record.get("checkpoint") else None,
        slices=slices,
        t2star=t2star,
    )


def collect_runs(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Run], list[Refusal]]:
    """Discover and read every run of ``paths``; unreadable ones are refused with the reason."""
    dirs, refused = discover_run_dirs(paths)
    runs: list[Run] = []
    for folder in dirs:
        try:
            runs.append(read_run(folder))
        except RunRefused as err:
            refused.append(Refusal(folder, str(err)))
    return runs, refused


@dataclass(frozen=True)
class Selection:
    """The runs of one study.

    Attributes:
        cohort: ``{"file", "fingerprint"}`` of the study's cohort.
        in_domain: Runs scored on the cohort they were trained on (Table 1, Table 2).
        external: Runs of models trained on the study's cohort and scored on another one
            (the domain-shift table), in the order given.
        refused: Every refused run folder with its reason.
    """

    cohort: dict[str, str]
    in_domain: list[Run]
    external: list[Run]
    refused: list[Refusal]


def _majority(values: Sequence[Any]) -> Any:
    """The most frequent value; the first seen among equals."""
    counts = Counter(values)
    best = max(counts.values())
    return next(v for v in values if counts[v] == best)


def select_runs(runs: Sequence[Run], refused: Sequence[Refusal] = ()) -> Selection:
    """Keep the runs of one study and refuse the others, each with the reason.

    The study's cohort is the one most in-domain runs (scored on their training cohort) were
    scored on (the first seen among equals); its ``num_folds`` and ``split_seed`` are those of
    most of those runs. Refused: in-domain runs on another cohort; in-domain runs with other
    folds or another split seed (an external run scores whole files: its folds do not matter);
    external runs of models trained on another cohort; a second run of the
    same method, seed, fold and cohort (the first is kept).

    Args:
        runs: Readable finished runs (:func:`collect_runs`).
        refused: Refusals so far (kept, first).

    Returns:
        The :class:`Selection`; ``cohort`` is empty when no in-domain run is left.
    """
    out_refused = list(refused)
    in_domain = [r for r in runs if not r.external]
    if not in_domain:
        out_refused += [
            Refusal(r.path, "external evaluation without any in-domain run of its training cohort")
            for r in runs
        ]
        return Selection({}, [], [], out_refused)
    cohort_fp = _majority([r.cohort["fingerprint"] for r in in_domain])
    cohort = next(r.cohort for r in in_domain if r.cohort["fingerprint"] == cohort_fp)
    kept: list[Run] = []
    for run in runs:
        trained_fp = run.train_cohort["fingerprint"]
        if trained_fp != cohort_fp:
            where = "scored on" if not run.external else "trained on"
            out_refused.append(
                Refusal(
                    run.path,
                    f"different cohort: {where} {run.train_cohort['file'] or '?'} "
                    f"({trained_fp[:12]}), the study's is {cohort['file'] or '?'} "
                    f"({cohort_fp[:12]})",
                )
            )
        else:
            kept.append(run)
    folded = [r for r in kept if r.num_folds is not None and not r.external]
    if folded:
        folds = _majority([(r.num_folds, r.split_seed) for r in folded])
        study_runs = []
        for run in kept:
            mine = (run.num_folds, run.split_seed)
            if not run.external and run.num_folds is not None and mine != folds:
                out_refused.append(
                    Refusal(
                        run.path,
                        f"different folds: num_folds {mine[0]}, split_seed {mine[1]}; the "
                        f"study's are num_folds {folds[0]}, split_seed {folds[1]}",
                    )
                )
            else:
                study_runs.append(run)
        kept = study_runs
    seen: dict[tuple[Any, ...], Path] = {}
    unique: list[Run] = []
    for run in kept:
        # an evaluation's checkpoint is absolute: it tells apart models that do not record
        # their training run (checkpoints written before trained_as was stored)
        model = (run.trained_as, run.checkpoint if run.task == "eval" else None)
        key = (run.method, run.seed, run.fold, model, run.cohort["fingerprint"])
        if key in seen:
            out_refused.append(Refusal(run.path, f"duplicate of {seen[key]}"))
        else:
            seen[key] = run.path
            unique.append(run)
    return Selection(
        cohort,
        [r for r in unique if not r.external],
        [r for r in unique if r.external],
        out_refused,
    )
