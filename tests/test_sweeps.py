"""Hyperparameter search and scale-out configs: Optuna sweeper and SLURM launcher (extras)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import compose_config
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from cmrseg.conf import ConfigError, stage_widths

optuna = pytest.importorskip("optuna", reason="the sweep extra: pip install -e '.[sweep]'")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the slurm extra")


def test_stage_widths_double_up_to_the_cap() -> None:
    assert stage_widths(32, 6, 512) == [32, 64, 128, 256, 512, 512]
    assert stage_widths(8, 3, 512) == [8, 16, 32]
    with pytest.raises(ConfigError, match="base 0 and n_stages 3 must be >= 1"):
        stage_widths(0, 3, 512)


def test_optuna_search_and_slurm_launcher_compose() -> None:
    cfg = compose_config(
        "train.yaml",
        [
            "hparams_search=unet_optuna",
            "experiment=demo",
            "data.path=cohort.h5",
            "hydra/launcher=slurm",
            "search.base_width=8",
        ],
    )
    sweeper, launcher = cfg.hydra.sweeper, cfg.hydra.launcher
    assert get_class(sweeper._target_).__name__ == "OptunaSweeper"
    assert (sweeper.direction, cfg.optimized_metric) == ("maximize", "val/jaccard")
    assert set(sweeper.params) == {
        "model.optimizer.lr",
        "search.base_width",
        "model.loss.dice_weight",
        "data/augmentation",
    }
    sampler = instantiate(sweeper.sampler)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    # the width follows the experiment's number of stages (demo: 5)
    assert list(cfg.model.net.features_per_stage) == [8, 16, 32, 64, 128]
    assert cfg.model.loss._target_ == "cmrseg.modules.DiceCELoss"
    assert get_class(launcher._target_).__name__ == "SlurmLauncher"
    assert (launcher.gpus_per_node, launcher.tasks_per_node) == (1, 1)
    raw = OmegaConf.to_container(launcher, resolve=False)  # its paths need a running job
    assert raw["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"


def _last_val_jaccard(job: Path) -> float:
    with (job / "csv" / "metrics.csv").open() as f:
        values = [row["val/jaccard"] for row in csv.DictReader(f) if row.get("val/jaccard")]
    return float(values[-1])


def test_optuna_sweep_of_two_tiny_trials(tiny_stack_path: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "multirun"
    command = [
        sys.executable,
        "-c",
        "from cmrseg.cli.train import main; main()",
        "hparams_search=unet_optuna",
        "hydra.sweeper.n_trials=2",
        f"data.path={tiny_stack_path}",
        "data.num_workers=0",
        "data.val_fraction=0.2",
        "data.test_fraction=0.2",
        "model.net.n_stages=3",
        "trainer.max_epochs=1",
        "test=false",
        "~callbacks.t2star",
        "logger=csv",
        "extras.print_config=false",
        "extras.torch_num_threads=1",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    env = {**os.environ, "WANDB_MODE": "offline"}
    subprocess.run(command, check=True, cwd=tmp_path, env=env, timeout=600)
    values = []
    for job in (sweep_dir / "0", sweep_dir / "1"):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        params = dict(o.split("=", 1) for o in overrides if "=" in o)
        assert params["data/augmentation"] in ("paper", "nnunet", "none")
        assert 0.0001 <= float(params["model.optimizer.lr"]) <= 0.03
        ckpt = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
        stored = ckpt["cmrseg_config"]["model"]
        assert stored["net"]["features_per_stage"] == stage_widths(
            int(params["search.base_width"]), 3, 512
        )
        assert stored["loss"]["dice_weight"] == pytest.approx(
            float(params["model.loss.dice_weight"])
        )
        values.append(_last_val_jaccard(job))
    result = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(max(values))
