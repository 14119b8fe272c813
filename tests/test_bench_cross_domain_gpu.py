"""benchmarks/bench_cross_domain_gpu.py: its pre-registered commands, steps and judged report."""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


_load("bench_cross_domain")  # what the GPU script imports, found as on its own run
gpu = _load("bench_cross_domain_gpu")


def _args(argv: list[str]) -> argparse.Namespace:
    captured = {}

    class StopError(Exception):
        pass

    class Capture:
        def __init__(self, out, args):
            captured["args"] = args
            raise StopError

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gpu, "GpuBenchmark", Capture)
        with pytest.raises(StopError):
            gpu.main(["OUT", *argv])
    return captured["args"]


def test_defaults_are_the_pre_registered_run() -> None:
    args = _args([])
    assert (args.subjects, args.epochs, args.seed, args.test_subjects) == (2000, 6, 12345, 20)
    assert args.trainer == "gpu" and args.max_minutes is None


def test_in_domain_scores_are_checked() -> None:
    assert gpu.parse_in_domain(["clinical=0.913", "hard=0.829"]) == {
        "clinical": 0.913,
        "hard": 0.829,
    }
    for bad in ("randomized=0.5", "clinical", "clinical=x", "clinical=91.3", "heart=0.9"):
        with pytest.raises(SystemExit, match="expected FAMILY=JACCARD"):
            gpu.parse_in_domain([bad])


class _Steps:
    def __init__(self) -> None:
        self.commands: dict[str, list[str]] = {}

    def run(self, label, kind, command, done) -> None:
        self.commands[label] = command


def test_commands_are_the_pre_registered_ones(tmp_path: Path) -> None:
    args = _args(["--max-minutes", "65", "--seed", "2"])
    bench = gpu.GpuBenchmark(tmp_path, args)
    train_path, (label, kind, synth, _) = bench.cohort_step(gpu.FAMILIES[0], "train")
    assert (label, kind) == ("synthesize randomized train", "synth")
    assert train_path == tmp_path / "cohorts" / "randomized_train.h5"
    joined = " ".join(synth)
    assert "--preset randomized" in joined and "--cohort paper_x40" in joined
    assert "--subjects 2000" in joined and "--seed 0" in joined and "--jobs 14" in joined
    for family in gpu.FAMILIES:  # the test files of bench_cross_domain.py
        _, (_, _, command, _) = bench.cohort_step(family, "test")
        assert command[command.index("--seed") + 1] == str(family.test_seed)
        assert command[command.index("--subjects") + 1] == "20"
        assert "--cohort" not in command and "--jobs" not in command
    bench.steps = _Steps()
    ckpt = bench.train(train_path)
    assert ckpt == tmp_path / "train" / gpu.MODEL / "checkpoints" / "last.ckpt"
    train = bench.steps.commands[f"train {gpu.MODEL}"]
    for override in (
        "experiment=randomized",
        "trainer=gpu",
        "trainer.max_epochs=6",
        "trainer.check_val_every_n_epoch=6",
        "seed=2",
        "data.num_workers=12",
        "~callbacks.t2star",
        "+trainer.max_time=00:01:05:00",
    ):
        assert override in train
    _, _, evaluate, _ = bench.eval_step("hard", ckpt, tmp_path / "hard_test.h5")
    assert "split=all" in evaluate and "trainer=gpu" in evaluate
    assert f"ckpt_path={ckpt}" in evaluate


def test_training_steps_come_from_the_csv_log(tmp_path: Path) -> None:
    assert gpu.training_steps(tmp_path) is None
    log = tmp_path / "csv" / "version_0" / "metrics.csv"
    log.parent.mkdir(parents=True)
    log.write_text("epoch,step,train/loss\n0,49,1.0\n1,99,0.5\n1,,\n")
    assert gpu.training_steps(tmp_path) == 100


def _row(family: str, jaccard: float, in_domain: float, below: float, apex: float) -> dict:
    row = {
        "family": family,
        "subjects": 20,
        "slices": 60,
        "jaccard": jaccard,
        "below_0_5": below,
        "apex_jaccard": apex,
        "in_domain_jaccard": in_domain,
        "minus_in_domain": jaccard - in_domain,
        "t2star_subjects": 19,
        "t2star_bias_ms": 0.1,
        "grade_kappa": 0.9,
        "same_grade": 1.0,
        "training_steps": 5400,
    }
    for prefix in ("jaccard", "below_0_5", "apex", "t2star_bias"):
        row[f"{prefix}_ci_low"] = row[f"{prefix}_ci_high"] = 0.0
    return row


def test_report_judges_each_held_out_family() -> None:
    rows = [
        _row("randomized", 0.6, math.nan, 0.3, 0.5),
        _row("clinical", 0.90, 0.913, 0.0, 0.86),
        _row("ellipsoid", 0.59, 0.816, 0.32, 0.40),
        _row("hard", 0.80, math.nan, 0.0, 0.86),
    ]
    text = gpu.render(rows, _args(["--max-minutes", "5"]), 400.0)
    assert "5400 optimizer steps logged; cap 5 min" in text
    assert "| clinical | 20 (60) |" in text and "| 0.913 | -0.013 |" in text
    assert "| clinical | met | met | met | met | met |" in text
    assert "| ellipsoid | not met | not met | not met | met | met |" in text
    assert "| hard | - | met | met | met | met |" in text  # no in-domain score given
    assert "| randomized | met" not in text and "| randomized | not met" not in text
