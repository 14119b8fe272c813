"""cmrseg-ensemble: one checkpoint averaging several networks' probabilities."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from cmrseg.cli.ensemble import main as ensemble_main
from cmrseg.cli.eval import evaluate
from cmrseg.core.errors import InputError
from cmrseg.inference import (
    ENSEMBLE_KEY,
    RUN_CONFIG_KEY,
    TRAIN_COHORT_KEY,
    ensemble_checkpoint,
    load_module_from_checkpoint,
    method_name,
)
from cmrseg.models import ProbabilityMean


def _member(tiny_run: Path, out: Path, seed: int, edit=None) -> Path:
    """The tiny run's checkpoint with its network weights perturbed (another "member")."""
    ckpt = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    generator = torch.Generator().manual_seed(seed)
    for key, value in ckpt["state_dict"].items():
        if key.startswith("net.") and value.is_floating_point() and value.ndim > 1:
            value += 0.3 * value.std() * torch.randn(value.shape, generator=generator)
    ckpt[RUN_CONFIG_KEY]["model"]["scheduler"]["total_iters"] = 99  # training only: allowed
    if edit is not None:
        edit(ckpt)
    torch.save(ckpt, out)
    return out


def test_ensemble_network_is_the_mean_of_the_members_probabilities(
    tiny_run: Path, tmp_path: Path
) -> None:
    a = tiny_run / "checkpoints" / "last.ckpt"
    b = _member(tiny_run, tmp_path / "b.ckpt", 1)
    torch.save(ensemble_checkpoint([a, b]), tmp_path / "pair.ckpt")
    pair, data = load_module_from_checkpoint(tmp_path / "pair.ckpt", {})
    members = [load_module_from_checkpoint(p, {})[0] for p in (a, b)]
    assert isinstance(pair.net, ProbabilityMean) and method_name(pair) == "unet_ensemble"
    assert data == load_module_from_checkpoint(a, {})[1]
    images = torch.randn(2, 3, 40, 56)  # three echoes fused as the members fuse them
    with torch.no_grad():
        mean = torch.stack([m.segment_probabilities(images) for m in members]).mean(dim=0)
        got = pair.segment_probabilities(images)
    torch.testing.assert_close(got, mean, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(mean, members[0].segment_probabilities(images))
    stored = torch.load(tmp_path / "pair.ckpt", weights_only=True)
    assert [m["file"] for m in stored[ENSEMBLE_KEY]] == ["last.ckpt", "b.ckpt"]
    assert stored[TRAIN_COHORT_KEY]["fingerprint"]  # one training file: kept


def test_an_ensemble_of_one_model_twice_scores_like_it(
    make_cfg, tiny_run: Path, tmp_path: Path
) -> None:
    a = tiny_run / "checkpoints" / "last.ckpt"
    assert ensemble_main([str(tmp_path / "twice.ckpt"), str(a), str(a)]) == 0
    scores = []
    for ckpt in (a, tmp_path / "twice.ckpt"):
        cfg = make_cfg([f"ckpt_path={ckpt}", "~callbacks.t2star"], "eval.yaml", do_shrink=False)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / ckpt.stem)
            cfg.extras.print_config = False
            cfg.trainer.enable_progress_bar = False
        scores.append(evaluate(cfg)[0]["test/jaccard"])
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)


def _edit_data(ckpt: dict) -> None:
    ckpt[RUN_CONFIG_KEY]["data"]["normalization"] = "none"


def _edit_net(ckpt: dict) -> None:
    ckpt[RUN_CONFIG_KEY]["model"]["net"]["in_channels"] = 3


def _edit_fusion(ckpt: dict) -> None:
    ckpt[RUN_CONFIG_KEY]["model"]["echo_fusion"] = "first"


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_edit_data, "data.normalization"),
        (_edit_net, "net.in_channels"),
        (_edit_fusion, "model.echo_fusion"),
    ],
)
def test_members_that_read_or_label_data_differently_are_refused(
    tiny_run: Path, tmp_path: Path, edit, named: str
) -> None:
    a = tiny_run / "checkpoints" / "last.ckpt"
    b = _member(tiny_run, tmp_path / "b.ckpt", 2, edit)
    with pytest.raises(InputError, match=f"b.ckpt: {named} differs"):
        ensemble_checkpoint([a, b])


def test_cli_refusals_exit_2_and_write_nothing(tiny_run: Path, tmp_path: Path, capsys) -> None:
    a = str(tiny_run / "checkpoints" / "last.ckpt")
    out = tmp_path / "pair.ckpt"
    b = _member(tiny_run, tmp_path / "b.ckpt", 3, _edit_data)
    for argv, message in (
        ([str(out), a], "two or more checkpoints"),
        ([str(out), a, str(b)], "data.normalization differs"),
        ([str(out), a, str(tmp_path / "missing.ckpt")], "checkpoint file not found"),
        ([a, a, str(tmp_path / "b.ckpt")], "the output is one of the members"),
    ):
        assert ensemble_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("cmrseg-ensemble: error: ") and message in err
        assert err.count("\n") == 1
        assert not out.exists() and not list(tmp_path.glob(".pair.ckpt*"))
    assert ensemble_main([str(out), a, str(_member(tiny_run, tmp_path / "c.ckpt", 4))]) == 0
    assert ensemble_main([str(tmp_path / "nested.ckpt"), a, str(out)]) == 2
    assert "an ensemble already" in capsys.readouterr().err


def test_probability_mean_needs_two_networks_that_agree() -> None:
    from cmrseg.models import UNet

    def unet(in_channels: int) -> UNet:
        return UNet(
            in_channels=in_channels,
            num_classes=3,
            myocardium_classes=[2],
            n_stages=2,
            features_per_stage=[4, 8],
            n_conv_per_stage=1,
            n_conv_per_stage_decoder=1,
            norm="batch",
            bottleneck_dropout=0.0,
        )

    with pytest.raises(ValueError, match="two or more"):
        ProbabilityMean([unet(1)])
    with pytest.raises(ValueError, match="in_channels"):
        ProbabilityMean([unet(1), unet(3)])
    pair = ProbabilityMean([unet(1), unet(1)]).eval()
    images = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        expected = (pair.nets[0](images).softmax(1) + pair.nets[1](images).softmax(1)) / 2
        torch.testing.assert_close(pair(images).softmax(1), expected)
