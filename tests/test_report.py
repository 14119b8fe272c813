"""cmrseg-report on a hand-made multirun folder: hand-computed tables, refusals, exit codes."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import execute_analysis_notebook, notebook_images, notebook_text

from cmrseg.cli.report import main, run_checkpoint
from cmrseg.data.echo_stack import inspect_echo_stack
from cmrseg.data.splits import echo_stack_fingerprint
from cmrseg.report.runs import collect_runs, read_run, select_runs
from cmrseg.report.study import table1
from cmrseg.t2star import grade_t2star

FP = "a" * 64  # the study's cohort fingerprint (hand-made runs)
SUBJECTS = ("S000", "S001", "S002", "S003")  # 2 slices each: slice indices 2i, 2i + 1
FOLDS = {0: SUBJECTS[:2], 1: SUBJECTS[2:]}
# per-slice Jaccard by method and seed: unet seed 2 is seed 1 + 0.02 (pooled: seed 1 + 0.01)
JACCARD = {
    ("unet", 1): {
        "S000": (0.90, 0.80),
        "S001": (0.70, 0.60),
        "S002": (0.85, 0.75),
        "S003": (0.95, 0.65),
    },
    ("unet", 2): {
        "S000": (0.92, 0.82),
        "S001": (0.72, 0.62),
        "S002": (0.87, 0.77),
        "S003": (0.97, 0.67),
    },
    ("gac", 1): {
        "S000": (0.60, 0.50),
        "S001": (0.65, 0.40),
        "S002": (0.57, 0.45),
        "S003": (0.70, 0.20),
    },
    ("martini_unet", 1): {
        "S000": (0.88, 0.82),
        "S001": (0.70, 0.68),
        "S002": (0.80, 0.72),
        "S003": (0.90, 0.58),
    },
}
T2STAR_OFFSET_MS = {("unet", 1): 1.0, ("unet", 2): 2.0, ("gac", 1): -2.0, ("martini_unet", 1): 0.5}
REF_MS = {"S000": (30.0, 32.0), "S001": (15.0, 13.0), "S002": (8.0, 9.0), "S003": (22.0, 26.0)}


def _write_run(
    folder: Path,
    method: str,
    seed: int,
    fold: int | None,
    *,
    status: str = "finished",
    cohort: str = FP,
    train_cohort: str | None = None,
    num_folds: int | None = 2,
    split_seed: int = 2025,
    subjects: tuple[str, ...] | None = None,
    cohort_file: str = "cohort.h5",
    t2star: bool = True,
    trained_fold: int | None = None,
) -> Path:
    folder.mkdir(parents=True)
    record = {
        "format": "cmrseg.run",
        "version": 1,
        "status": status,
        "error": "CUDA out of memory" if status == "failed" else None,
        "task": "train",
        "method": method,
        "seed": seed,
        "split": "test" if fold is not None else "all",
        "fold": fold,
        "num_folds": num_folds,
        "split_seed": split_seed,
        "cohort": {"file": cohort_file, "fingerprint": cohort},
        "train_cohort": {
            "file": "cohort.h5",
            "fingerprint": train_cohort or cohort,
            "seed": seed,
            "fold": trained_fold,
        },
        "cmrseg_version": "0.1.0",
        "started_utc": "2026-11-29T06:00:00Z",
        "finished_utc": "2026-11-29T06:01:00Z",
    }
    (folder / "run.json").write_text(json.dumps(record))
    subjects = subjects if subjects is not None else FOLDS[fold]
    jaccard = JACCARD[(method, seed)]
    with open(folder / "slices.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "subject_id",
                "slice_index",
                "slice_location",
                "jaccard",
                "dice",
                "sensitivity",
                "specificity",
                "ppv",
                "npv",
                "hd95_mm",
            ]
        )
        for subject in subjects:
            for k, value in enumerate(jaccard[subject]):
                index = 2 * SUBJECTS.index(subject) + k
                hd95 = "" if value < 0.3 else 10 * (1 - value)  # empty: as for an empty mask
                row = [subject, index, ("base", "mid")[k], value, value, value, 0.99, value, 0.99]
                writer.writerow([*row, hd95])
    if t2star:
        (folder / "t2star").mkdir()
        with open(folder / "t2star" / "test_table.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                [
                    "subject_id",
                    "slice_index",
                    "slice_location",
                    "region",
                    "t2star_pred_ms",
                    "t2star_ref_ms",
                    "t2star_true_ms",
                    "grade_pred",
                    "grade_ref",
                    "grade_true",
                    "status_pred",
                    "status_ref",
                    "n_pixels_pred",
                    "n_pixels_ref",
                ]
            )
            for subject in subjects:
                for k, ref in enumerate(REF_MS[subject]):
                    index = 2 * SUBJECTS.index(subject) + k
                    pred, true = ref + T2STAR_OFFSET_MS[(method, seed)], ref + 0.5
                    grades = [grade_t2star(v) for v in (pred, ref, true)]
                    for region in ("global", "sector1"):
                        scale = 1.0 if region == "global" else 3.0  # sectors must not count
                        values = [pred * scale, ref * scale, true * scale]
                        writer.writerow(
                            [
                                subject,
                                index,
                                ("base", "mid")[k],
                                region,
                                *values,
                                *grades,
                                "ok",
                                "ok",
                                100,
                                100,
                            ]
                        )
    return folder


def _study(root: Path) -> Path:
    """A multirun folder: unet 2 folds x 2 seeds, gac and martini_unet 2 folds x 1 seed."""
    multirun = root / "multirun"
    job = 0
    for method, seeds in (("unet", (1, 2)), ("gac", (1,)), ("martini_unet", (1,))):
        for seed in seeds:
            for fold in (0, 1):
                _write_run(multirun / str(job), method, seed, fold)
                job += 1
    return multirun


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _row(rows: list[dict[str, str]], method: str, metric: str) -> dict[str, str]:
    return next(r for r in rows if r["method"] == method and r["metric"] == metric)


def _report(args: list[str]) -> int:
    return main([*args, "--no-inference", "--wandb", "disabled", "--n-boot", "400"])


def test_table1_hand_computed(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert _report([str(_study(tmp_path)), str(out)]) == 0
    rows = _read(out / "table1.csv")
    unet = _row(rows, "unet", "jaccard")
    # seeds averaged per slice, then pooled over folds: seed 1 + 0.01
    pooled = np.array([0.91, 0.81, 0.71, 0.61, 0.86, 0.76, 0.96, 0.66])
    assert float(unet["mean"]) == pytest.approx(100 * pooled.mean())  # 78.5
    sd = math.sqrt(np.sum((pooled - pooled.mean()) ** 2) / 7)
    assert float(unet["sd"]) == pytest.approx(100 * sd, rel=1e-5)
    # fold means: (0.91 + 0.81 + 0.71 + 0.61) / 4 = 0.76 and 0.81
    assert float(unet["fold_min"]) == pytest.approx(76.0) and float(unet["fold_max"]) == 81.0
    assert (unet["n_runs"], unet["seeds"], unet["folds"], unet["n_slices"]) == ("4", "2", "2", "8")
    # bootstrap over 4 subjects (2 slices each: the slice mean is the mean of subject means)
    subject_means = 100 * pooled.reshape(4, 2).mean(axis=1)
    picks = np.random.default_rng(0).integers(0, 4, size=(400, 4))
    low, high = np.quantile(subject_means[picks].mean(axis=1), [0.025, 0.975])
    assert (float(unet["ci_low"]), float(unet["ci_high"])) == pytest.approx((low, high))
    # Wilcoxon of subject means against unet: gac - unet = -0.31, -0.135, -0.30, -0.36, all
    # below: exact two-sided p = 2 / 16; martini_unet - unet = -0.01, +0.03, -0.05, -0.07:
    # W+ = rank 2, P(W+ <= 2) = 3 / 16, p = 6 / 16. Holm over 2: 0.25 and max(0.25, 0.375)
    gac, martini = _row(rows, "gac", "jaccard"), _row(rows, "martini_unet", "jaccard")
    assert float(gac["wilcoxon_p"]) == pytest.approx(0.125)
    assert float(martini["wilcoxon_p"]) == pytest.approx(0.375)
    assert float(gac["wilcoxon_p_holm"]) == pytest.approx(0.25)
    assert float(martini["wilcoxon_p_holm"]) == pytest.approx(0.375)
    assert unet["wilcoxon_p"] == "" and gac["wilcoxon_n"] == "4"
    # the paper's Jaccard beside; metrics it does not give are empty, never guessed
    assert float(unet["paper_mean"]) == 95.0 and float(gac["paper_mean"]) == 64.0
    assert _row(rows, "unet", "dice")["paper_mean"] == ""
    # HD95 with an empty value (gac S003 slice 1): left out of the mean, not zero
    hd95 = _row(rows, "gac", "hd95_mm")
    assert hd95["n_slices"] == "7"
    assert float(hd95["mean"]) == pytest.approx(
        10 * (1 - np.mean([0.6, 0.5, 0.65, 0.4, 0.57, 0.45, 0.7]))
    )
    report = (out / "report.md").read_text()
    assert "Table 1 analog" in report and "not found" in report
    assert (out / "jaccard_boxplot.png").read_bytes()[:4] == b"\x89PNG"


def test_table2_hand_computed(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert _report([str(_study(tmp_path)), str(out)]) == 0
    subjects = {r["subject_id"]: r for r in _read(out / "table2_subjects.csv")}
    s0 = subjects["S000"]
    # reference mean of slices 30 and 32; unet: seeds +1 and +2 -> +1.5; truth +0.5
    assert float(s0["t2star_ref_ms"]) == 31.0 and float(s0["t2star_true_ms"]) == 31.5
    assert float(s0["t2star_unet_ms"]) == 32.5 and float(s0["t2star_gac_ms"]) == 29.0
    assert s0["grade_unet"] == "normal" and subjects["S002"]["grade_gac"] == "severe"
    agreement = {(r["method"], r["against"]): r for r in _read(out / "table2_agreement.csv")}
    assert float(agreement[("unet", "reference")]["bias"]) == pytest.approx(1.5)
    assert float(agreement[("gac", "reference")]["bias"]) == pytest.approx(-2.0)
    assert float(agreement[("gac", "truth")]["bias"]) == pytest.approx(-2.5)
    assert agreement[("unet", "reference")]["n"] == "4"
    # percent bias of gac: mean over subjects of 100 (pred - ref) / ((pred + ref) / 2)
    ref = np.array([31.0, 14.0, 8.5, 24.0])
    pct = np.mean(100 * -2.0 / (ref - 1.0))
    assert float(agreement[("gac", "reference")]["bias_pct"]) == pytest.approx(pct)
    for name in ("icc", "kappa", "kappa_linear"):
        assert name in agreement[("gac", "reference")]
    assert (out / "bland_altman_gac.png").is_file()


def test_refused_runs_are_listed_and_not_averaged(tmp_path: Path) -> None:
    multirun = _study(tmp_path)
    bad = {
        "20": _write_run(multirun / "20", "unet", 1, 0, status="running"),
        "21": _write_run(multirun / "21", "unet", 1, 1, status="failed"),
        "22": _write_run(multirun / "22", "unet", 2, 0, cohort="b" * 64),
        "23": _write_run(multirun / "23", "unet", 1, 0, num_folds=3),
        "24": multirun / "24",
        "25": _write_run(multirun / "25", "gac", 1, 0, split_seed=7),
    }
    bad["24"].mkdir()  # a job that crashed before writing anything
    (multirun / "26").mkdir()
    shutil.copy(multirun / "0" / "run.json", multirun / "26" / "run.json")
    bad["26"] = multirun / "26"  # run.json without slices.csv
    old = _write_run(multirun / "27", "unet", 1, 0)
    (old / "run.json").write_text(json.dumps({"format": "cmrseg.run", "version": 0}))
    bad["27"] = old
    out = tmp_path / "report"
    assert _report([str(multirun), str(out)]) == 0
    runs = {Path(r["path"]).name: r for r in _read(out / "runs.csv")}
    reasons = {name: runs[name]["reason"] for name in bad}
    assert all(runs[name]["use"] == "refused" for name in bad)
    assert "did not finish" in reasons["20"] and "CUDA out of memory" in reasons["21"]
    assert "different cohort" in reasons["22"] and "different folds" in reasons["23"]
    assert "different folds" in reasons["25"] and "run.json missing" in reasons["24"]
    assert "slices.csv missing" in reasons["26"] and "version 0" in reasons["27"]
    assert sum(r["use"] == "used" for r in runs.values()) == 8
    # the same numbers as without the refused runs
    clean = tmp_path / "clean"
    assert _report([str(_study(tmp_path / "again")), str(clean)]) == 0
    assert _read(out / "table1.csv") == _read(clean / "table1.csv")
    assert "Refused" in (out / "report.md").read_text()


def test_two_cohorts_are_not_mixed_and_external_runs_get_their_own_table(tmp_path: Path) -> None:
    multirun = _study(tmp_path)
    # an in-domain study on another cohort (fewer runs): refused
    _write_run(tmp_path / "other" / "0", "unet", 1, 0, cohort="c" * 64)
    # the study's unet scored on another cohort (split all): domain shift
    _write_run(
        tmp_path / "external",
        "unet",
        1,
        None,
        cohort="d" * 64,
        train_cohort=FP,
        subjects=SUBJECTS,
        num_folds=None,
        cohort_file="hard.h5",
    )
    # an external run's own folds do not matter (it scores whole files)
    _write_run(
        tmp_path / "external_k5",
        "gac",
        1,
        None,
        cohort="d" * 64,
        train_cohort=FP,
        subjects=SUBJECTS,
        num_folds=5,
        cohort_file="hard.h5",
    )
    runs, refused = collect_runs(
        [multirun, tmp_path / "other", tmp_path / "external", tmp_path / "external_k5"]
    )
    selection = select_runs(runs, refused)
    assert selection.cohort["fingerprint"] == FP
    assert [r.path.name for r in selection.external] == ["external", "external_k5"]
    assert len(selection.refused) == 1 and "different cohort" in selection.refused[0].reason
    out = tmp_path / "report"
    assert (
        _report([str(multirun), str(tmp_path / "other"), str(tmp_path / "external"), str(out)]) == 0
    )
    external = _read(out / "table1_external.csv")
    row = next(r for r in external if r["metric"] == "jaccard")
    assert row["cohort"] == "hard.h5" and row["n_slices"] == "8"
    assert float(row["mean"]) == pytest.approx(
        100 * np.mean([v for s in SUBJECTS for v in JACCARD[("unet", 1)][s]])
    )
    assert "Domain shift" in (out / "report.md").read_text()
    # Table 2's agreement on the external cohort: its run's offset (+1 ms; truth = ref + 0.5)
    shifted = {
        (r["cohort"], r["method"], r["against"]): r
        for r in _read(out / "table2_external_agreement.csv")
    }
    assert float(shifted[("hard.h5", "unet", "reference")]["bias"]) == pytest.approx(1.0)
    assert float(shifted[("hard.h5", "unet", "truth")]["bias"]) == pytest.approx(0.5)
    assert shifted[("hard.h5", "unet", "reference")]["n"] == "4"
    # Table 1 itself holds the in-domain runs only
    assert _read(out / "table1.csv") == _read(
        _report_of(_study(tmp_path / "again"), tmp_path / "clean")
    )


def test_external_runs_of_each_fold_model_are_pooled_not_refused(tmp_path: Path) -> None:
    """cmrseg-eval split=all of every fold's checkpoint: other models, the same slices."""
    for fold in (0, 1):
        _write_run(
            tmp_path / "external" / str(fold),
            "unet",
            1,
            None,
            cohort="d" * 64,
            train_cohort=FP,
            subjects=SUBJECTS,
            num_folds=None,
            trained_fold=fold,
        )
    runs, refused = collect_runs([_study(tmp_path), tmp_path / "external"])
    selection = select_runs(runs, refused)
    assert not selection.refused
    assert sorted(r.trained_as for r in selection.external) == [(1, 0), (1, 1)]
    # the domain-shift table counts the models' folds and seeds, not the evaluations' (none)
    row = next(r for r in table1(selection.external, proposed="unet", n_boot=10, seed=0))
    assert (row["n_runs"], row["folds"], row["seeds"]) == (2, 2, 1)


def _report_of(multirun: Path, out: Path) -> Path:
    assert _report([str(multirun), str(out)]) == 0
    return out / "table1.csv"


def test_nothing_usable_exits_2_with_one_line_and_no_output(tmp_path: Path, capsys) -> None:
    multirun = tmp_path / "multirun"
    _write_run(multirun / "0", "unet", 1, 0, status="failed")
    _write_run(multirun / "1", "unet", 1, 1, status="running")
    out = tmp_path / "report"
    assert _report([str(multirun), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cmrseg-report: error: ")
    assert str(multirun / "0") in err[-1] and "failed: CUDA out of memory" in err[-1]
    assert not out.exists()
    assert _report([str(tmp_path / "nowhere"), str(out)]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert not out.exists()


def test_cli_end_to_end_in_a_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "report"
    code = "import sys; from cmrseg.cli.report import main; sys.exit(main(sys.argv[1:]))"
    args = [str(_study(tmp_path)), str(out), "--no-inference", "--n-boot", "200"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "8 runs used, 0 external, 0 refused" in done.stdout
    names = {p.name for p in out.iterdir()}
    assert {
        "report.md",
        "runs.csv",
        "table1.csv",
        "table2_subjects.csv",
        "table2_agreement.csv",
    } <= names
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".report")]  # no temp left
    assert (out / "wandb").is_dir()  # the offline W&B run
    # again into the same folder, without the T2* tables: the old Table 2 files go
    for table in tmp_path.glob("multirun/*/t2star/test_table.csv"):
        table.unlink()
    assert _report([str(tmp_path / "multirun"), str(out)]) == 0
    assert not (out / "table2_subjects.csv").exists() and not list(out.glob("bland_altman_*"))
    assert "Table 2 skipped" in (out / "report.md").read_text()


def test_figure2_reruns_inference_from_the_checkpoint(
    tmp_path: Path, tiny_run: Path, tiny_stack_path: Path
) -> None:
    fingerprint = echo_stack_fingerprint(inspect_echo_stack(tiny_stack_path))
    multirun = tmp_path / "multirun"
    for fold in (0, 1):
        run = _write_run(
            multirun / str(fold),
            "unet",
            1,
            fold,
            cohort=fingerprint,
            cohort_file=str(tiny_stack_path),
        )
        (run / "checkpoints").mkdir()
        shutil.copy(tiny_run / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.ckpt")
    # gac has no checkpoint: its column says so, the figure is still drawn
    _write_run(multirun / "2", "gac", 1, 0, cohort=fingerprint, cohort_file=str(tiny_stack_path))
    _write_run(multirun / "3", "gac", 1, 1, cohort=fingerprint, cohort_file=str(tiny_stack_path))
    assert run_checkpoint(read_run(multirun / "0")).name == "last.ckpt"
    # the tested checkpoint as the run records it
    record = json.loads((multirun / "1" / "run.json").read_text())
    (multirun / "1" / "checkpoints" / "last.ckpt").rename(multirun / "1" / "tested.ckpt")
    (multirun / "1" / "run.json").write_text(json.dumps({**record, "checkpoint": "tested.ckpt"}))
    assert run_checkpoint(read_run(multirun / "1")).name == "tested.ckpt"
    out = tmp_path / "report"
    assert main([str(multirun), str(out), "--wandb", "disabled", "--n-boot", "100"]) == 0
    assert (out / "figure2.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "no gac masks" in report and "no checkpoint" in report
    assert "no unet masks" not in report


def test_analysis_notebook_runs_on_a_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert _report([str(_study(tmp_path)), str(out)]) == 0
    notebook = execute_analysis_notebook(out, tmp_path)
    text = notebook_text(notebook)
    assert "used: 8" in text and "refused: 0" in text
    assert "| unet | 4 | 78.50 (12.25)" in text  # Table 1, Jaccard
    assert "| gac | reference | 4 | -2.00" in text  # Table 2 agreement
    assert (
        len(notebook_images(notebook)) >= 3 + 4
    )  # Bland-Altman per method drawn again, the report's PNGs


def test_report_of_real_train_runs(make_cfg, tmp_path: Path) -> None:
    from omegaconf import OmegaConf, open_dict

    from cmrseg.cli.train import train

    multirun = tmp_path / "multirun"
    for fold in (0, 1):
        cfg = make_cfg(["seed=7", "data.num_folds=2", f"data.fold={fold}"])
        with open_dict(cfg):
            cfg.paths.output_dir = str(multirun / str(fold))
        train(cfg)
        (multirun / str(fold) / ".hydra").mkdir()
        OmegaConf.save(cfg, multirun / str(fold) / ".hydra" / "config.yaml")  # as Hydra does
    out = tmp_path / "report"
    assert main([str(multirun), str(out), "--wandb", "disabled", "--n-boot", "100"]) == 0
    jaccard = _row(_read(out / "table1.csv"), "unet", "jaccard")
    scored = sum(len(_read(multirun / str(f) / "slices.csv")) for f in (0, 1))
    assert jaccard["folds"] == "2" and int(jaccard["n_slices"]) == scored
    assert (out / "figure2.png").is_file(), (out / "report.md").read_text()
    assert "Notes" not in (out / "report.md").read_text()
