"""cmrseg-eval and cmrseg-predict on a tiny trained checkpoint; transfer learning; bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config, ring_phantom
from omegaconf import open_dict

from cmrseg.cli.eval import evaluate
from cmrseg.cli.predict import predict
from cmrseg.core.errors import InputError
from cmrseg.data.echo_stack import read_echo_stack, write_echo_stack
from cmrseg.inference import RUN_CONFIG_KEY, load_module_from_checkpoint
from cmrseg.modules import copy_matching_weights, load_net_state_dict


def _eval_cfg(make_cfg, ckpt: Path, out: Path, *overrides: str):
    cfg = make_cfg([f"ckpt_path={ckpt}", *overrides], "eval.yaml", do_shrink=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.extras.print_config = False
        cfg.trainer.enable_progress_bar = False
    return cfg


def _predict_cfg(make_cfg, ckpt: Path, scans: Path, out: Path):
    cfg = make_cfg(
        [f"ckpt_path={ckpt}", f"input={scans}", f"output={out / 'out'}"],
        "predict.yaml",
        do_shrink=False,
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(out / "run")
        cfg.extras.print_config = False
        cfg.trainer.enable_progress_bar = False
    return cfg


def test_eval_writes_table1(make_cfg, tiny_run: Path, tmp_path: Path, capsys) -> None:
    cfg = _eval_cfg(make_cfg, tiny_run / "checkpoints" / "last.ckpt", tmp_path)
    metrics, _ = evaluate(cfg)
    assert 0.0 <= metrics["test/jaccard"] <= 1.0
    printed = capsys.readouterr().out
    assert "Jaccard (%)" in printed
    assert "predicted vs reference masks, per subject" in printed
    table = json.loads((tmp_path / "metrics.json").read_text())["table1"]
    assert {row["metric"] for row in table} >= {"jaccard", "sensitivity", "ppv", "npv"}
    assert (tmp_path / "metrics.csv").read_text().startswith("metric,label,mean,sd")
    # the T2* callback's agreement, per slice and per subject with bootstrap intervals
    t2star = json.loads((tmp_path / "metrics.json").read_text())["t2star"]
    assert {
        "t2star_subject_bias_ms",
        "t2star_subject_bias_ms_ci_low",
        "t2star_kappa_linear",
    } <= set(t2star)
    assert t2star["t2star_subject_n"] <= t2star["t2star_n"]


def test_eval_on_validation_with_first_echo(make_cfg, tiny_run: Path, tmp_path: Path) -> None:
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    metrics, objects = evaluate(
        _eval_cfg(make_cfg, ckpt, tmp_path, "split=val", "echo_fusion=first")
    )
    assert "val/jaccard" in metrics
    assert objects["model"].hparams.echo_fusion == "first"
    # trained on echoes 1-3 as separate samples, evaluated on slices with them as channels
    assert objects["datamodule"].input_mode == "echoes_as_samples"
    assert objects["datamodule"].dataset("val")[0]["image"].shape == (3, 32, 32)


def test_eval_split_all_scores_every_slice_of_another_cohort(
    make_cfg, tiny_run: Path, tmp_path: Path, capsys
) -> None:
    other = tmp_path / "other.h5"
    write_echo_stack(other, ring_phantom(3, seed=11))  # S000-S002: not the training split's
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    train_split = (tiny_run / "split.json").read_bytes()
    with pytest.raises(SystemExit) as exc:  # split=test: the training split is not other's
        evaluate(_eval_cfg(make_cfg, ckpt, tmp_path / "test", f"data.path={other}"))
    assert exc.value.code == 2
    assert "split does not match the subjects of" in capsys.readouterr().err

    out = tmp_path / "all"
    metrics, objects = evaluate(_eval_cfg(make_cfg, ckpt, out, f"data.path={other}", "split=all"))
    assert 0.0 <= metrics["test/jaccard"] <= 1.0
    assert len(objects["datamodule"].dataset("test")) == 6
    assert json.loads((out / "metrics.json").read_text())["split"] == "all"
    rows = (out / "t2star" / "test_table.csv").read_text().splitlines()
    header = rows[0].split(",")
    keys = {
        (r.split(",")[header.index("subject_id")], r.split(",")[header.index("slice_index")])
        for r in rows[1:]
    }
    assert keys == {(f"S00{i // 2}", str(i)) for i in range(6)}
    assert (tiny_run / "split.json").read_bytes() == train_split
    assert not (out / "split.json").exists()
    record = json.loads((out / "run.json").read_text())
    assert (record["status"], record["split"], record["fold"]) == ("finished", "all", None)
    assert record["cohort"]["file"] == "other.h5"
    assert record["cohort"]["fingerprint"] != record["train_cohort"]["fingerprint"]
    assert len((out / "slices.csv").read_text().splitlines()) == 1 + 6


def test_eval_with_test_time_rotations(make_cfg, tiny_run: Path, tmp_path: Path) -> None:
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    metrics, objects = evaluate(_eval_cfg(make_cfg, ckpt, tmp_path, "test_time_augmentation=rot90"))
    model = objects["model"].eval()
    assert "test/jaccard" in metrics
    assert json.loads((tmp_path / "metrics.json").read_text())["test_time_augmentation"] == "rot90"
    images = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tta = model.segment_probabilities(images)
        plain = model._fused_probabilities(images)
        by_hand = (
            sum(
                torch.rot90(model._fused_probabilities(torch.rot90(images, k, (2, 3))), -k, (2, 3))
                for k in range(4)
            )
            / 4
        )
    assert tta.shape == plain.shape == (2, 3, 64, 96)
    torch.testing.assert_close(tta, by_hand)
    assert not torch.allclose(tta, plain)


def test_seg_uncertainty_is_the_rotations_disagreement_and_keeps_the_labels(
    tiny_run: Path,
) -> None:
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    plain, _ = load_module_from_checkpoint(ckpt, {"seg_uncertainty": "none"})
    measured, _ = load_module_from_checkpoint(ckpt, {"seg_uncertainty": "rot90"})
    images = torch.rand(3, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    batch = {
        "image": images,
        "slice_index": torch.arange(3),
        "pixel_spacing_mm": torch.ones(3, 2),
    }
    with torch.no_grad():
        out = measured.predict_step(batch, 0)
        reference = plain.predict_step(batch, 0)
        walls = torch.stack(
            [
                measured._labels(
                    torch.rot90(
                        measured._fused_probabilities(torch.rot90(images, k, (2, 3))), -k, (2, 3)
                    )
                )
                == 2
                for k in range(4)
            ]
        )
    assert "seg_uncertainty" not in reference
    torch.testing.assert_close(out["labels"], reference["labels"])  # labels unchanged
    union = walls.any(0).flatten(1).sum(1).float()
    by_hand = 1 - walls.all(0).flatten(1).sum(1).float() / union.clamp_min(1)
    torch.testing.assert_close(out["seg_uncertainty"], by_hand)
    assert out["seg_uncertainty"].shape == (3,)
    assert ((out["seg_uncertainty"] >= 0) & (out["seg_uncertainty"] <= 1)).all()


def test_a_myocardium_threshold_keeps_only_the_confident_wall(
    make_cfg, tiny_run: Path, tmp_path: Path
) -> None:
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    whole = {"keep_largest_component": False}
    plain, _ = load_module_from_checkpoint(ckpt, whole)
    assert plain.hparams.myocardium_decision == "argmax"
    images = torch.rand(3, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        probs = plain.segment_probabilities(images)
        wall_probability = probs[:, list(plain.myocardium_classes)].sum(1)
        threshold = round(float(wall_probability.quantile(0.9)), 3)  # some pixels, not all
        strict, _ = load_module_from_checkpoint(ckpt, {**whole, "myocardium_decision": threshold})
        labels = strict.predict_labels(images)
        argmax = plain.predict_labels(images)
    confident = wall_probability >= threshold
    assert 0 < int(confident.sum()) < confident.numel()
    assert torch.equal(labels == 2, confident)
    assert int((labels == 2).sum()) != int((argmax == 2).sum())
    # the setting reaches cmrseg-eval's record
    evaluate(_eval_cfg(make_cfg, ckpt, tmp_path, f"myocardium_decision={threshold}"))
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["myocardium_decision"] == threshold
    with pytest.raises(InputError, match="myocardium_decision must be 'argmax' or a probability"):
        load_module_from_checkpoint(ckpt, {"myocardium_decision": 1.5})


def test_predict_without_seg_uncertainty_writes_none(
    make_cfg, tiny_run: Path, tmp_path: Path
) -> None:
    scans = tmp_path / "scans.h5"
    write_echo_stack(scans, ring_phantom(1, seed=7, labels=False))
    cfg = _predict_cfg(make_cfg, tiny_run / "checkpoints" / "last.ckpt", scans, tmp_path)
    with open_dict(cfg):
        cfg.seg_uncertainty = "none"
    predict(cfg)
    assert read_echo_stack(tmp_path / "out" / "predictions.h5").seg_uncertainty is None
    assert "seg_uncertainty" not in (tmp_path / "out" / "t2star.csv").read_text()


def test_eval_seg_uncertainty_reaches_the_t2star_table(
    make_cfg, tiny_run: Path, tmp_path: Path
) -> None:
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    overrides = ("seg_uncertainty=rot90", "callbacks.t2star.config.qc.max_seg_uncertainty=-1.0")
    evaluate(_eval_cfg(make_cfg, ckpt, tmp_path, *overrides))
    rows = (tmp_path / "t2star" / "test_table.csv").read_text().splitlines()
    header = rows[0].split(",")
    reasons = [r.split(",")[header.index("qc_reasons_pred")] for r in rows[1:]]
    assert reasons and all("seg_uncertainty=" in r for r in reasons)
    assert not any(
        "seg_uncertainty" in r.split(",")[header.index("qc_reasons_ref")] for r in rows[1:]
    )


def _edited_checkpoint(tiny_run: Path, out: Path, edit) -> Path:
    """A copy of the tiny run's last checkpoint with ``edit(stored run config)`` applied."""
    ckpt = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    edit(ckpt[RUN_CONFIG_KEY])
    torch.save(ckpt, out)
    return out


def test_checkpoint_from_before_added_arguments_loads(tiny_run: Path, tmp_path: Path):
    def drop(stored: dict) -> None:
        del stored["model"]["test_time_augmentation"]
        del stored["model"]["seg_uncertainty"]
        del stored["model"]["myocardium_decision"]
        del stored["data"]["sharing_strategy"]

    old = _edited_checkpoint(tiny_run, tmp_path / "old.ckpt", drop)
    model, data_cfg = load_module_from_checkpoint(old, {"echo_fusion": None})
    assert model.hparams.test_time_augmentation == "none"
    assert model.hparams.seg_uncertainty == "none"
    assert model.hparams.myocardium_decision == "argmax"
    assert data_cfg.sharing_strategy is None  # the datamodule has no defaults of its own


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: c["model"].update(wall_mode="core"),
            r"stored setting model\.wall_mode is not an argument of "
            r"cmrseg\.modules\.SegmentationModule any more \(removed or renamed\); to convert "
            r"the checkpoint, edit ckpt\['cmrseg_config'\]\['model'\]",
        ),
        (
            lambda c: c["model"]["net"].update(width=3),
            r"stored setting model\.net\.width is not an argument of cmrseg\.models\.UNet",
        ),
        (
            lambda c: c["data"].update(mode="echoes_as_samples"),
            r"stored setting data\.mode is not an argument of "
            r"cmrseg\.data\.datamodule\.EchoStackDataModule",
        ),
        (
            lambda c: c["model"]["net"].update(_target_="cmrseg.models.OldUNet"),
            r"stored model\.net\._target_ cmrseg\.models\.OldUNet no longer exists",
        ),
        (
            lambda c: c["model"].pop("keep_largest_component"),
            r"stored model lacks keep_largest_component, which "
            r"cmrseg\.modules\.SegmentationModule now needs",
        ),
    ],
    ids=["removed-module-key", "removed-net-key", "removed-data-key", "moved-class", "new-key"],
)
def test_checkpoint_with_settings_that_no_longer_exist_is_refused_by_name(
    tiny_run: Path, tmp_path: Path, edit, message: str
) -> None:
    old = _edited_checkpoint(tiny_run, tmp_path / "old.ckpt", edit)
    with pytest.raises(InputError, match=message):
        load_module_from_checkpoint(old, {})


def test_eval_ddp_sim_matches_single_process(make_cfg, tiny_run: Path, tmp_path: Path) -> None:
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    single, _ = evaluate(_eval_cfg(make_cfg, ckpt, tmp_path / "one", "data.batch_size=3"))
    ddp, _ = evaluate(
        _eval_cfg(make_cfg, ckpt, tmp_path / "two", "trainer=ddp_sim", "data.batch_size=3")
    )
    for key in ("test/jaccard", "test/jaccard_sd", "test/sensitivity", "test/ppv", "test/npv"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-6, nan_ok=True), key


def test_predict_writes_labels_pred(make_cfg, tiny_run: Path, tmp_path: Path) -> None:
    unlabelled = tmp_path / "scans.h5"
    scans = ring_phantom(2, seed=7, labels=False)
    scans.field_strength_t = np.array([3.0, 3.0, np.nan, np.nan], np.float32)
    write_echo_stack(unlabelled, scans)
    before = unlabelled.read_bytes()
    predict(_predict_cfg(make_cfg, tiny_run / "checkpoints" / "last.ckpt", unlabelled, tmp_path))
    out = read_echo_stack(tmp_path / "out" / "predictions.h5")
    assert out.labels_pred is not None and out.labels_pred.shape == (4, 32, 32)
    assert set(np.unique(out.labels_pred)) <= {0, 1, 2}
    assert out.t2star_map_ms is not None
    assert np.isnan(out.t2star_map_ms[out.labels_pred != 2]).all()
    # conf/predict.yaml measures the rotations' disagreement per slice
    assert out.seg_uncertainty is not None and out.seg_uncertainty.shape == (4,)
    assert ((out.seg_uncertainty >= 0) & (out.seg_uncertainty <= 1)).all()
    csv_lines = (tmp_path / "out" / "t2star.csv").read_text().splitlines()
    assert csv_lines[0].startswith("subject_id,slice_index,slice_location,region,t2star_ms")
    assert len(csv_lines) == 1 + 4 * 7
    for column in ("method", "noise_sigma", "qc", "qc_reasons"):  # contract section 2
        assert column in csv_lines[0].split(",")
    # the file's field strength reaches the grading: unknown is said per row
    reasons = [line for line in csv_lines[1:] if "unknown_field" in line]
    assert len(reasons) == 2 * 7
    np.testing.assert_array_equal(out.images, read_echo_stack(unlabelled).images)
    assert unlabelled.read_bytes() == before


def test_predict_failure_leaves_no_partial_result(
    make_cfg, tiny_run: Path, tmp_path: Path, monkeypatch
) -> None:
    """predictions.h5 is complete when the T2* table fails: neither file reaches the output."""
    import cmrseg.cli.predict as predict_cli

    scans = tmp_path / "scans.h5"
    write_echo_stack(scans, ring_phantom(1, seed=7, labels=False))
    written = []

    def fail(path: Path, rows) -> None:
        written.extend(p.name for p in Path(path).parent.iterdir())
        raise OSError("disk full")

    monkeypatch.setattr(predict_cli, "write_t2star_csv", fail)
    with pytest.raises(OSError, match="disk full"):
        predict(_predict_cfg(make_cfg, tiny_run / "checkpoints" / "last.ckpt", scans, tmp_path))
    assert written == ["predictions.h5"]  # the first file was complete when the second failed
    assert not (tmp_path / "out").exists()
    assert {p.name for p in tmp_path.iterdir()} <= {"run", "scans.h5"}  # no temporary folder


def test_predict_run_folder_goes_under_output() -> None:
    cfg = compose_config("predict.yaml", ["ckpt_path=a.ckpt", "input=in.h5", "output=results"])
    assert cfg.hydra.run.dir == "results/logs"


def test_old_checkpoint_refuses_file_with_fewer_echoes_than_trained(
    make_cfg, tiny_run: Path, tmp_path: Path, capsys
) -> None:
    """Trained on echoes 1-3 without stored echo times: a 2-echo file is refused by name.

    (With stored echo times the decay is resampled instead: tests/test_any_acquisition.py.)
    """
    old = _edited_checkpoint(tiny_run, tmp_path / "old.ckpt", lambda c: c.pop("acquisition"))
    scans = tmp_path / "two_echoes.h5"
    write_echo_stack(scans, ring_phantom(1, seed=3, n_echoes=2, labels=False))
    before = scans.read_bytes()
    with pytest.raises(SystemExit) as exc:
        predict(_predict_cfg(make_cfg, old, scans, tmp_path))
    assert exc.value.code == 2
    assert f"data.echoes: [2] outside [0, 2) of {scans}" in capsys.readouterr().err
    assert scans.read_bytes() == before
    assert not (tmp_path / "out" / "predictions.h5").exists()


def test_eval_refuses_missing_checkpoint(make_cfg, tmp_path: Path, capsys) -> None:
    cfg = _eval_cfg(make_cfg, tmp_path / "nope.ckpt", tmp_path)
    with pytest.raises(SystemExit) as exc:
        evaluate(cfg)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"cmrseg-eval: error: {tmp_path / 'nope.ckpt'}: checkpoint file not found"]


def test_eval_refuses_weights_of_another_network(make_cfg, tiny_run: Path, tmp_path: Path) -> None:
    ckpt = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["cmrseg_config"]["model"]["net"]["features_per_stage"] = [8, 16, 32]
    bad = tmp_path / "other.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(SystemExit) as exc:
        evaluate(_eval_cfg(make_cfg, bad, tmp_path))
    assert exc.value.code == 2


def test_predict_cli_refuses_bad_input_with_exit_2(tiny_run: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.h5"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cmrseg.cli.predict import main; main()",
            f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}",
            f"input={missing}",
            f"output={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"cmrseg-predict: error: {missing}: file not found"
    )
    assert not (tmp_path / "out").exists()


def test_transfer_copies_encoder_and_reports_head(tiny_run: Path) -> None:
    from cmrseg.models import UNet

    source = load_net_state_dict(tiny_run / "checkpoints" / "last.ckpt")
    net = UNet(
        in_channels=1,
        num_classes=2,
        myocardium_classes=[1],
        n_stages=3,
        features_per_stage=[4, 8, 16],
        n_conv_per_stage=2,
        n_conv_per_stage_decoder=2,
        norm="batch",
        bottleneck_dropout=0.5,
    )
    report = copy_matching_weights(net, source, ["encoder.*", "decoder.head.*"])
    assert all(name.startswith("encoder.") for name in report.copied)
    assert torch.equal(
        net.state_dict()["encoder.stages.0.0.weight"], source["encoder.stages.0.0.weight"]
    )
    status = {name: s for name, s, _ in report.rows}
    assert status["decoder.head.weight"] == "shape_mismatch"
    assert status["decoder.upsample.0.weight"] == "not_selected"
    assert "copied" in report.table() and "shape_mismatch" in report.table()
    with pytest.raises(InputError, match="another architecture"):
        copy_matching_weights(net, source, ["decoder.head.*"])
