"""The LightningModule of the classical (non-learned) segmenters: GAC and region growing.

It runs :mod:`cmrseg.classical` through the same commands, datamodule, metrics, step outputs and
T2* callback as :class:`~cmrseg.modules.SegmentationModule`, so a multirun can hold networks and
classical methods side by side (``cmrseg-train -m model=unet,gac``). Nothing is learned by
gradients: "training" is a calibration. The one training epoch collects the training slices
(raw magnitudes of all echoes, their echo times, spacing and reference labels); after its last
batch :func:`~cmrseg.classical.calibrate` chooses the parameters of ``search_space`` by mean
myocardial Jaccard on them (the given ``params`` are the first candidate and the values of
everything not searched), and training stops after that epoch's validation, which (with the
checkpoint it leads to) already uses the calibrated parameters. The chosen parameters are the
module's state (:class:`ClassicalSegmenter`'s extra state in ``state_dict``), so a checkpoint
reproduces them in ``cmrseg-eval`` and ``cmrseg-predict``. An empty ``search_space`` keeps
``params``. Run it in one process (``trainer=default``): DDP needs parameters to synchronize;
the slices are spread over ``n_workers`` processes instead.

Validation, test and prediction segment each slice of a batch in a pool of ``n_workers``
processes; a slice where no LV is found gets an empty prediction, its reason is logged, and
``<stage>/empty_slices`` and ``<stage>/seconds_per_slice`` are logged with the metrics.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import LightningModule
from torch import nn
from torchmetrics import MetricCollection

from cmrseg.classical import METHODS, SegmentationResult, calibrate, make_params, segment
from cmrseg.core.atomic import atomic_path
from cmrseg.core.labels import MYOCARDIUM

__all__ = ["ClassicalSegmentationModule", "ClassicalSegmenter"]

log = logging.getLogger(__name__)

#: File with the calibration's score of every candidate, written into the run folder.
CALIBRATION_FILE = "calibration.csv"


class ClassicalSegmenter(nn.Module):
    """A classical method and its parameters, kept in ``state_dict`` as extra state.

    The state is a plain dict (``method``, ``params`` with lists for tuples, ``calibrated``),
    so checkpoints stay loadable with ``torch.load(weights_only=True)``.

    Args:
        method: ``gac`` or ``region_growing``.
        params: Its parameters (every key of the method's dataclass).
    """

    def __init__(self, method: str, params: Mapping[str, Any]) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
        self.method = method
        self.params = make_params(method, params)
        self.calibrated = False

    def get_extra_state(self) -> dict[str, Any]:
        """The method, its parameters and whether they were calibrated."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.params).items()}
        return {"method": self.method, "params": values, "calibrated": self.calibrated}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_extra_state` (refuses another method's state)."""
        if state["method"] != self.method:
            raise RuntimeError(f"state of method {state['method']!r}, module is {self.method!r}")
        self.params = make_params(self.method, state["params"])
        self.calibrated = bool(state["calibrated"])

    def forward(self, images: np.ndarray, te_ms: np.ndarray, spacing_mm: np.ndarray) -> Any:
        """Segment one slice ``[E, H, W]`` (see :func:`cmrseg.classical.segment`)."""
        return segment(images, te_ms, spacing_mm, self.params)


def _segment_slice(args: tuple[np.ndarray, np.ndarray, np.ndarray, Any]) -> tuple[Any, float]:
    """Worker task: one slice's result and the seconds it took."""
    start = time.perf_counter()
    result = segment(*args)
    return result, time.perf_counter() - start


class ClassicalSegmentationModule(LightningModule):
    """Calibrate, validate, test and predict a classical segmenter on echo-stack batches.

    Batches are those of :class:`~cmrseg.data.EchoStackDataModule` with
    ``input_mode: echoes_as_channels``, all echoes, ``normalization: none`` and the
    ``three_class`` target (``conf/model/gac.yaml`` sets them): ``image [B, E, H, W]``,
    ``te_ms [B, E]``, ``pixel_spacing_mm [B, 2]``, ``slice_index [B]`` and ``mask [B, H, W]``.

    Args:
        method: ``gac`` or ``region_growing``.
        params: The method's parameters (``conf/model/<method>.yaml``).
        search_space: Parameter name -> values tried by the calibration (empty: none).
        max_trials: Calibrate on at most this many grid points, drawn with ``seed``
            (``None``: the whole grid).
        seed: Seed of that draw.
        n_workers: Processes that segment slices (calibration, validation, test, predict).
        metrics: Metric collection on binary myocardium masks, cloned for ``val/`` and
            ``test/`` (as in :class:`~cmrseg.modules.SegmentationModule`).
    """

    monitor = "val/jaccard"
    mode = "max"

    def __init__(
        self,
        *,
        method: str,
        params: Mapping[str, Any],
        search_space: Mapping[str, Sequence[Any]],
        max_trials: int | None,
        seed: int,
        n_workers: int,
        metrics: MetricCollection,
    ) -> None:
        super().__init__()
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.save_hyperparameters(ignore=["metrics"], logger=False)
        self.automatic_optimization = False
        self.segmenter = ClassicalSegmenter(method, params)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self._train_slices: list[dict[str, np.ndarray]] = []
        self._pool: ProcessPoolExecutor | None = None
        self._timing = {"seconds": 0.0, "slices": 0, "empty": 0}

    def configure_optimizers(self) -> None:
        """Nothing to optimize: parameters are chosen by calibration."""
        return None

    # ------------------------------------------------------------------ calibration

    def on_train_epoch_start(self) -> None:
        """Start collecting the training slices."""
        self._train_slices = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Keep the batch's slices (raw echoes, TE, spacing, reference labels); calibrate last."""
        self._train_slices.append(
            {
                key: batch[key].cpu().numpy()
                for key in ("image", "te_ms", "pixel_spacing_mm", "mask", "slice_index")
            }
        )
        if batch_idx == self.trainer.num_training_batches - 1:
            self._calibrate_and_stop()

    def _calibrate_and_stop(self) -> None:
        """Calibrate on every rank's training slices (rank 0), share the result, stop."""
        parts: list[Any] = [self._train_slices]
        if self.trainer.world_size > 1:
            parts = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(parts, self._train_slices)
        self._train_slices = []
        found = None
        if self.trainer.is_global_zero:
            found = self._calibrate([b for part in parts for b in part])
        found = self.trainer.strategy.broadcast(found, src=0)
        self.segmenter.set_extra_state(found["state"])
        self.log_dict(
            {"train/jaccard": found["jaccard"], "train/seconds_per_slice": found["seconds"]}
        )
        self.trainer.should_stop = True

    def _calibrate(self, batches: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        """Run the calibration on the gathered batches; returns the state and its score."""
        data = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
        _, first = np.unique(data["slice_index"], return_index=True)  # DDP pads with repeats
        data = {key: value[first] for key, value in data.items()}
        hparams = self.hparams
        result = calibrate(
            hparams.method,
            data["image"],
            data["te_ms"],
            data["pixel_spacing_mm"],
            data["mask"],
            self.segmenter.params,
            hparams.search_space,
            max_trials=hparams.max_trials,
            seed=hparams.seed,
            n_workers=hparams.n_workers,
        )
        self.segmenter.params = result.params
        self.segmenter.calibrated = True
        log.info(
            "Calibrated %s on %d training slices: Jaccard %.4f, %s",
            hparams.method,
            len(first),
            result.jaccard,
            {k: getattr(result.params, k) for k in sorted(hparams.search_space)},
        )
        self._write_table(result.table)
        return {
            "state": self.segmenter.get_extra_state(),
            "jaccard": result.jaccard,
            "seconds": result.seconds_per_slice,
        }

    def _write_table(self, table: list[dict[str, Any]]) -> None:
        """Write every candidate's score to ``calibration.csv`` in the run folder."""
        path = Path(self.trainer.default_root_dir) / CALIBRATION_FILE
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(table)
        log.info("Calibration table: %s", path)

    # ------------------------------------------------------------------ segmentation

    def segment_slices(
        self, images: np.ndarray, te_ms: np.ndarray, spacing_mm: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        """Labels uint8 ``[B, H, W]`` of slices ``[B, E, H, W]`` and why any is empty.

        Args:
            images: Raw magnitudes ``[B, E, H, W]``.
            te_ms: Echo times ``[B, E]`` in ms.
            spacing_mm: (row, column) spacing ``[B, 2]`` in mm.

        Returns:
            The labels and one reason per slice (``""`` where an LV was found).
        """
        params = self.segmenter.params
        tasks = [(images[i], te_ms[i], spacing_mm[i], params) for i in range(len(images))]
        if self.hparams.n_workers > 1 and len(tasks) > 1:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.hparams.n_workers, mp_context=get_context("spawn")
                )
            outcomes = list(self._pool.map(_segment_slice, tasks))
        else:
            outcomes = [_segment_slice(task) for task in tasks]
        results: list[SegmentationResult] = [result for result, _ in outcomes]
        self._timing["seconds"] += sum(seconds for _, seconds in outcomes)
        self._timing["slices"] += len(results)
        self._timing["empty"] += sum(not r.found for r in results)
        return np.stack([r.labels for r in results]), [r.reason for r in results]

    def _segment_batch(self, batch: dict[str, Any]) -> torch.Tensor:
        labels, reasons = self.segment_slices(
            batch["image"].cpu().numpy(),
            batch["te_ms"].cpu().numpy(),
            batch["pixel_spacing_mm"].cpu().numpy(),
        )
        for index, reason in zip(batch["slice_index"].tolist(), reasons, strict=True):
            if reason:
                log.info("%s: slice %d: empty prediction (%s)", self.hparams.method, index, reason)
        return torch.from_numpy(labels).to(batch["image"].device)

    def _evaluate(
        self, batch: dict[str, Any], metrics: MetricCollection
    ) -> dict[str, torch.Tensor]:
        labels = self._segment_batch(batch)
        metrics.update(
            labels == MYOCARDIUM,
            batch["mask"] == MYOCARDIUM,
            sample_id=batch["sample_id"],
            pixel_spacing_mm=batch["pixel_spacing_mm"],
        )
        return {"labels": labels, "slice_index": batch["slice_index"]}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Segment and score a batch of slices; return ``{"labels", "slice_index"}``."""
        return self._evaluate(batch, self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Segment and score a batch of slices; return ``{"labels", "slice_index"}``."""
        return self._evaluate(batch, self.test_metrics)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Predicted labels: ``{"labels": uint8 [B, H, W], "slice_index": int64 [B]}``."""
        return {"labels": self._segment_batch(batch), "slice_index": batch["slice_index"]}

    def _log_metrics(self, metrics: MetricCollection, stage: str) -> None:
        values = {k: v.float() for k, v in metrics.compute().items() if v.numel() == 1}
        slices = max(self._timing["slices"], 1)
        values[f"{stage}/seconds_per_slice"] = torch.tensor(self._timing["seconds"] / slices)
        values[f"{stage}/empty_slices"] = torch.tensor(float(self._timing["empty"]))
        self.log_dict(values, sync_dist=True)
        metrics.reset()

    def on_validation_epoch_start(self) -> None:
        """Reset the timing of this epoch."""
        self._timing = {"seconds": 0.0, "slices": 0, "empty": 0}

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        """Log ``val/...`` metrics, the time per slice and the empty slices."""
        self._log_metrics(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        """Log ``test/...`` metrics, the time per slice and the empty slices."""
        self._log_metrics(self.test_metrics, "test")

    def teardown(self, stage: str) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
