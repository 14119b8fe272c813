"""The real conf/ composes, instantiates, and refuses unknown names clearly."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from cmrseg.conf import CONF_DIR
from conftest import compose_config
from hydra.errors import MissingConfigException
from lightning import LightningDataModule, LightningModule, Trainer
from omegaconf import OmegaConf, open_dict

from cmrseg.utils.config import fill_missing

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


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
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.task_name and cfg.model.optimizer._partial_


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
