"""The classical segmenters through cmrseg-train, cmrseg-eval and a multirun (issue: baselines)."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from cmrseg.cli.eval import evaluate
from cmrseg.cli.train import train
from cmrseg.data import write_echo_stack
from cmrseg.inference import load_module_from_checkpoint
from cmrseg.metrics import overlap_metrics
from cmrseg.modules import ClassicalSegmentationModule
from cmrseg.synth import load_cohort, load_synth_config, synthesize_cohort


@pytest.fixture(scope="module")
def clean_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 clean phantom subjects (15 slices of 192 x 256, 8 echoes)."""
    path = tmp_path_factory.mktemp("clean") / "clean.h5"
    stack = synthesize_cohort(
        load_synth_config("clean"), load_cohort("paper"), seed=5, n_subjects=5, workers=1
    )
    write_echo_stack(path, stack)
    return path


def _train_gac(make_cfg, data: Path, out: Path):
    cfg = make_cfg(["model=gac", "model.n_workers=1"])
    with open_dict(cfg):
        cfg.model.search_space = {"smoothing_mm": [1.0, 2.0]}
        cfg.paths.output_dir = str(out)
        cfg.data.path = str(data)
        cfg.trainer.max_epochs = 3  # calibration stops the fit after its first epoch
        cfg.trainer.default_root_dir = str(out)
        cfg.callbacks.model_checkpoint.dirpath = str(out / "checkpoints")
        cfg.callbacks.t2star.output_dir = str(out / "t2star")
    return train(cfg)


def test_train_calibrates_and_the_checkpoint_reproduces_it(
    make_cfg, clean_path: Path, tmp_path: Path
) -> None:
    metrics, objects = _train_gac(make_cfg, clean_path, tmp_path / "run")
    trainer, module = objects["trainer"], objects["model"]
    assert trainer.current_epoch == 1  # one epoch, then stopped
    assert module.segmenter.calibrated
    assert metrics["test/jaccard"] >= 0.5 and metrics["val/jaccard"] >= 0.5
    assert metrics["train/seconds_per_slice"] > 0
    with open(tmp_path / "run" / "calibration.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [float(row["smoothing_mm"]) for row in table] == [2.0, 1.0]
    chosen = max(table, key=lambda row: float(row["jaccard_mean"]))
    assert module.segmenter.params.smoothing_mm == float(chosen["smoothing_mm"])

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    torch.load(ckpt, weights_only=True)  # plain containers only
    loaded, data_cfg = load_module_from_checkpoint(ckpt, {})
    assert isinstance(loaded, ClassicalSegmentationModule)
    assert loaded.segmenter.params == module.segmenter.params and loaded.segmenter.calibrated
    assert data_cfg.input_mode == "echoes_as_channels" and data_cfg.normalization == "none"

    cfg = make_cfg([f"ckpt_path={ckpt}"], "eval.yaml", do_shrink=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval")
        cfg.extras.print_config = False
        cfg.trainer.enable_progress_bar = False
    evaluated, _ = evaluate(cfg)
    assert evaluated["test/jaccard"] == pytest.approx(metrics["test/jaccard"], abs=1e-6)
    assert (tmp_path / "eval" / "t2star" / "test_table.csv").is_file()


def test_slices_without_an_lv_are_empty_with_a_logged_reason(caplog) -> None:
    module = ClassicalSegmentationModule(
        method="region_growing",
        params=_params("region_growing"),
        search_space={},
        max_trials=None,
        seed=0,
        n_workers=1,
        metrics=overlap_metrics(),
    )
    batch = {
        "image": torch.zeros(2, 8, 64, 64),
        "te_ms": torch.tensor(np.linspace(2.97, 21.68, 8), dtype=torch.float32).repeat(2, 1),
        "pixel_spacing_mm": torch.full((2, 2), 1.4),
        "slice_index": torch.tensor([3, 7]),
    }
    batch["image"][1] = torch.rand(8, 64, 64)  # noise: no LV
    with caplog.at_level(logging.INFO, logger="cmrseg.modules.classical"):
        out = module.predict_step(batch, 0)
    assert out["labels"].shape == (2, 64, 64) and int(out["labels"].max()) == 0
    assert out["slice_index"].tolist() == [3, 7]
    assert "slice 3: empty prediction (empty_slice)" in caplog.text
    assert "slice 7: empty prediction" in caplog.text


def _params(method: str) -> dict:
    import yaml

    from cmrseg.conf import CONF_DIR

    return yaml.safe_load((CONF_DIR / "model" / f"{method}.yaml").read_text())["model"]["params"]


def test_multirun_of_a_network_and_gac(tiny_stack_path: Path, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-c",
        "from cmrseg.cli.train import main; main()",
        "-m",
        "model=unet,gac",
        f"data.path={tiny_stack_path}",
        "data.num_workers=0",
        "data.val_fraction=0.2",
        "data.test_fraction=0.2",
        "trainer.max_epochs=1",
        "logger=csv",
        "extras.print_config=false",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    env = {**os.environ, "WANDB_MODE": "offline"}
    subprocess.run(command, check=True, cwd=tmp_path, env=env, timeout=600)
    for job, target in (("0", "cmrseg.modules.SegmentationModule"), ("1", "ClassicalSegm")):
        folder = tmp_path / "multirun" / job
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        ckpt = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
        assert target in ckpt["cmrseg_config"]["model"]["_target_"]
        assert json.loads((folder / "split.json").read_text())["subjects"]["test"]
    # both jobs share the split (by subject, saved beside each run)
    splits = [(tmp_path / "multirun" / job / "split.json").read_text() for job in ("0", "1")]
    assert splits[0] == splits[1]
