"""``run.json``: what a ``cmrseg-train`` / ``cmrseg-eval`` run folder holds and how it ended.

``cmrseg-report`` collects run folders by this record (format ``cmrseg.run``, version
:data:`RUN_VERSION`; README "Run folders"). The task wrapper writes it with status ``running``
when a run starts and rewrites it with ``finished`` or ``failed`` (and the error's first line)
when it ends, so a killed run stays ``running``. The run adds what it scored
(:func:`update_run_record`): method, split, fold, cohort fingerprints. Only rank 0 writes;
every write is atomic.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

from cmrseg import __version__
from cmrseg.core.atomic import atomic_path
from cmrseg.report.runs import RUN_FILE, RUN_FORMAT, RUN_VERSION

__all__ = [
    "RUN_FILE",
    "RUN_FORMAT",
    "RUN_VERSION",
    "begin_run_record",
    "end_run_record",
    "read_run_record",
    "update_run_record",
]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_run_record(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run record of a folder (an empty dict when there is none).

    Raises:
        ValueError: The file is not JSON or not a JSON object.
    """
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        return {}
    record = json.loads(path.read_text())
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a JSON object")
    return record


def _write(run_dir: Path, record: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / RUN_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


@rank_zero_only
def begin_run_record(
    run_dir: str | os.PathLike[str], task: str, seed: int | None, overrides: list[str]
) -> None:
    """Start the record of a run: status ``running`` (a resumed run keeps its earlier fields).

    Args:
        run_dir: The run folder.
        task: ``train`` or ``eval``.
        seed: The run's global seed.
        overrides: The job's command-line overrides (they name a failed run's method and fold).
    """
    run_dir = Path(run_dir)
    try:
        earlier = read_run_record(run_dir)
    except ValueError:
        earlier = {}
    _write(
        run_dir,
        {
            **earlier,
            "format": RUN_FORMAT,
            "version": RUN_VERSION,
            "status": "running",
            "error": None,
            "task": task,
            "seed": seed,
            "overrides": overrides,
            "cmrseg_version": __version__,
            "started_utc": _now(),
            "finished_utc": None,
        },
    )


@rank_zero_only
def update_run_record(run_dir: str | os.PathLike[str], **fields: Any) -> None:
    """Add fields (JSON values) to a run's record."""
    run_dir = Path(run_dir)
    _write(run_dir, {**read_run_record(run_dir), **fields})


@rank_zero_only
def end_run_record(
    run_dir: str | os.PathLike[str],
    error: BaseException | None,
    metrics: dict[str, float] | None = None,
) -> None:
    """Close a run's record: ``finished`` (with its metrics), or ``failed`` with its error.

    A failed run's ``error`` is the exception's name and its message's first line.
    """
    run_dir = Path(run_dir)
    fields: dict[str, Any] = {"status": "finished", "error": None, "finished_utc": _now()}
    if metrics is not None:
        fields["metrics"] = metrics
    if error is not None:
        message = str(error).strip().splitlines()
        first = message[0] if message else ""
        fields |= {"status": "failed", "error": f"{type(error).__name__}: {first}"}
    _write(run_dir, {**read_run_record(run_dir), **fields})
