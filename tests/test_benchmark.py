"""The study end to end at CI size: multirun, external evaluation, report, notebook."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import execute_analysis_notebook, notebook_text

REPO = Path(__file__).resolve().parents[1]
METHODS = {"unet", "martini_unet", "gac", "region_growing"}


@pytest.mark.slow
def test_ci_benchmark_report_and_notebook(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "WANDB_MODE": "offline",
    }
    command = ["bash", str(REPO / "experiments" / "benchmark.sh"), "ci", str(out)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    records = [json.loads(p.read_text()) for p in sorted((out / "train").glob("*/run.json"))]
    assert len(records) == 4 * 2  # methods x folds, one seed
    assert {r["method"] for r in records} == METHODS
    assert all(r["status"] == "finished" for r in records)
    external = [json.loads(p.read_text()) for p in sorted((out / "external").glob("*/run.json"))]
    assert {r["method"] for r in external} == {"unet", "martini_unet"}
    assert all(r["split"] == "all" and r["cohort"] != r["train_cohort"] for r in external)

    report = out / "report"
    with open(report / "runs.csv", newline="") as handle:
        runs = list(csv.DictReader(handle))
    assert len(runs) == len(records) + len(external)
    text = (report / "report.md").read_text()
    for method in METHODS:
        assert f"| {method} |" in text

    # a second start resumes: every job finished, none is run again
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("not run again") + again.stderr.count("not run again") >= 8

    notebook = execute_analysis_notebook(report, tmp_path)
    text = notebook_text(notebook)
    assert f"used: {len(records)}" in text and f"external: {len(external)}" in text
    assert "refused: 0" in text
    assert "no external T2* agreement" not in text
