"""T2StarCallback, the agreement table and the statistics it reports (cmrseg.t2star)."""

from __future__ import annotations

import csv
import json
import logging
import math
import struct
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from scipy import ndimage

from cmrseg.callbacks import T2StarCallback
from cmrseg.cli.synth import main as synth_main
from cmrseg.data.datamodule import EchoStackDataModule
from cmrseg.data.echo_stack import EchoStackFile, read_echo_stack
from cmrseg.stats.agreement import bland_altman, cohen_kappa, icc
from cmrseg.t2star import REGIONS, load_t2star_config, mask_agreement
from cmrseg.t2star.mask_agreement import (
    AGREEMENT_COLUMNS,
    INTERVAL_KEYS,
    SUMMARY_KEYS,
    MaskAgreement,
    agreement_summary,
    merge_rows,
    reference_slice,
    subject_rows,
)

# --------------------------------------------------------------------------- statistics


def test_bland_altman_by_hand() -> None:
    # differences 1, 0, -1, 2 (the NaN pair is dropped): mean 0.5, SD sqrt(5/3)
    stats = bland_altman([10.0, 12.0, 14.0, 20.0, np.nan], [9.0, 12.0, 15.0, 18.0, 30.0])
    sd = math.sqrt(5.0 / 3.0)
    assert stats.n == 4
    assert stats.bias == pytest.approx(0.5)
    assert stats.sd == pytest.approx(sd)
    assert stats.loa_low == pytest.approx(0.5 - 1.959964 * sd)
    assert stats.loa_high == pytest.approx(0.5 + 1.959964 * sd)
    single = bland_altman([3.0], [1.0])
    assert single.bias == 2.0 and math.isnan(single.sd) and math.isnan(single.loa_high)
    assert bland_altman([], []).n == 0
    with pytest.raises(ValueError, match="equal length"):
        bland_altman([1.0, 2.0], [1.0])


def test_icc_shrout_fleiss_example() -> None:
    # Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges; ICC(2,1) = .29, ICC(3,1) = .71
    ratings = np.array(
        [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    )
    assert icc(ratings, "2,1") == pytest.approx(0.28976, abs=1e-4)
    assert icc(ratings, "3,1") == pytest.approx(0.71484, abs=1e-4)


def test_icc_constant_offset_by_hand() -> None:
    # rows (1,2), (2,3), (3,4): MSR = 2, MSC = 1.5, MSE = 0 -> ICC(3,1) = 1, ICC(2,1) = 2/3
    ratings = np.array([[1.0, 2.0], [2.0, 3.0], [3.0, 4.0], [np.nan, 1.0]])
    assert icc(ratings, "3,1") == pytest.approx(1.0)
    assert icc(ratings, "2,1") == pytest.approx(2.0 / 3.0)
    assert icc(np.array([[5.0, 5.0], [5.0, 5.0]]), "2,1") != icc(ratings, "2,1")  # NaN
    assert math.isnan(icc(np.array([[1.0, 2.0]]), "2,1"))
    with pytest.raises(ValueError, match="kind"):
        icc(ratings, "1,1")  # type: ignore[arg-type]


def test_cohen_kappa_by_hand() -> None:
    # p_o = 4/6, p_e = (2*2 + 2*3 + 2*1) / 36 = 1/3 -> kappa = 0.5;
    # linear weights: sum(W O) = 1.5/6, sum(W E) = 15/36 -> kappa_w = 0.4
    a = ["n", "n", "m", "m", "s", "s", ""]
    b = ["n", "m", "m", "m", "s", "n", "s"]
    assert cohen_kappa(a, b, categories="nms") == pytest.approx(0.5)
    assert cohen_kappa(a, b, categories="nms", weights="linear") == pytest.approx(0.4)
    assert cohen_kappa(a, a, categories="nms") == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(["n", "n"], ["n", "n"], categories="nms"))
    with pytest.raises(ValueError, match="not in categories"):
        cohen_kappa(["x"], ["n"], categories="nms")


# --------------------------------------------------------------------------- callback

SPLIT_SEED = 1  # 4 subjects: val S0002 (T2* 20 ms) + S0003 (13 ms), test S0001 (39 ms)


@pytest.fixture(scope="module")
def synth_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 phantom subjects x 3 slices, 192 x 256 px, 8 echoes, with true T2* maps."""
    path = tmp_path_factory.mktemp("synth") / "cohort.h5"
    assert synth_main([str(path), "--subjects", "4", "--seed", "0", "--no-progress"]) == 0
    return path


def _datamodule(path: Path) -> EchoStackDataModule:
    return EchoStackDataModule(
        path,
        input_mode="echoes_as_samples",
        echoes=[0, 1, 2],
        target="three_class",
        normalization="mvn",
        batch_size=8,
        val_fraction=0.5,
        test_fraction=0.25,
        split_seed=SPLIT_SEED,
        num_folds=None,
        fold=None,
        split_file=None,
        test_subjects="split",
        augmentation=None,
        seed=None,
        num_workers=0,
        pin_memory=False,
        multiprocessing_context=None,
        sharing_strategy=None,
        predict_path=None,
        te_ms=None,
    )


def _standardize(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1).double()
    return (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)


class OracleModule(LightningModule):
    """A one-channel "segmenter" that returns the reference labels of the input's slice.

    The slice is found as the nearest neighbour of the first input channel among the
    standardized first echoes of the file. ``dilate_px > 0`` grows the myocardium by that many
    pixels (a biased segmenter).
    """

    in_channels = 1

    def __init__(self, path: Path, dilate_px: int = 0) -> None:
        super().__init__()
        stack = read_echo_stack(path)
        self.keys = _standardize(torch.from_numpy(stack.images[:, 0]))
        labels = stack.labels.copy()
        if dilate_px:
            for i, slice_labels in enumerate(labels):
                myo = ndimage.binary_dilation(slice_labels == 2, iterations=dilate_px)
                labels[i][myo] = 2
        self.labels = torch.from_numpy(labels)
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def predict_labels(self, images: torch.Tensor) -> torch.Tensor:
        nearest = torch.cdist(_standardize(images[:, 0]), self.keys).argmin(dim=1)
        return self.labels[nearest]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return (self.weight - batch["image"].mean()) ** 2

    def _evaluate(self, batch: dict, stage: str) -> dict[str, torch.Tensor]:
        self.log(f"{stage}/loss", (self.weight - batch["image"].mean()) ** 2)
        return {"labels": self.predict_labels(batch["image"]), "slice_index": batch["slice_index"]}

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(root: Path, loggers: list, callback: T2StarCallback, max_epochs: int) -> Trainer:
    return Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        limit_train_batches=1,
        num_sanity_val_steps=1,
        logger=loggers,
        callbacks=[callback],
        default_root_dir=root,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def _read_table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == AGREEMENT_COLUMNS
        return list(reader)


def _broken_wandb_logger(root: Path) -> WandbLogger:
    """A W&B logger whose run accepts scalars but fails when the T2* table is logged."""

    def log(payload: dict, *args: object, **kwargs: object) -> None:
        if any("t2star_table" in key for key in payload):
            raise RuntimeError("W&B is down")

    logger = WandbLogger(save_dir=str(root), offline=True)
    logger._experiment = mock.MagicMock(log=mock.MagicMock(side_effect=log))
    return logger


def test_perfect_segmenter_with_csv_logger(synth_path: Path, tmp_path: Path, caplog) -> None:
    datamodule = _datamodule(synth_path)
    callback = T2StarCallback(every_n_epochs=2, max_slices=None, on_test=True, figures="final")
    csv_logger = CSVLogger(tmp_path, name="csv", version="")
    trainer = _trainer(tmp_path, [csv_logger, _broken_wandb_logger(tmp_path)], callback, 2)
    model = OracleModule(synth_path)
    with caplog.at_level(logging.WARNING, logger="cmrseg.callbacks.t2star"):
        trainer.fit(model, datamodule=datamodule)
        results = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    assert "T2* agreement not logged to W&B: RuntimeError: W&B is down" in caplog.text

    out = Path(csv_logger.log_dir) / "t2star"
    # the sanity check and epoch 0 are skipped (every 2nd epoch: epoch 1 only)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"{tag}_{kind}"
        for tag in ("val_epoch0001", "test")
        for kind in ("table.csv", "subjects.csv", "bland_altman.png", "scatter.png", "summary.json")
    )
    assert all((out / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names if "png" in n)

    val_slices = set(datamodule.split_indices("val").tolist())
    rows = _read_table(out / "val_epoch0001_table.csv")
    assert len(rows) == 7 * len(val_slices)
    assert {int(r["slice_index"]) for r in rows} == val_slices
    assert {r["subject_id"] for r in rows} == {"S0002", "S0003"}
    glob = [r for r in rows if r["region"] == "global"]
    assert all(r["status_pred"] == r["status_ref"] == "ok" for r in glob)
    for row in rows:  # perfect prediction: identical masks, identical fits
        assert row["t2star_pred_ms"] == row["t2star_ref_ms"]
        assert row["grade_pred"] == row["grade_ref"]
        assert row["n_pixels_pred"] == row["n_pixels_ref"]
        assert row["method_pred"] == row["method_ref"] != ""
        assert (row["qc_pred"], row["qc_reasons_pred"]) == (row["qc_ref"], row["qc_reasons_ref"])
        assert row["qc_pred"] in ("pass", "review") and float(row["noise_sigma"]) > 0
    methods = {r["method_pred"].split("/")[1] for r in glob}
    assert all(r["method_pred"].startswith("median_pixel/core") for r in glob)
    assert methods >= {"core_off_cavity"}  # the global wall off the cavity's phase lines
    # the true T2* (mean of the map over the reference myocardium) is near the fitted value
    fitted = np.array([float(r["t2star_ref_ms"]) for r in glob])
    true = np.array([float(r["t2star_true_ms"]) for r in glob])
    assert np.median(np.abs(fitted - true) / true) < 0.05
    assert {r["grade_true"] for r in glob} >= {"moderate"}

    summary = json.loads((out / "val_epoch0001_summary.json").read_text())
    assert summary["epoch"] == 1 and summary["t2star_n"] == len(val_slices)
    assert summary["t2star_bias_ms"] == 0.0
    assert summary["t2star_loa_low_ms"] == summary["t2star_loa_high_ms"] == 0.0
    assert summary["t2star_icc"] == pytest.approx(1.0)
    assert summary["t2star_kappa"] == pytest.approx(1.0)  # two grades among val slices
    assert summary["t2star_sectors_bias_ms"] == 0.0
    assert summary["t2star_true_n"] == len(val_slices)

    with open(Path(csv_logger.log_dir) / "metrics.csv", newline="") as handle:
        logged = [r for r in csv.DictReader(handle) if r.get("val/t2star_bias_ms")]
    assert len(logged) == 1 and float(logged[0]["val/t2star_bias_ms"]) == 0.0
    assert set(f"val/{k}" for k in SUMMARY_KEYS) <= set(logged[0])

    assert results["test/t2star_bias_ms"] == 0.0
    assert results["test/t2star_n"] == len(datamodule.split_indices("test"))
    assert math.isnan(results["test/t2star_kappa"])  # test subject: one grade only


def _wandb_summary(path: Path) -> dict[str, object]:
    """Final summary of an offline W&B run file (LevelDB-log records of protobuf messages).

    The file is a 7-byte header, then 32 KiB blocks of chunks ``crc32 u32, length u16,
    type u8`` (1 full, 2 first, 3 middle, 4 last); nested keys are joined with ``/``.
    """
    from wandb.proto import wandb_internal_pb2

    data, block, pos, chunks = path.read_bytes(), 32768, 7, []
    summary: dict[str, object] = {}
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunks.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind not in (1, 4):
            continue
        record = wandb_internal_pb2.Record.FromString(b"".join(chunks))
        chunks = []
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return summary


def test_wandb_offline_run_gets_table_images_and_scalars(
    synth_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    datamodule = _datamodule(synth_path)
    callback = T2StarCallback(every_n_epochs=1, max_slices=4, on_test=False, figures="final")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="cmrseg-tests")
    trainer = _trainer(tmp_path, [logger], callback, 1)
    try:
        trainer.fit(OracleModule(synth_path, dilate_px=3), datamodule=datamodule)
    finally:
        wandb.finish()
        wandb.teardown()  # the W&B service flushes the run file only when it stops

    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    summary = _wandb_summary(next(run_dir.glob("run-*.wandb")))
    # a segmenter that takes in blood-pool pixels overestimates T2*
    assert summary["val/t2star_n"] == 4
    assert summary["val/t2star_bias_ms"] > 0.5
    assert summary["val/t2star_loa_high_ms"] > summary["val/t2star_bias_ms"]
    assert summary["val/t2star_table/_type"] == "table-file"
    assert summary["val/t2star_table/nrows"] == 4 * 7
    assert summary["val/t2star_bland_altman/_type"] == "image-file"
    assert summary["val/t2star_scatter/_type"] == "image-file"

    media = run_dir / "files" / "media"
    (table_file,) = (media / "table" / "val").glob("t2star_table_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == list(AGREEMENT_COLUMNS)
    pred = [row[AGREEMENT_COLUMNS.index("t2star_pred_ms")] for row in table["data"]]
    ref = [row[AGREEMENT_COLUMNS.index("t2star_ref_ms")] for row in table["data"]]
    assert any(p is not None and r is not None and p > r for p, r in zip(pred, ref, strict=True))
    assert len(list((media / "images" / "val").glob("t2star_*.png"))) == 2
    # no file paths reach W&B (subject keys are pseudonyms already)
    assert str(synth_path.parent) not in table_file.read_text()
    assert str(synth_path.parent) not in json.dumps(summary)


def test_train_with_t2star_callback_config(make_cfg) -> None:
    from cmrseg.cli.train import train

    cfg = make_cfg(
        [
            "callbacks.t2star.every_n_epochs=1",
            "callbacks.t2star.config.region.wall=full",
            "callbacks.t2star.config.region.min_pixels=3",
            "+trainer.limit_train_batches=1",
        ]
    )
    metric_dict, objects = train(cfg)
    (callback,) = [c for c in objects["callbacks"] if isinstance(c, T2StarCallback)]
    assert callback.t2star_config.region.wall == "full"
    out = Path(cfg.paths.output_dir) / "t2star"
    assert (out / "val_epoch0000_table.csv").is_file() and (out / "test_table.csv").is_file()
    rows = _read_table(out / "test_table.csv")
    assert len(rows) == 7 * len(objects["datamodule"].split_indices("test"))
    assert metric_dict["test/t2star_n"] == sum(
        r["region"] == "global" and r["status_pred"] == r["status_ref"] == "ok" for r in rows
    )


@pytest.mark.slow
def test_ddp_rank_zero_only(synth_path: Path, tmp_path: Path) -> None:
    callback = T2StarCallback(every_n_epochs=1, max_slices=2, on_test=False, figures="final")
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=2,
        limit_train_batches=1,
        num_sanity_val_steps=0,
        logger=CSVLogger(tmp_path, name="csv", version=""),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(OracleModule(synth_path), datamodule=_datamodule(synth_path))
    out = tmp_path / "csv" / "t2star"
    assert sorted(p.name for p in out.glob("*_table.csv")) == [
        "val_epoch0000_table.csv",
        "val_epoch0001_table.csv",
    ]
    assert len(_read_table(out / "val_epoch0001_table.csv")) == 2 * 7


# --------------------------------------------------------------------------- agreement table


def _row(slice_index: int, region: str, pred: float, ref: float, **extra: object) -> dict:
    grade = {10.0: "moderate", 12.0: "moderate", 25.0: "normal", 30.0: "normal"}
    return {
        "subject_id": "S1",
        "slice_index": slice_index,
        "region": region,
        "t2star_pred_ms": pred,
        "t2star_ref_ms": ref,
        "t2star_true_ms": math.nan,
        "grade_pred": grade.get(pred, ""),
        "grade_ref": grade.get(ref, ""),
        "grade_true": "",
        "status_pred": "ok" if math.isfinite(pred) else "too_few_pixels",
        **extra,
    }


def test_agreement_summary_by_hand() -> None:
    rows = [
        _row(0, "global", 12.0, 10.0),
        _row(0, "sector1", 30.0, 25.0),
        _row(1, "global", 25.0, 25.0),
        _row(1, "sector1", math.nan, 30.0),
    ]
    summary = agreement_summary(rows)
    assert tuple(summary) == SUMMARY_KEYS + INTERVAL_KEYS
    # global differences 2 and 0: bias 1, SD sqrt(2); grades agree (kappa 1)
    assert summary["t2star_n"] == 2 and summary["t2star_bias_ms"] == pytest.approx(1.0)
    assert summary["t2star_loa_high_ms"] == pytest.approx(1.0 + 1.959964 * math.sqrt(2.0))
    assert summary["t2star_kappa"] == pytest.approx(1.0)
    # one complete sector pair: bias 5, no spread
    assert summary["t2star_sectors_n"] == 1 and summary["t2star_sectors_bias_ms"] == 5.0
    assert math.isnan(summary["t2star_sectors_loa_low_ms"])
    assert summary["t2star_true_n"] == 0 and math.isnan(summary["t2star_true_bias_ms"])
    assert summary["t2star_pred_ok_fraction"] == 0.75


def test_agreement_summary_per_subject_by_hand() -> None:
    rows = [
        _row(0, "global", 12.0, 10.0),
        _row(1, "global", 25.0, 25.0),
        _row(2, "global", 30.0, 25.0, subject_id="S2"),
        _row(3, "global", 10.0, 12.0, subject_id="S3"),
    ]
    subjects = subject_rows(rows)
    # S1: pred (12 + 25) / 2 = 18.5, ref 17.5; grades moderate and normal: the severer one
    assert [r["subject_id"] for r in subjects] == ["S1", "S2", "S3"]
    assert subjects[0]["t2star_pred_ms"] == 18.5 and subjects[0]["t2star_ref_ms"] == 17.5
    assert subjects[0]["n_slices"] == 2 and subjects[0]["grade_pred"] == "moderate"
    summary = agreement_summary(rows, n_boot=200, seed=1)
    # subject differences 1, 5, -2: bias 4/3; per slice 2, 0, 5, -2: bias 5/4
    assert summary["t2star_subject_n"] == 3
    assert summary["t2star_subject_bias_ms"] == pytest.approx(4.0 / 3.0)
    assert summary["t2star_bias_ms"] == pytest.approx(5.0 / 4.0)
    assert summary["t2star_subject_kappa"] == summary["t2star_subject_kappa_linear"] == 1.0
    low, high = summary["t2star_subject_bias_ms_ci_low"], summary["t2star_subject_bias_ms_ci_high"]
    assert -2.0 <= low < 4.0 / 3.0 < high <= 5.0  # within the range of subject differences
    again = agreement_summary(rows, n_boot=200, seed=1)  # seeded: the same intervals
    assert json.dumps(summary) == json.dumps(again)


def test_merge_rows_drops_repeats_and_orders_by_slice() -> None:
    rank0 = [_row(4, "global", 10.0, 10.0, rank=0), _row(4, "sector1", 10.0, 10.0, rank=0)]
    rank1 = [_row(1, "global", 12.0, 10.0, rank=1), _row(4, "global", 10.0, 10.0, rank=1)]
    merged = merge_rows([rank0, rank1])
    assert [(r["slice_index"], r["region"], r["rank"]) for r in merged] == [
        (1, "global", 1),
        (4, "global", 0),
        (4, "sector1", 0),
    ]


def test_mask_agreement_fits_each_reference_once(
    synth_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def counting(source, index, config):
        calls.append(index)
        return reference_slice(source, index, config)

    monkeypatch.setattr(mask_agreement, "reference_slice", counting)
    stack = read_echo_stack(synth_path)
    agreement = MaskAgreement(load_t2star_config(None))
    source = EchoStackFile(synth_path)
    try:
        same = agreement.rows(source, {1: stack.labels[1], 4: stack.labels[4]}, progress=False)
        empty = np.zeros_like(stack.labels[4])
        again = agreement.rows(source, {4: empty}, progress=False)
    finally:
        source.close()
    assert calls == [1, 4]  # slice 4's reference was kept from the first call
    assert [r["t2star_pred_ms"] for r in same] == [r["t2star_ref_ms"] for r in same]
    assert [r["region"] for r in same[:7]] == list(REGIONS)
    assert all(r["status_pred"] != "ok" and r["n_pixels_pred"] == 0 for r in again)
    assert [r["t2star_ref_ms"] for r in again] == [r["t2star_ref_ms"] for r in same[7:]]


@pytest.mark.parametrize("figures", ["final", "every"])
def test_figures_are_drawn_at_the_last_validation_unless_every(
    synth_path: Path, tmp_path: Path, figures: str
) -> None:
    callback = T2StarCallback(every_n_epochs=1, max_slices=2, on_test=False, figures=figures)
    trainer = _trainer(tmp_path, [], callback, 3)
    trainer.fit(OracleModule(synth_path), datamodule=_datamodule(synth_path))
    out = tmp_path / "t2star"
    tables = sorted(p.name.removesuffix("_table.csv") for p in out.glob("*_table.csv"))
    pngs = sorted({p.name[: len("val_epoch0000")] for p in out.glob("*.png")})
    assert tables == ["val_epoch0000", "val_epoch0001", "val_epoch0002"]
    assert pngs == (tables if figures == "every" else ["val_epoch0002"])


def test_module_without_step_labels_is_refused(synth_path: Path, tmp_path: Path) -> None:
    class Silent(OracleModule):
        def validation_step(self, batch: dict, batch_idx: int) -> None:
            super().validation_step(batch, batch_idx)

    callback = T2StarCallback(every_n_epochs=1, max_slices=None, on_test=False, figures="final")
    trainer = _trainer(tmp_path, [], callback, 1)
    with pytest.raises(TypeError, match=r"validation_step/test_step to return \{'labels'"):
        trainer.validate(Silent(synth_path), datamodule=_datamodule(synth_path))


def test_report_and_t2star_import_no_torch() -> None:
    code = "import sys, cmrseg.report, cmrseg.t2star; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
