"""The real conf/ composes, instantiates, trains every experiment, and refuses unknown names."""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from conftest import compose_config
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException
from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf, open_dict

from cmrseg.callbacks import T2StarCallback
from cmrseg.cli.train import train
from cmrseg.conf import CONF_DIR
from cmrseg.core.labels import LABEL_VALUES, MYOCARDIUM
from cmrseg.utils.config import fill_missing

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
SCALES = sorted(p.stem for p in (CONF_DIR / "scale").glob("*.yaml"))
METHODS = sorted(p.stem for p in (CONF_DIR / "method").glob("*.yaml"))
AUGMENTATIONS = sorted(p.stem for p in (CONF_DIR / "data" / "augmentation").glob("*.yaml"))


def test_train_config_instantiates(make_cfg) -> None:
    cfg = make_cfg()
    datamodule = hydra.utils.instantiate(cfg.data)
    assert isinstance(datamodule, LightningDataModule)
    fill_missing(
        cfg.model.net,
        {
            "in_channels": datamodule.in_channels,
            "num_classes": datamodule.num_classes,
            "myocardium_classes": datamodule.myocardium_classes,
        },
    )
    assert isinstance(hydra.utils.instantiate(cfg.model), LightningModule)
    assert isinstance(hydra.utils.instantiate(cfg.trainer), Trainer)
    assert cfg.paths.output_dir.startswith(str(Path(cfg.paths.log_dir)))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment: str, tmp_path: Path) -> None:
    cfg = compose_config("train.yaml", [f"experiment={experiment}", "data.path=cohort.h5"])
    HydraConfig().set_config(cfg)  # ${hydra:...} resolves as in a run, whatever ran before
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.pop("hydra")
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.task_name and cfg.model.optimizer._partial_


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_augmentation_config_builds_and_keeps_shapes_and_labels(augmentation: str) -> None:
    cfg = compose_config("train.yaml", [f"data/augmentation={augmentation}", "data.path=x.h5"])
    transform = hydra.utils.instantiate(cfg.data.augmentation)
    labels = np.zeros((96, 128), np.uint8)
    labels[30:60, 40:80] = 2
    labels[38:52, 50:70] = 1
    image = np.repeat((labels[..., None] * 0.4 + 0.1).astype(np.float32), 3, axis=-1)
    moved = 0
    for _ in range(20):
        out = transform(image=image, mask=labels)
        assert out["image"].shape == (96, 128, 3) and out["mask"].shape == (96, 128)
        assert set(np.unique(out["mask"])) <= {0, 1, 2}
        moved += int(not np.array_equal(out["mask"], labels))
    if augmentation == "none":
        assert moved == 0
    else:
        assert moved >= 5  # the geometric transforms move the labels of many samples


@pytest.mark.parametrize("scale", SCALES)
def test_benchmark_scale_sweeps_every_method_and_builds_each(scale: str, tmp_path: Path) -> None:
    """A scale is a multirun over every method; each method's job builds its module and data."""
    cfg = compose_config("train.yaml", [f"scale={scale}", "data.path=cohort.h5"])
    assert cfg.hydra.mode.name == "MULTIRUN"
    params = cfg.hydra.sweeper.params
    assert sorted(params.method.split(",")) == METHODS
    assert len(params["data.fold"].split(",")) == cfg.data.num_folds
    for method in METHODS:
        job = compose_config(
            "train.yaml", [f"scale={scale}", f"method={method}", "data.path=c.h5", "data.fold=0"]
        )
        HydraConfig().set_config(job)
        with open_dict(job):
            job.paths.output_dir = str(tmp_path)
            job.pop("hydra")
        job = OmegaConf.create(OmegaConf.to_container(job, resolve=True))  # all resolve
        if "net" in job.model:  # the networks share the scale's recipe
            recipe = job.benchmark.network
            steps_matched = recipe.epochs_all_echoes if method == "martini_unet" else recipe.epochs
            assert job.trainer.max_epochs == steps_matched
            assert list(job.model.net.features_per_stage) == list(recipe.features_per_stage)
            assert job.model.optimizer == recipe.optimizer
            sizes = {"in_channels": 3, "num_classes": 3}
            if method == "unet":
                sizes["myocardium_classes"] = [MYOCARDIUM]
            fill_missing(job.model.net, sizes)
        else:
            assert job.model.max_trials == job.benchmark.classical.max_trials
        assert isinstance(hydra.utils.instantiate(job.model), LightningModule)
    assert compose_config("train.yaml", ["scale=ci", "method=martini_unet"]).data.target == "aha16"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_trains_one_fast_dev_run_step(experiment: str, make_cfg, tmp_path: Path) -> None:
    """Each experiment as composed (callbacks included), shrunk to the tiny 4-echo cohort."""
    cfg = make_cfg([f"experiment={experiment}", "+trainer.fast_dev_run=true"])
    with open_dict(cfg):
        cfg.extras.torch_num_threads = 1
        if cfg.model.get("train_patch_size") is not None:
            cfg.model.train_patch_size = [16, 16]
        if cfg.data.echoes is not None and max(cfg.data.echoes) > 3:
            cfg.data.echoes = [0, 1, 2, 3]
        if OmegaConf.is_missing(cfg.model, "init_from"):  # a fine-tuning step
            # pretrained weights: a one-channel net of the same size (all but the input copied)
            net = hydra.utils.instantiate(
                cfg.model.net,
                in_channels=1,
                num_classes=len(LABEL_VALUES),
                myocardium_classes=[MYOCARDIUM],
            )
            torch.save(net.state_dict(), tmp_path / "pretrained.pt")
            cfg.model.init_from = str(tmp_path / "pretrained.pt")
    metric_dict, objects = train(cfg)
    assert math.isfinite(metric_dict["train/loss"])
    assert 0.0 <= metric_dict["test/jaccard"] <= 1.0
    kinds = {type(c) for c in objects["callbacks"]}
    assert {ModelCheckpoint, T2StarCallback} <= kinds


@pytest.mark.parametrize(
    ("override", "added"),
    [
        ("callbacks/progress_bar=rich", "lightning.pytorch.callbacks.RichProgressBar"),
        ("callbacks/early_stopping=val_jaccard", "lightning.pytorch.callbacks.EarlyStopping"),
    ],
)
def test_callback_options_keep_checkpointing_and_t2star(override: str, added: str) -> None:
    targets = {c._target_ for c in compose_config("train.yaml", [override]).callbacks.values()}
    kept = {"lightning.pytorch.callbacks.ModelCheckpoint", "cmrseg.callbacks.T2StarCallback"}
    assert {*kept, added} <= targets


@pytest.mark.parametrize(
    ("override", "name"),
    [
        ("callbacks=early_stop", "callbacks/early_stop"),
        ("callbacks=rich_progress_bar", "callbacks/rich_progress_bar"),
        ("experiment=finetune_synth", "experiment/finetune_synth"),
    ],
)
def test_removed_config_options_are_refused_by_name(override: str, name: str) -> None:
    with pytest.raises(MissingConfigException, match=name):
        compose_config("train.yaml", [override])


@pytest.mark.parametrize("config_name", ["train.yaml", "eval.yaml", "predict.yaml"])
def test_unknown_config_key_is_refused_by_name(config_name: str) -> None:
    with pytest.raises(ConfigCompositionException, match=r"trainer\.max_epoch\b"):
        compose_config(config_name, ["trainer.max_epoch=3", "ckpt_path=x.ckpt"])


@pytest.mark.parametrize("config_name", ["eval.yaml", "predict.yaml"])
@pytest.mark.parametrize("trainer", ["default", "cpu", "ddp_sim", "gpu", "ddp"])
def test_eval_predict_configs_compose(config_name: str, trainer: str) -> None:
    cfg = compose_config(config_name, [f"trainer={trainer}", "ckpt_path=x.ckpt"])
    assert cfg.trainer._target_ == "lightning.Trainer"


def test_unknown_model_name_is_one_clear_error() -> None:
    with pytest.raises(MissingConfigException, match="model/transformer"):
        compose_config("train.yaml", ["model=transformer"])


def test_fill_missing_refuses_conflicting_channels(make_cfg) -> None:
    cfg = make_cfg(["model.net.in_channels=3"])
    with pytest.raises(ValueError, match="in_channels=3 but the data gives 1"):
        fill_missing(cfg.model.net, {"in_channels": 1})
