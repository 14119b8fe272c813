"""cmrseg-train on tiny phantoms: fast dev runs, overfitting, resume, transfer learning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from lightning import Callback, LightningModule, Trainer
from omegaconf import open_dict

from cmrseg.cli.train import train
from cmrseg.modules import SegmentationModule


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=unet", "trainer=default"],
        [
            "model=unet",
            "trainer=cpu",
            "model.loss._target_=cmrseg.modules.DiceCELoss",
            "+model.loss.ce_weight=1.0",
            "+model.loss.dice_weight=1.0",
            "+model.loss.smooth=1.0",
        ],
        [
            "model=martini_unet",
            "data.input_mode=echoes_as_channels",
            "data.echoes=null",
            "data.target=aha16",
            "data/augmentation=none",
        ],
        ["model=unet", "trainer=ddp_sim"],
        ["model=monai_unet"],
    ],
    ids=["unet", "unet-dice_ce-cpu", "martini_unet", "unet-ddp_sim", "monai_unet"],
)
def test_fast_dev_run(make_cfg, overrides: list[str]) -> None:
    cfg = make_cfg([*overrides, "debug=fdr"])
    metric_dict, objects = train(cfg)
    assert isinstance(objects["model"], SegmentationModule)
    assert math.isfinite(metric_dict["train/loss"])
    assert 0.0 <= metric_dict["test/jaccard"] <= 1.0


def test_overfit_one_batch(make_cfg) -> None:
    cfg = make_cfg(
        [
            "data/augmentation=none",
            "data.input_mode=echoes_as_channels",
            "data.normalization=mvn_per_channel",
        ]
    )
    with open_dict(cfg):
        cfg.callbacks = None
        cfg.test = False
        cfg.trainer.overfit_batches = 1
        cfg.trainer.max_epochs = 60
        cfg.trainer.check_val_every_n_epoch = 1000
        cfg.trainer.enable_checkpointing = False
        cfg.model.net.features_per_stage = [8, 16, 32]
        cfg.model.net.bottleneck_dropout = 0.0
        cfg.model.optimizer = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}
        cfg.model.scheduler = None
    _, objects = train(cfg)
    model, datamodule = objects["model"], objects["datamodule"]
    batch = next(iter(datamodule.train_dataloader()))
    model.eval()
    with torch.no_grad():
        labels = model.predict_labels(batch["image"])
    pred, target = labels == 2, batch["mask"] == 2
    jaccard = (pred & target).sum() / (pred | target).sum()
    assert jaccard > 0.9


class StopAfterFirstEpoch(Callback):
    """Ends fit after epoch 1 as if the run had been killed there (max_epochs stays 2)."""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.should_stop = True


def _final_state(objects) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in objects["model"].state_dict().items()}


def test_last_checkpoint_holds_the_last_epoch_whatever_validation_did(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """last.ckpt is the final epoch even when that epoch ran no validation (none saved a best),
    written once per epoch."""
    written: list[str] = []
    save = Trainer.save_checkpoint

    def counting_save(self: Trainer, filepath, *args, **kwargs) -> None:
        written.append(Path(filepath).name)
        save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(Trainer, "save_checkpoint", counting_save)
    cfg = make_cfg(["data/augmentation=paper"])
    with open_dict(cfg):
        cfg.test = False
        cfg.trainer.max_epochs = 3
        cfg.trainer.check_val_every_n_epoch = 2
        cfg.paths.output_dir = str(tmp_path)
    train(cfg)
    checkpoints = tmp_path / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 2
    assert written.count("last.ckpt") == 3
    assert [p.name for p in checkpoints.glob("epoch_*.ckpt")] == ["epoch_0001.ckpt"]


def test_resume_from_last_matches_uninterrupted(make_cfg, tmp_path: Path) -> None:
    overrides = ["data/augmentation=paper"]
    cfg = make_cfg(overrides)
    with open_dict(cfg):
        cfg.test = False
        cfg.trainer.max_epochs = 2
        cfg.paths.output_dir = str(tmp_path / "straight")
    straight_metrics, straight = train(cfg)

    cfg = make_cfg(overrides)
    with open_dict(cfg):
        cfg.test = False
        cfg.trainer.max_epochs = 2
        cfg.paths.output_dir = str(tmp_path / "killed")
        cfg.callbacks.kill = {"_target_": "test_train.StopAfterFirstEpoch"}
    train(cfg)
    assert (tmp_path / "killed" / "checkpoints" / "last.ckpt").is_file()

    cfg = make_cfg(overrides)
    with open_dict(cfg):
        cfg.test = False
        cfg.trainer.max_epochs = 2
        cfg.paths.output_dir = str(tmp_path / "killed")
        cfg.ckpt_path = "last"
    resumed_metrics, resumed = train(cfg)

    assert resumed["trainer"].current_epoch == straight["trainer"].current_epoch == 2
    for key in ("val/jaccard", "val/loss", "train/loss"):
        assert resumed_metrics[key] == pytest.approx(straight_metrics[key], abs=1e-6), key
    a, b = _final_state(straight), _final_state(resumed)
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_same_seed_same_results_whatever_the_callback_schedule_or_logger(
    make_cfg, tmp_path: Path
) -> None:
    """The T2* callback every epoch and a CSV logger change nothing that training draws."""
    results = {}
    for name, t2star in (("with", True), ("without", False)):
        cfg = make_cfg(["data/augmentation=paper", "callbacks.t2star.config.region.min_pixels=3"])
        out = tmp_path / name
        with open_dict(cfg):
            cfg.trainer.max_epochs = 3
            cfg.paths.output_dir = str(out)
            if t2star:
                cfg.callbacks.t2star.every_n_epochs = 1
                del cfg.hydra  # the logger stores the resolved config; Hydra's own needs a job
                cfg.logger = {
                    "csv": {
                        "_target_": "lightning.pytorch.loggers.CSVLogger",
                        "save_dir": str(out),
                        "name": "csv",
                    }
                }
            else:
                del cfg.callbacks.t2star
        metrics, _ = train(cfg)
        weights = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        results[name] = metrics, weights
    (with_metrics, with_weights), (metrics, weights) = results["with"], results["without"]
    assert "val/t2star_bias_ms" in with_metrics and "val/t2star_bias_ms" not in metrics
    assert (tmp_path / "with" / "t2star" / "val_epoch0002_table.csv").is_file()
    for key in ("train/loss", "val/loss", "val/jaccard", "test/loss", "test/jaccard"):
        assert with_metrics[key] == metrics[key], key
    assert with_weights.keys() == weights.keys()
    assert all(torch.equal(with_weights[k], weights[k]) for k in weights)


def _wandb_kwargs(save_dir: Path, mode: str) -> dict:
    return {
        "save_dir": str(save_dir),
        "project": "cmrseg-test",
        "name": "t",
        "group": "",
        "tags": ["test"],
        "job_type": "",
        "log_model": False,
        "mode": mode,
    }


def test_wandb_failure_never_stops_training(tmp_path: Path, monkeypatch) -> None:
    from cmrseg.utils.loggers import wandb_logger

    monkeypatch.setenv("WANDB_MODE", "no-such-mode")
    assert wandb_logger(**_wandb_kwargs(tmp_path, "offline")) is None


@pytest.mark.slow
def test_wandb_offline_run_resumes_with_its_folder(tmp_path: Path, monkeypatch) -> None:
    import wandb

    from cmrseg.utils.loggers import WANDB_ID_FILE, wandb_logger

    monkeypatch.delenv("WANDB_MODE", raising=False)
    first = wandb_logger(**_wandb_kwargs(tmp_path, "offline"))
    assert first is not None
    run_id = (tmp_path / WANDB_ID_FILE).read_text().strip()
    wandb.finish()
    second = wandb_logger(**_wandb_kwargs(tmp_path, "offline"))
    assert second is not None and second.experiment.id == run_id
    wandb.finish()


class _ConstantLoss(torch.nn.Module):
    """A loss that says which one was used: 42 plus a zero that keeps the graph."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.sum() * 0.0 + 42.0


def test_validation_loss_is_the_configured_loss(make_cfg) -> None:
    cfg = make_cfg(["debug=fdr"])
    with open_dict(cfg):
        cfg.model.loss = {"_target_": f"{__name__}._ConstantLoss"}
    metric_dict, _ = train(cfg)
    assert metric_dict["val/loss"] == pytest.approx(42.0)
    assert metric_dict["test/loss"] == pytest.approx(42.0)


def test_logger_none_keeps_the_other_callbacks(make_cfg) -> None:
    callbacks = compose_config("train.yaml").callbacks  # debug=fdr and shrink drop callbacks
    cfg = make_cfg(["logger=none", "debug=fdr"])
    with open_dict(cfg):
        cfg.callbacks = callbacks
        cfg.callbacks.pop("progress_bar")
        cfg.callbacks.model_checkpoint.dirpath = str(Path(cfg.paths.output_dir) / "ckpt")
        cfg.callbacks.t2star.output_dir = str(Path(cfg.paths.output_dir) / "t2star")
    metric_dict, objects = train(cfg)
    kinds = {type(c).__name__ for c in objects["callbacks"]}
    assert "LearningRateMonitor" not in kinds
    assert {"ModelCheckpoint", "T2StarCallback"} <= kinds
    assert 0.0 <= metric_dict["test/jaccard"] <= 1.0
