"""benchmarks/bench_held_out_cohort.py on a tiny checkpoint and cohort."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ring_phantom

from cmrseg.data.echo_stack import write_echo_stack

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_held_out_cohort.py"
_spec = importlib.util.spec_from_file_location("bench_held_out_cohort", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_scores_every_slice_and_pairs_against_the_first(
    tiny_run: Path, tiny_stack_path: Path, monkeypatch, capsys
) -> None:
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    jaccard, location, subjects = bench.slice_jaccard(ckpt, tiny_stack_path)
    assert jaccard.shape == location.shape == subjects.shape == (20,)  # 10 x 2, not one split
    assert len(set(subjects)) == 10
    assert ((jaccard >= 0) & (jaccard <= 100)).all()
    assert sorted(set(location)) == ["base", "mid"]
    argv = ["bench", "--data", str(tiny_stack_path), "--threads", "1", str(ckpt), str(ckpt)]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    out = capsys.readouterr().out
    assert f"over the 20 slices of {tiny_stack_path}" in out
    assert f"{np.nanmean(jaccard):.2f} (" in out
    assert "mean +0.00, median +0.00, better on 0 slices, worse on 0" in out
    ci = bench.mean_interval(jaccard, list(subjects), seed=bench.BOOT_SEED)
    assert ci.low <= ci.value <= ci.high
    interval = f"[{ci.low:.2f}, {ci.high:.2f}]"
    assert f"{ci.value:.2f} ({np.nanstd(jaccard, ddof=1):.2f}) {interval}" in out
    assert f"mean of the 2 checkpoints per slice: {ci.value:.2f} {interval}" in out


def test_refuses_a_file_without_labels(tiny_run: Path, tmp_path: Path) -> None:
    unlabelled = tmp_path / "scans.h5"
    write_echo_stack(unlabelled, ring_phantom(2, seed=7, labels=False))
    with pytest.raises(SystemExit, match="no labels to score against"):
        bench.slice_jaccard(tiny_run / "checkpoints" / "last.ckpt", unlabelled)
