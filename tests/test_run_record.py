"""run.json and slices.csv: what cmrseg-report reads from train and eval run folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ring_phantom
from omegaconf import open_dict

from cmrseg.callbacks.run_record import slice_scores
from cmrseg.cli.eval import evaluate
from cmrseg.cli.train import train
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.data.echo_stack import inspect_echo_stack, read_echo_stack, write_echo_stack
from cmrseg.data.splits import echo_stack_fingerprint
from cmrseg.report.runs import RUN_FORMAT, RUN_VERSION, SLICE_COLUMNS
from cmrseg.utils.run_record import read_run_record


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_writes_finished_record_and_slice_scores(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(["seed=7", "data.num_folds=5", "data.fold=1"])
    metrics, objects = train(cfg)
    record = read_run_record(tmp_path)
    assert record["format"] == RUN_FORMAT and record["version"] == RUN_VERSION
    assert record["status"] == "finished" and record["error"] is None
    assert record["task"] == "train" and record["method"] == "unet" and record["seed"] == 7
    assert (record["split"], record["fold"], record["num_folds"]) == ("test", 1, 5)
    split = objects["datamodule"].split
    assert record["cohort"] == {"file": split.source, "fingerprint": split.fingerprint}
    assert record["train_cohort"] == record["cohort"]
    assert record["finished_utc"] is not None

    rows = _rows(tmp_path / "slices.csv")
    assert tuple(rows[0]) == SLICE_COLUMNS
    test_indices = objects["datamodule"].split_indices("test").tolist()
    assert [int(r["slice_index"]) for r in rows] == test_indices
    # the per-slice scores are the slices the module's metrics averaged
    assert np.mean([float(r["jaccard"]) for r in rows]) == pytest.approx(
        metrics["test/jaccard"], abs=1e-5
    )
    assert {r["subject_id"] for r in rows} == set(split.test)


def test_failed_run_is_recorded_as_failed(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg()
    with open_dict(cfg):
        cfg.model.optimizer.lr = "not a number"
    with pytest.raises(Exception):  # noqa: B017 - any failure of the task
        train(cfg)
    record = read_run_record(tmp_path)
    assert record["status"] == "failed"
    assert record["error"].split(":")[0].endswith("Error")


def test_eval_on_another_file_is_recorded_as_external(
    make_cfg, tiny_run: Path, tmp_path: Path, tiny_stack_path: Path
) -> None:
    other = tmp_path / "other.h5"
    write_echo_stack(other, ring_phantom(6, seed=5))
    out = tmp_path / "eval"
    cfg = make_cfg(
        [
            f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}",
            f"data.path={other}",
            f"++data.split_file={tmp_path / 'other_split.json'}",  # a split of its own
        ],
        "eval.yaml",
        do_shrink=False,
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.extras.print_config = False
        cfg.trainer.enable_progress_bar = False
    evaluate(cfg)
    record = read_run_record(out)
    assert record["status"] == "finished" and record["task"] == "eval"
    assert record["cohort"]["fingerprint"] == echo_stack_fingerprint(inspect_echo_stack(other))
    assert (record["train_cohort"]["seed"], record["train_cohort"]["fold"]) == (12345, None)
    assert record["train_cohort"]["fingerprint"] == echo_stack_fingerprint(
        inspect_echo_stack(tiny_stack_path)
    )
    assert (out / "slices.csv").exists()


def test_slice_scores_by_hand(tmp_path: Path, tiny_stack_path: Path) -> None:
    stack = read_echo_stack(tiny_stack_path)
    truth = stack.labels[3]
    pred = np.where(truth == MYOCARDIUM, MYOCARDIUM, 0).astype(np.uint8)
    wall = np.argwhere(truth == MYOCARDIUM)
    pred[tuple(wall[: len(wall) // 2].T)] = 0  # half of the wall missed
    rows = slice_scores(tiny_stack_path, {3: pred, 5: stack.labels[5].copy()})
    assert [r["slice_index"] for r in rows] == [3, 5]
    n = len(wall)
    kept = n - n // 2
    assert rows[0]["jaccard"] == pytest.approx(kept / n)
    assert rows[0]["sensitivity"] == pytest.approx(kept / n)
    assert rows[0]["ppv"] == pytest.approx(1.0)
    assert rows[0]["dice"] == pytest.approx(2 * kept / (kept + n))
    assert rows[1]["jaccard"] == 1.0 and rows[1]["hd95_mm"] == 0.0
    assert rows[1]["subject_id"] == stack.subject_id[5]
    json.dumps(rows)  # plain values


def test_finished_run_is_skipped_when_asked(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(["skip_finished=true"])
    metrics, _ = train(cfg)
    first = read_run_record(tmp_path)
    assert first["metrics"]["test/jaccard"] == pytest.approx(metrics["test/jaccard"])
    again, objects = train(cfg)  # same folder, same overrides: not run again
    assert objects == {} and again == first["metrics"]
    assert read_run_record(tmp_path)["started_utc"] == first["started_utc"]


def test_refused_input_is_recorded_with_its_message(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg()
    with open_dict(cfg):
        cfg.data.path = str(tmp_path / "missing.h5")
    with pytest.raises(SystemExit) as exit_info:
        train(cfg)
    assert exit_info.value.code == 2
    record = read_run_record(tmp_path)
    assert record["status"] == "failed"
    assert record["error"].endswith("missing.h5: file not found")
