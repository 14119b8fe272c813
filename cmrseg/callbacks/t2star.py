"""T2* agreement of predicted and reference masks at the end of validation and test.

:class:`T2StarCallback` segments the slices of the validation (or test) split, fits T2* with
:func:`cmrseg.t2star.quantify_slice` on the predicted mask and on the reference mask (global
myocardium and six 60-degree sectors, contract section 2) and, where the file has the true map
``t2star_ms`` (synthetic data), adds the true T2* of each region. It reports

- scalars (``val/t2star_bias_ms``, ... see :data:`SUMMARY_KEYS`) through ``pl_module.log``, so
  they reach every logger and ``trainer.callback_metrics`` (and ``trainer.test``'s results);
- a table (one row per slice and region, :data:`AGREEMENT_COLUMNS`), a Bland-Altman plot and a
  scatter plot: to W&B (``wandb.Table`` and ``wandb.Image``, when a ``WandbLogger`` is used) and
  as ``<run>/t2star/<stage>_*.csv|png|json`` files (always, written atomically).

Everything runs on global rank 0 only; the other ranks return at once and the rank-0 code runs
no collective operation (the network forward calls the LightningModule itself, in eval mode,
never the DDP wrapper), so nothing can deadlock. A W&B failure is logged as a warning and never
stops training.

The fit is the project's default estimator from ``conf/t2star/default.yaml`` (or ``config``):
the vectorized Levenberg-Marquardt fitter of :mod:`cmrseg.t2star.fitting`, which is tested to
agree with the per-curve lmfit reference (:func:`cmrseg.t2star.fit_curve_lmfit`) to 0.1%.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cmrseg.callbacks.plots import bland_altman_figure, figure_png, scatter_figure
from cmrseg.core.atomic import atomic_path
from cmrseg.core.geometry import estimate_rv_insertion, sector_map
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.data.datamodule import EchoStackDataModule
from cmrseg.data.dataset import EchoStackDataset
from cmrseg.data.echo_stack import EchoStackFile
from cmrseg.t2star import (
    REGIONS,
    RegionResult,
    T2StarConfig,
    grade_t2star,
    load_t2star_config,
    quantify_slice,
    slice_noise_sigma,
)
from cmrseg.t2star.agreement import bland_altman, cohen_kappa, icc
from cmrseg.t2star.grading import GRADE_LOWER_BOUNDS_MS
from cmrseg.t2star.status import Status
from cmrseg.utils.checkpoint import slice_wise_data_config

__all__ = ["AGREEMENT_COLUMNS", "SUMMARY_KEYS", "T2StarCallback", "agreement_summary"]

log = logging.getLogger(__name__)

Stage = Literal["val", "test"]

#: Columns of the agreement table (W&B table and CSV), one row per slice and region.
AGREEMENT_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "slice_index",
    "slice_location",
    "region",
    "t2star_pred_ms",
    "t2star_ref_ms",
    "t2star_true_ms",
    "grade_pred",
    "grade_ref",
    "grade_true",
    "status_pred",
    "status_ref",
    "n_pixels_pred",
    "n_pixels_ref",
)

#: Scalars of :func:`agreement_summary`, logged as ``<stage>/<key>``. ``pred`` is T2* on the
#: predicted mask, ``ref`` on the reference mask, ``true`` the mean true T2*; unprefixed keys
#: compare pred with ref on the global rows (bias = mean of pred - ref), ``sectors_`` the same
#: on the pooled sector rows, ``true_`` pred with true on the global rows (NaN without a true
#: map). ``_n`` counts the pairs with both values. ICC is ICC(2,1) (two-way random effects,
#: absolute agreement, single measurement); kappa is Cohen's unweighted kappa of the grades.
SUMMARY_KEYS: tuple[str, ...] = (
    "t2star_n",
    "t2star_bias_ms",
    "t2star_loa_low_ms",
    "t2star_loa_high_ms",
    "t2star_icc",
    "t2star_kappa",
    "t2star_sectors_n",
    "t2star_sectors_bias_ms",
    "t2star_sectors_loa_low_ms",
    "t2star_sectors_loa_high_ms",
    "t2star_sectors_icc",
    "t2star_sectors_kappa",
    "t2star_true_n",
    "t2star_true_bias_ms",
    "t2star_true_loa_low_ms",
    "t2star_true_loa_high_ms",
    "t2star_true_icc",
    "t2star_pred_ok_fraction",
)

_GRADES = tuple(grade for grade, _ in reversed(GRADE_LOWER_BOUNDS_MS))


def _pair_stats(
    prefix: str, a: np.ndarray, b: np.ndarray, grades: tuple[list[str], list[str]] | None
) -> dict[str, float]:
    """Bias, limits of agreement, ICC(2,1) and (given grades) kappa of pairs ``a`` vs ``b``."""
    ba = bland_altman(a, b)
    out = {
        f"{prefix}n": float(ba.n),
        f"{prefix}bias_ms": ba.bias,
        f"{prefix}loa_low_ms": ba.loa_low,
        f"{prefix}loa_high_ms": ba.loa_high,
        f"{prefix}icc": icc(np.stack([a, b], axis=1), "2,1"),
    }
    if grades is not None:
        out[f"{prefix}kappa"] = cohen_kappa(*grades, categories=_GRADES)
    return out


def agreement_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Agreement scalars of an agreement table (keys :data:`SUMMARY_KEYS`, no stage prefix).

    Args:
        rows: Rows with the keys of :data:`AGREEMENT_COLUMNS`; T2* values are floats (NaN
            where missing) and grades strings (``""`` where missing).

    Returns:
        Scalars; NaN where undefined (e.g. no pair, or kappa with a single grade everywhere).
    """

    def column(subset: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
        return np.array([float(r[key]) for r in subset], dtype=float)

    glob = [r for r in rows if r["region"] == "global"]
    sectors = [r for r in rows if r["region"] != "global"]
    out: dict[str, float] = {}
    for prefix, subset in (("t2star_", glob), ("t2star_sectors_", sectors)):
        grades = ([r["grade_pred"] for r in subset], [r["grade_ref"] for r in subset])
        out |= _pair_stats(
            prefix, column(subset, "t2star_pred_ms"), column(subset, "t2star_ref_ms"), grades
        )
    out |= _pair_stats(
        "t2star_true_", column(glob, "t2star_pred_ms"), column(glob, "t2star_true_ms"), None
    )
    ok = [r["status_pred"] == "ok" for r in rows]
    out["t2star_pred_ok_fraction"] = float(np.mean(ok)) if ok else math.nan
    return {key: out[key] for key in SUMMARY_KEYS}


def _true_region_means(
    true_map_ms: np.ndarray, labels: np.ndarray, point: tuple[float, float] | None
) -> list[float]:
    """Mean true T2* (ms) over the reference myocardium and each of its six sectors."""
    myo = labels == MYOCARDIUM

    def mean(mask: np.ndarray) -> float:
        values = true_map_ms[mask]
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else math.nan

    out = [mean(myo)]
    if point is None or not myo.any():
        return out + [math.nan] * (len(REGIONS) - 1)
    sectors = sector_map(labels, point)
    return out + [mean(sectors == k) for k in range(1, len(REGIONS))]


def _reference_point(
    labels: np.ndarray, rv_insertion: np.ndarray | None, config: T2StarConfig
) -> tuple[float, float] | None:
    """The sector anchor that :func:`quantify_slice` uses for these labels."""
    if rv_insertion is not None and np.isfinite(rv_insertion).all():
        return float(rv_insertion[0]), float(rv_insertion[1])
    if config.region.rv_insertion_fallback == "none" or not (labels == MYOCARDIUM).any():
        return None
    return estimate_rv_insertion(labels, config.region.standard_rv_angle_deg)


def _value(result: RegionResult) -> float:
    return result.t2star_ms if result.status is Status.OK else math.nan


class T2StarCallback(Callback):
    """Log T2* agreement (predicted vs reference masks, and vs the truth) after val and test.

    The LightningModule must offer ``predict_labels(images [B, C, H, W]) -> uint8 [B, H, W]``
    (0 background, 1 blood pool, 2 myocardium) and ``in_channels`` (as
    :class:`~cmrseg.modules.SegmentationModule` does); the datamodule must be an
    :class:`~cmrseg.data.datamodule.EchoStackDataModule`. Slices are shown to the network one
    sample per slice as in ``cmrseg-eval`` / ``cmrseg-predict``
    (:func:`~cmrseg.utils.checkpoint.slice_wise_data_config`); T2* is fitted on all echoes of
    the file.

    Args:
        every_n_epochs: Run after the validation of epochs ``k-1``, ``2k-1``, ... (0-based;
            choose a multiple of the trainer's ``check_val_every_n_epoch``) and after every
            ``trainer.validate``; ``0``: never after validation. Never in the sanity check.
        max_slices: Use at most this many slices of the split, evenly spread over it (so over
            subjects); ``None`` for all.
        on_test: Also run at the end of ``trainer.test``.
        config: T2* settings: a :class:`~cmrseg.t2star.T2StarConfig`, a mapping with its keys
            (``conf/callbacks/t2star.yaml`` composes ``conf/t2star/default.yaml`` here), a YAML
            file, or ``None`` for ``conf/t2star/default.yaml``.
        output_dir: Folder for the CSV, PNG and JSON files; ``None`` for
            ``<trainer.log_dir>/t2star``.
    """

    def __init__(
        self,
        *,
        every_n_epochs: int,
        max_slices: int | None,
        on_test: bool,
        config: T2StarConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        output_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if every_n_epochs < 0:
            raise ValueError(f"every_n_epochs must be >= 0, got {every_n_epochs}")
        if max_slices is not None and max_slices < 1:
            raise ValueError(f"max_slices must be >= 1 or None, got {max_slices}")
        self.every_n_epochs = int(every_n_epochs)
        self.max_slices = max_slices
        self.on_test = on_test
        if isinstance(config, T2StarConfig):
            self.t2star_config = config
        elif isinstance(config, Mapping):
            self.t2star_config = T2StarConfig.from_dict(config)
        else:
            self.t2star_config = load_t2star_config(config)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self._out_dir: Path | None = None

    # ------------------------------------------------------------------ hooks

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Check the module and the datamodule; fix the output folder (on every rank).

        ``trainer.log_dir`` broadcasts from rank 0, so it is read here, where every rank takes
        part, and never in the rank-0-only code.
        """
        if not callable(getattr(pl_module, "predict_labels", None)):
            raise TypeError(
                f"T2StarCallback needs {type(pl_module).__name__}.predict_labels(images) -> "
                "labels [B, H, W] (see cmrseg.modules.SegmentationModule)"
            )
        if not isinstance(trainer.datamodule, EchoStackDataModule):
            raise TypeError(
                "T2StarCallback needs the trainer's datamodule to be an EchoStackDataModule, "
                f"got {type(trainer.datamodule).__name__}"
            )
        self._out_dir = (
            self.output_dir or Path(trainer.log_dir or trainer.default_root_dir) / "t2star"
        )

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Run on rank 0 every ``every_n_epochs`` epochs, never in the sanity check."""
        if trainer.sanity_checking or self.every_n_epochs == 0:
            return
        fitting = trainer.state.fn == TrainerFn.FITTING
        if fitting and (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        if trainer.is_global_zero:
            self._run(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Run on rank 0 after the test epoch (if ``on_test``)."""
        if self.on_test and trainer.is_global_zero:
            self._run(trainer, pl_module, "test")

    # ------------------------------------------------------------------ work

    def _slice_indices(self, datamodule: EchoStackDataModule, stage: Stage) -> np.ndarray:
        indices = datamodule.split_indices(stage)
        if self.max_slices is not None and indices.size > self.max_slices:
            picks = np.linspace(0, indices.size - 1, self.max_slices).round().astype(int)
            indices = indices[np.unique(picks)]
        return indices

    @torch.no_grad()
    def _predict(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        source: EchoStackFile,
        indices: np.ndarray,
    ) -> dict[int, np.ndarray]:
        """Predicted labels uint8 ``[H, W]`` of each slice index (in the trainer's precision)."""
        datamodule, precision = trainer.datamodule, trainer.precision_plugin
        wanted = slice_wise_data_config(
            OmegaConf.create(
                {"input_mode": datamodule.input_mode, "normalization": datamodule.normalization}
            ),
            int(getattr(pl_module, "in_channels", datamodule.in_channels)),
        )
        dataset = EchoStackDataset(
            source,
            indices,
            input_mode=wanted["input_mode"],
            echoes=datamodule.echoes,
            target=datamodule.target,
            normalization=wanted["normalization"],
            with_labels=False,
        )
        loader = DataLoader(dataset, batch_size=datamodule.batch_size, shuffle=False)
        was_training = pl_module.training
        pl_module.eval()
        try:
            labels: dict[int, np.ndarray] = {}
            for batch in loader:
                with precision.forward_context():
                    pred = pl_module.predict_labels(batch["image"].to(pl_module.device))
                for i, slice_labels in zip(
                    batch["slice_index"].tolist(), pred.cpu().numpy(), strict=True
                ):
                    labels[int(i)] = slice_labels.astype(np.uint8)
        finally:
            pl_module.train(was_training)
        return labels

    def _rows(
        self, source: EchoStackFile, indices: np.ndarray, pred: Mapping[int, np.ndarray]
    ) -> list[dict[str, Any]]:
        """Agreement rows of every slice (7 per slice, in :data:`REGIONS` order)."""
        info = source.info
        config = self.t2star_config
        has_true = "t2star_ms" in info.datasets
        rows: list[dict[str, Any]] = []
        for i in tqdm(indices.tolist(), desc="T2* agreement", unit="slice", leave=False):
            images = source.read("images", i)
            ref = source.read("labels", i)
            point = None if info.rv_insertion is None else info.rv_insertion[i]
            axis = -1 if info.phase_encoding_axis is None else int(info.phase_encoding_axis[i])
            _, sigma = slice_noise_sigma(images, config)
            fit = {
                name: quantify_slice(
                    images,
                    info.te_ms[i],
                    labels,
                    point,
                    config=config,
                    phase_encoding_axis=axis,
                    pixel_spacing_mm=info.pixel_spacing_mm[i],
                    sigma=sigma,
                )
                for name, labels in (("pred", pred[i]), ("ref", ref))
            }
            if has_true:
                anchor = _reference_point(ref, point, config)
                true = _true_region_means(source.read("t2star_ms", i), ref, anchor)
            else:
                true = [math.nan] * len(REGIONS)
            for p, r, t in zip(fit["pred"], fit["ref"], true, strict=True):
                rows.append(
                    {
                        "subject_id": info.subject_id[i],
                        "slice_index": i,
                        "slice_location": info.slice_location[i],
                        "region": p.region,
                        "t2star_pred_ms": _value(p),
                        "t2star_ref_ms": _value(r),
                        "t2star_true_ms": t,
                        "grade_pred": p.grade,
                        "grade_ref": r.grade,
                        "grade_true": grade_t2star(t),
                        "status_pred": p.status.value,
                        "status_ref": r.status.value,
                        "n_pixels_pred": p.n_pixels,
                        "n_pixels_ref": r.n_pixels,
                    }
                )
        return rows

    def _run(self, trainer: Trainer, pl_module: LightningModule, stage: Stage) -> None:
        datamodule = trainer.datamodule
        indices = self._slice_indices(datamodule, stage)
        if indices.size == 0:
            log.warning("T2* agreement: the %s split has no slices; skipped", stage)
            return
        info = datamodule.info
        source = EchoStackFile(info.path, info=info)
        try:
            pred = self._predict(trainer, pl_module, source, indices)
            rows = self._rows(source, indices, pred)
        finally:
            source.close()
        summary = agreement_summary(rows)
        for key, value in summary.items():
            pl_module.log(f"{stage}/{key}", value, rank_zero_only=True)
        has_true = "t2star_ms" in info.datasets
        tag = f"{stage}_epoch{trainer.current_epoch:04d}" if stage == "val" else stage
        title = (
            f"{stage} epoch {trainer.current_epoch}: {len(indices)} slices, "
            f"bias {summary['t2star_bias_ms']:.2f} ms, ICC(2,1) {summary['t2star_icc']:.3f}"
        )
        pngs = self._figures(rows, has_true, title)
        out_dir = self._out_dir
        if out_dir is None:
            raise RuntimeError("T2StarCallback.setup() was not called by the trainer")
        self._write_files(out_dir, tag, rows, pngs, summary, stage, trainer)
        self._log_wandb(trainer, stage, rows, pngs)
        log.info(
            "T2* agreement (%s, %d slices): bias %.2f ms, LoA [%.2f, %.2f] ms, ICC(2,1) %.3f, "
            "kappa %.3f; files in %s",
            stage,
            len(indices),
            summary["t2star_bias_ms"],
            summary["t2star_loa_low_ms"],
            summary["t2star_loa_high_ms"],
            summary["t2star_icc"],
            summary["t2star_kappa"],
            out_dir,
        )

    @staticmethod
    def _figures(rows: Sequence[Mapping[str, Any]], has_true: bool, title: str) -> dict[str, bytes]:
        pred = np.array([r["t2star_pred_ms"] for r in rows], dtype=float)
        ref = np.array([r["t2star_ref_ms"] for r in rows], dtype=float)
        true = np.array([r["t2star_true_ms"] for r in rows], dtype=float) if has_true else None
        is_global = np.array([r["region"] == "global" for r in rows])
        return {
            "bland_altman": figure_png(bland_altman_figure(pred, ref, is_global, title)),
            "scatter": figure_png(scatter_figure(pred, ref, true, is_global, title)),
        }

    @staticmethod
    def _write_files(
        out_dir: Path,
        tag: str,
        rows: Sequence[Mapping[str, Any]],
        pngs: Mapping[str, bytes],
        summary: Mapping[str, float],
        stage: Stage,
        trainer: Trainer,
    ) -> None:
        """Write ``<tag>_table.csv``, ``<tag>_<plot>.png`` and ``<tag>_summary.json``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        table = out_dir / f"{tag}_table.csv"
        with atomic_path(table) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=AGREEMENT_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: _text(v) for k, v in row.items()} for row in rows)
        for name, png in pngs.items():
            with atomic_path(out_dir / f"{tag}_{name}.png") as tmp:
                tmp.write_bytes(png)
        record = {
            "stage": stage,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "icc_kind": "ICC(2,1): two-way random effects, absolute agreement, single measurement",
            "kappa_kind": "Cohen's unweighted kappa of the grades",
            **{key: _json_number(value) for key, value in summary.items()},
        }
        with atomic_path(out_dir / f"{tag}_summary.json") as tmp:
            tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")

    @staticmethod
    def _log_wandb(
        trainer: Trainer, stage: Stage, rows: Sequence[Mapping[str, Any]], pngs: Mapping[str, bytes]
    ) -> None:
        """Log the table and the plots to every W&B logger; failures only warn."""
        for logger in trainer.loggers:
            if not isinstance(logger, WandbLogger):
                continue
            try:
                import wandb

                table = wandb.Table(
                    columns=list(AGREEMENT_COLUMNS),
                    data=[[_json_number(row[c]) for c in AGREEMENT_COLUMNS] for row in rows],
                )
                payload: dict[str, Any] = {f"{stage}/t2star_table": table}
                for name, png in pngs.items():
                    payload[f"{stage}/t2star_{name}"] = wandb.Image(Image.open(io.BytesIO(png)))
                # the step Lightning gives the epoch's scalars (as its LearningRateMonitor does)
                logger.log_metrics(payload, step=trainer.fit_loop.epoch_loop._batches_that_stepped)
            except Exception as err:  # W&B must never stop training; anything it raises is logged
                log.warning("T2* agreement not logged to W&B: %s: %s", type(err).__name__, err)


def _json_number(value: Any) -> Any:
    """NaN becomes ``None``; numpy scalars become Python numbers; other values pass."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _text(value: Any) -> str:
    """CSV text of a table value: floats with 6 significant digits, NaN empty."""
    if isinstance(value, (float, np.floating)):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return str(value)
