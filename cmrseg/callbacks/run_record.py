"""Per-slice test scores (``slices.csv``) and what was scored (``run.json``) for ``cmrseg-report``.

The module's metrics log means over slices; the study report needs each slice's scores to pool
folds and seeds, resample subjects and pair methods. This callback keeps the labels that
``test_step`` returns (as the T2* callback does), scores each slice's myocardium against the
file's reference labels with the same functions as the module's metrics, gathers the rows of
every rank and (rank 0) writes ``slices.csv`` and the run's method, split and cohorts into
``run.json`` (:mod:`cmrseg.utils.run_record`; README "Run folders").
"""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from cmrseg.core.atomic import atomic_path
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.data.datamodule import EchoStackDataModule
from cmrseg.data.echo_stack import EchoStackFile
from cmrseg.inference import method_name, slice_labels
from cmrseg.metrics.functional import (
    OVERLAP_SCORES,
    hausdorff_distance_95,
    per_sample_confusion,
    scores_from_confusion,
)
from cmrseg.report.runs import SLICE_COLUMNS, SLICES_FILE
from cmrseg.utils.run_record import update_run_record

__all__ = ["RunRecordCallback", "slice_scores", "write_slice_scores"]

log = logging.getLogger(__name__)


class RunRecordCallback(Callback):
    """Write ``slices.csv`` and the scored split's description after ``trainer.test``.

    Also after ``trainer.validate`` (``cmrseg-eval split=val``); never during a fit.

    Args:
        output_dir: The run folder.
        split: The name of the scored subjects in the record: ``test`` (the held-out fold or
            test split), or what ``cmrseg-eval`` was asked for (``val``, ``all``).
        train_cohort: ``{"file", "fingerprint"}`` of the data the model was trained on;
            ``None``: the scored file (a training run tests on its own cohort).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        split: str,
        train_cohort: dict[str, Any] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.split = split
        self.train_cohort = train_cohort
        self._labels: dict[int, np.ndarray] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Check the datamodule."""
        if not isinstance(trainer.datamodule, EchoStackDataModule):
            raise TypeError(f"RunRecordCallback needs an EchoStackDataModule: {trainer.datamodule}")

    @staticmethod
    def _active(trainer: Trainer) -> bool:
        # trainer.test, or trainer.validate (cmrseg-eval split=val); never a fit's validation
        return trainer.state.fn in (TrainerFn.TESTING, TrainerFn.VALIDATING)

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Forget the labels of an earlier test."""
        self._labels = {}

    on_validation_epoch_start = on_test_epoch_start

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, *args: Any
    ) -> None:
        """Keep the batch's labels (``{"labels", "slice_index"}`` from ``test_step``)."""
        if self._active(trainer):
            self._labels |= slice_labels([outputs])

    on_validation_batch_end = on_test_batch_end

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Score this rank's slices, gather every rank's rows, write the files on rank 0."""
        if not self._active(trainer) or trainer.sanity_checking:
            return
        datamodule: EchoStackDataModule = trainer.datamodule
        rows = slice_scores(datamodule.info.path, self._labels, info=datamodule.info)
        self._labels = {}
        parts: list[Any] = [rows]
        if trainer.world_size > 1:  # DDP: padding repeats slices; the slice index de-duplicates
            parts = [None] * trainer.world_size
            torch.distributed.all_gather_object(parts, rows)
        by_slice = {row["slice_index"]: row for part in parts for row in part}
        if not trainer.is_global_zero:
            return
        write_slice_scores(self.output_dir / SLICES_FILE, [by_slice[i] for i in sorted(by_slice)])
        split = datamodule.split
        cohort = {"file": split.source, "fingerprint": split.fingerprint}
        update_run_record(
            self.output_dir,
            method=method_name(pl_module),
            split=self.split,
            fold=split.fold,
            num_folds=split.num_folds,
            split_seed=split.seed,
            cohort=cohort,
            train_cohort=self.train_cohort or cohort,
        )
        log.info("Per-slice scores of %d slices: %s", len(by_slice), self.output_dir / SLICES_FILE)

    on_validation_epoch_end = on_test_epoch_end


def slice_scores(
    path: str | os.PathLike[str], labels: dict[int, np.ndarray], info: Any = None
) -> list[dict[str, Any]]:
    """Myocardial overlap of each slice's predicted labels with the file's reference labels.

    Args:
        path: The labelled echo-stack file.
        labels: Predicted label maps ``[H, W]`` by 0-based slice index.
        info: The file's :class:`~cmrseg.data.echo_stack.EchoStackInfo` (read when ``None``).

    Returns:
        One row per slice (ascending index) with :data:`SLICE_COLUMNS`; NaN where a score is
        undefined (as the module's metrics).
    """
    if not labels:
        return []
    source = EchoStackFile(path, info=info)
    try:
        info = source.info
        index = sorted(labels)
        reference = np.stack([source.read("labels", i) for i in index]) == MYOCARDIUM
    finally:
        source.close()
    preds = torch.from_numpy(np.stack([labels[i] for i in index]) == MYOCARDIUM)
    target = torch.from_numpy(reference)
    scores = scores_from_confusion(per_sample_confusion(preds, target))
    spacing = torch.from_numpy(np.asarray(info.pixel_spacing_mm[index], dtype=np.float64))
    scores["hd95_mm"] = hausdorff_distance_95(preds, target, spacing)
    return [
        {
            "subject_id": info.subject_id[i],
            "slice_index": i,
            "slice_location": info.slice_location[i],
            **{name: float(scores[name][k]) for name in (*OVERLAP_SCORES, "hd95_mm")},
        }
        for k, i in enumerate(index)
    ]


def write_slice_scores(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the rows of :func:`slice_scores` as CSV (atomically; NaN as an empty cell)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SLICE_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    key: "" if isinstance(value, float) and math.isnan(value) else value
                    for key, value in row.items()
                }
            )
