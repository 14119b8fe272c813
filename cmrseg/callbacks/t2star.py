"""T2* agreement of predicted and reference masks after validation and test: a thin adapter.

It keeps the labels that the module's ``validation_step`` / ``test_step`` return, and their
``seg_uncertainty`` when the module measures it (no second inference, no random numbers
drawn); each rank fits T2* on its own slices
(:class:`~cmrseg.t2star.mask_agreement.MaskAgreement`, reference fits cached), every rank gets
all rows and logs the scalars (``val/t2star_bias_ms``, ..., per slice and per subject), and
rank 0 writes the files (with the bootstrap intervals over subjects) and W&B media
(:mod:`cmrseg.report.agreement`; W&B failures only warn).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn

from cmrseg.data.datamodule import EchoStackDataModule
from cmrseg.data.echo_stack import EchoStackFile
from cmrseg.inference import slice_labels, slice_uncertainty
from cmrseg.report import log_agreement_media, write_agreement_report
from cmrseg.t2star import T2StarConfig, load_t2star_config
from cmrseg.t2star.mask_agreement import (
    SUMMARY_KEYS,
    MaskAgreement,
    agreement_summary,
    merge_rows,
)

__all__ = ["T2StarCallback"]

log = logging.getLogger(__name__)

Stage = Literal["val", "test"]


class T2StarCallback(Callback):
    """Log T2* agreement (predicted vs reference masks, and vs the truth) after val and test.

    Args:
        every_n_epochs: Run after the validation of epochs ``k-1``, ``2k-1``, ... (0-based;
            choose a multiple of the trainer's ``check_val_every_n_epoch``) and after every
            ``trainer.validate``; ``0``: never after validation. Never in the sanity check.
        max_slices: Use at most this many slices of the split, evenly spread over it (so over
            subjects); ``None`` for all.
        on_test: Also run at the end of ``trainer.test``.
        figures: When to draw the Bland-Altman and scatter figures (about 0.2 s each time):
            ``final`` for the test report, ``trainer.validate`` and the last validation of a
            fit (the epoch ``max_epochs - 1`` or a stop); ``every`` for every report. Tables
            and scalars are written at every report.
        config: T2* settings: a :class:`~cmrseg.t2star.T2StarConfig`, a mapping with its keys,
            a YAML file, or ``None`` for ``conf/t2star/default.yaml``.
        output_dir: Folder for the files; ``None`` for ``<trainer.log_dir>/t2star``.
    """

    def __init__(
        self,
        *,
        every_n_epochs: int,
        max_slices: int | None,
        on_test: bool,
        figures: Literal["final", "every"],
        config: T2StarConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        output_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if every_n_epochs < 0:
            raise ValueError(f"every_n_epochs must be >= 0, got {every_n_epochs}")
        if max_slices is not None and max_slices < 1:
            raise ValueError(f"max_slices must be >= 1 or None, got {max_slices}")
        if figures not in ("final", "every"):
            raise ValueError(f"figures must be 'final' or 'every', got {figures!r}")
        self.every_n_epochs, self.max_slices, self.on_test = every_n_epochs, max_slices, on_test
        self.figures = figures
        if isinstance(config, Mapping):
            config = T2StarConfig.from_dict(config)
        self.t2star_config = (
            config if isinstance(config, T2StarConfig) else load_t2star_config(config)
        )
        self.output_dir = None if output_dir is None else Path(output_dir)
        self._agreement = MaskAgreement(self.t2star_config)
        self._wanted: set[int] | None = None  # slices to keep this epoch; None: not running
        self._labels: dict[int, np.ndarray] = {}
        self._uncertainty: dict[int, float] = {}  # segmentation uncertainty by slice, if given
        self._stage: Stage = "val"
        #: The last report's summary: scalars and intervals (``agreement_summary``).
        self.last_summary: dict[str, float] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Check the datamodule; fix the output folder (``log_dir`` broadcasts: every rank)."""
        if not isinstance(trainer.datamodule, EchoStackDataModule):
            raise TypeError(f"T2StarCallback needs an EchoStackDataModule: {trainer.datamodule}")
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        self._out_dir = self.output_dir or log_dir / "t2star"

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Decide whether this validation is reported (never the sanity check)."""
        epoch_due = (trainer.current_epoch + 1) % max(self.every_n_epochs, 1) == 0
        due = trainer.state.fn != TrainerFn.FITTING or epoch_due
        self._begin(trainer, "val", self.every_n_epochs > 0 and not trainer.sanity_checking and due)

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Report this test epoch if ``on_test``."""
        self._begin(trainer, "test", self.on_test)

    def _begin(self, trainer: Trainer, stage: Stage, active: bool) -> None:
        self._stage, self._labels, self._wanted = stage, {}, None
        self._uncertainty = {}
        if active:
            indices = trainer.datamodule.split_indices(stage)
            if self.max_slices is not None and indices.size > self.max_slices:
                picks = np.linspace(0, indices.size - 1, self.max_slices).round().astype(int)
                indices = indices[np.unique(picks)]
            self._wanted = set(indices.tolist())

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, *args: Any
    ) -> None:
        """Keep the labels of the wanted slices from the step's outputs."""
        if self._wanted is None:
            return
        if not isinstance(outputs, Mapping) or not {"labels", "slice_index"} <= set(outputs):
            raise TypeError(
                "T2StarCallback needs validation_step/test_step to return {'labels': uint8 "
                "[B, H, W], 'slice_index': int64 [B]} (see cmrseg.modules.SegmentationModule)"
            )
        labels = slice_labels([outputs])
        self._labels |= {i: v for i, v in labels.items() if i in self._wanted}
        # SegmentationModule(seg_uncertainty="rot90") adds it to the outputs
        uncertainty = slice_uncertainty([outputs])
        self._uncertainty |= {i: v for i, v in uncertainty.items() if i in self._wanted}

    on_test_batch_end = on_validation_batch_end

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fit T2* on this rank's slices, gather the rows, log them and (rank 0) report them."""
        if self._wanted is None:
            return
        info, self._wanted = trainer.datamodule.info, None
        source = EchoStackFile(info.path, info=info)
        try:
            rows = self._agreement.rows(
                source,
                self._labels,
                progress=trainer.is_global_zero,
                seg_uncertainty=self._uncertainty,
            )
        finally:
            source.close()
        parts: list[Any] = [rows]
        if trainer.world_size > 1:  # DDP (the process group is up): every rank gets all rows
            parts = [None] * trainer.world_size
            torch.distributed.all_gather_object(parts, rows)
        rows, self._labels, self._uncertainty = merge_rows(parts), {}, {}
        if not rows:
            log.warning("T2* agreement: no %s slices; skipped", self._stage)
            return
        summary = self.last_summary = agreement_summary(rows)
        for key in SUMMARY_KEYS:  # equal on every rank: the mean over ranks keeps it
            pl_module.log(f"{self._stage}/{key}", summary[key], sync_dist=True)
        if not trainer.is_global_zero:
            return
        last_fit_epoch = trainer.should_stop or trainer.current_epoch + 1 >= (
            trainer.max_epochs or 0
        )
        final = trainer.state.fn != TrainerFn.FITTING or last_fit_epoch
        title, pngs = write_agreement_report(
            self._out_dir,
            rows,
            summary,
            stage=self._stage,
            epoch=trainer.current_epoch,
            global_step=trainer.global_step,
            has_true="t2star_ms" in info.datasets,
            figures=self.figures == "every" or final,
        )
        # at the step Lightning gives the epoch's scalars (as its LearningRateMonitor does)
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                log_agreement_media(logger, self._stage, rows, pngs, step)
        log.info("T2* agreement: %s; files in %s", title, self._out_dir)

    on_test_epoch_end = on_validation_epoch_end
