"""benchmarks/bench_cross_domain.py: its family table, summaries, few-shot split and resuming."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cmrseg.data.splits import load_split, make_subject_split, save_split
from cmrseg.report.runs import RUN_FORMAT, RUN_VERSION, SLICE_COLUMNS, read_run
from cmrseg.synth import load_synth_config

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cross_domain.py"
_spec = importlib.util.spec_from_file_location("bench_cross_domain", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_cross_domain"] = bench  # dataclasses look their module up by name
_spec.loader.exec_module(bench)


def test_family_table_names_the_pre_registered_families() -> None:
    names = [f.name for f in bench.FAMILIES]
    assert names == ["randomized", "clinical", "hard", "out_of_range", "ellipsoid"]
    assert bench.FEW_SHOT_FAMILY in names and names[0] == bench.TRAIN_FAMILY
    seeds = [s for f in bench.FAMILIES for s in (f.train_seed, f.test_seed)]
    assert len(set(seeds)) == len(seeds)  # no two files share a seed


def test_a_family_needing_an_unknown_option_is_found_out() -> None:
    ellipsoid = next(f for f in bench.FAMILIES if f.name == "ellipsoid")
    assert ellipsoid.missing_options({"--preset", "--seed"}) == ["--anatomy"]
    assert ellipsoid.missing_options({"--anatomy"}) == []
    clinical = next(f for f in bench.FAMILIES if f.name == "clinical")
    assert clinical.missing_options({"--preset"}) == []


def test_out_of_range_family_lies_outside_the_randomized_ranges() -> None:
    family = next(f for f in bench.FAMILIES if f.name == "out_of_range")
    cfg = load_synth_config(family.synth_args[1])
    r = load_synth_config("randomized").randomize
    assert cfg.randomize is None
    assert list(cfg.grid.shape) not in [list(m) for m in r.matrix_choices]
    columns = [m[1] for m in r.matrix_choices]
    smallest_spacing = r.field_of_view_mm.low / max(columns)
    assert cfg.grid.pixel_spacing_mm < smallest_spacing
    assert cfg.echoes.n_echoes > r.n_echoes[1]
    assert cfg.echoes.te_first_ms < r.te_first_ms.low
    spacing = (cfg.echoes.te_last_ms - cfg.echoes.te_first_ms) / (cfg.echoes.n_echoes - 1)
    assert spacing < r.echo_spacing_ms.low


def test_few_shot_epochs_keep_the_sample_budget() -> None:
    cpu = bench.SCALES["cpu"]
    assert [cpu.few_shot_epochs(k) for k in cpu.few_shot_ks] == [219, 131, 66]
    assert bench.SCALES["smoke"].few_shot_epochs(3) == bench.SCALES["smoke"].epochs
    with pytest.raises(ValueError, match="epochs or few_shot_samples"):
        bench.Scale(1, 1, None, (3,), None, ()).few_shot_epochs(3)


def _run_folder(
    folder: Path, slices: list[dict], t2star: list[dict] | None = None, status: str = "finished"
) -> Path:
    folder.mkdir(parents=True)
    cohort = {"file": "test.h5", "fingerprint": "ab12"}
    record = {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "status": status,
        "method": "unet",
        "cohort": cohort,
        "train_cohort": {"file": "train.h5", "fingerprint": "cd34"},
    }
    (folder / "run.json").write_text(json.dumps(record))
    with (folder / "slices.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SLICE_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(slices)
    if t2star is not None:
        (folder / "t2star").mkdir()
        columns = ["subject_id", "slice_index", "region", "t2star_pred_ms", "t2star_ref_ms"]
        columns += ["t2star_true_ms", "grade_pred", "grade_ref", "grade_true"]
        with (folder / "t2star" / "test_table.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(t2star)
    return folder


# subject S1: three slices, S2: three slices; one apex each
_JACCARD = {("S1", 0): 0.9, ("S1", 1): 0.8, ("S1", 2): 0.4, ("S2", 3): 0.7, ("S2", 4): 0.6}
_LOCATION = ["base", "mid", "apex", "base", "apex"]


def _slices(shift: float = 0.0) -> list[dict]:
    return [
        {"subject_id": s, "slice_index": i, "slice_location": loc, "jaccard": j + shift}
        for ((s, i), j), loc in zip(_JACCARD.items(), _LOCATION, strict=True)
    ]


def test_overlap_summary_of_a_hand_made_slices_csv(tmp_path: Path) -> None:
    run = read_run(_run_folder(tmp_path / "run", _slices()))
    summary = bench.overlap_summary(run.slices)
    assert summary["jaccard"].value == pytest.approx(np.mean(list(_JACCARD.values())))
    assert summary["below"].value == pytest.approx(1 / 5)  # 0.4 only
    assert summary["apex"].value == pytest.approx((0.4 + 0.6) / 2)
    for interval in summary.values():
        assert interval.low <= interval.value <= interval.high
    # two subjects: the interval spans the two subjects' means at most
    assert summary["jaccard"].low >= 0.6 and summary["jaccard"].high <= 0.7 + 1e-9


def test_paired_difference_pairs_slices_by_subject_and_index() -> None:
    a = _slices(0.05)
    b = [r for r in _slices() if r["slice_index"] != 4]  # one slice scored by a only
    n, diff = bench.paired_difference(a, b)
    assert n == 4
    assert diff.value == pytest.approx(0.05)
    assert bench.paired_difference(a, [])[0] == 0


def test_t2star_summary_uses_the_reports_per_subject_agreement(tmp_path: Path) -> None:
    t2star = [
        # S1: pred 1 ms above ref on both slices, same grade; S2: pred 3 ms above, grade differs
        {"subject_id": "S1", "slice_index": 0, "region": "global", "t2star_pred_ms": 31,
         "t2star_ref_ms": 30, "grade_pred": "normal", "grade_ref": "normal"},
        {"subject_id": "S1", "slice_index": 1, "region": "global", "t2star_pred_ms": 33,
         "t2star_ref_ms": 32, "grade_pred": "normal", "grade_ref": "normal"},
        {"subject_id": "S1", "slice_index": 1, "region": "sector1", "t2star_pred_ms": 90,
         "t2star_ref_ms": 10, "grade_pred": "normal", "grade_ref": "severe"},
        {"subject_id": "S2", "slice_index": 3, "region": "global", "t2star_pred_ms": 21,
         "t2star_ref_ms": 18, "grade_pred": "normal", "grade_ref": "mild"},
    ]  # fmt: skip
    run = read_run(_run_folder(tmp_path / "run", _slices(), t2star))
    summary = bench.t2star_summary(run)
    assert summary["n"] == 2
    assert summary["bias_ms"] == pytest.approx((1 + 3) / 2)  # sectors left out
    assert summary["same_grade"] == pytest.approx(0.5)
    assert np.isnan(bench.t2star_summary(read_run(_run_folder(tmp_path / "b", _slices())))["n"])


def test_cross_row_and_report(tmp_path: Path) -> None:
    own = read_run(_run_folder(tmp_path / "own", _slices()))
    other = read_run(_run_folder(tmp_path / "other", _slices(-0.1)))
    row = bench.cross_row("hard", "randomized", other, own)
    assert row["minus_in_domain"] == pytest.approx(-0.1)
    assert row["subjects"] == 2 and row["slices"] == 5
    skipped = {"family": "ellipsoid", "model": "randomized", "status": "skipped: no --anatomy"}
    few = [{"family": "ellipsoid", "k": "-", "arm": "-", "status": "skipped: no --anatomy"}]
    for scale, verdict in (("smoke", "not judged (smoke)"), ("cpu", "not met")):
        text = bench.render_report(scale, [row, skipped], few, 12.0)
        assert "| hard | randomized | 2 (5) |" in text
        assert "| ellipsoid | randomized | skipped: no --anatomy | | | | |\n" in text
        assert "| ellipsoid | randomized | skipped: no --anatomy | | | | | | | |\n" in text
        assert f"| hard | randomized | {verdict} |" in text  # 10 points below in-domain
        assert "fine-tune minus scratch >= 0.05: not measured" in text


def test_few_shot_split_keeps_validation_and_covers_every_subject(tmp_path: Path) -> None:
    subjects = [f"S{i:04d}" for i in range(1, 21)]
    source = make_subject_split(subjects, val_fraction=0.1, test_fraction=0.1, seed=2025)
    save_split(source, tmp_path / "split.json")
    bench.few_shot_split(tmp_path / "split.json", 3, tmp_path / "k3.json")
    split = load_split(tmp_path / "k3.json")
    assert split.train == source.train[:3]
    assert split.val == source.val
    assert split.all_subjects == frozenset(subjects)
    with pytest.raises(SystemExit, match="K = 99"):
        bench.few_shot_split(tmp_path / "split.json", 99, tmp_path / "k99.json")


def test_run_finished_reads_the_status(tmp_path: Path) -> None:
    assert not bench.run_finished(tmp_path / "absent")
    _run_folder(tmp_path / "running", _slices(), status="running")
    assert not bench.run_finished(tmp_path / "running")
    _run_folder(tmp_path / "done", _slices())
    assert bench.run_finished(tmp_path / "done")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    assert not bench.run_finished(tmp_path / "bad")


def test_steps_reuse_finished_work_and_stop_on_failure(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    marker = tmp_path / "made"

    def runner(command: list[str]) -> int:
        calls.append(command)
        if command[0] == "make":
            marker.touch()
        return 0

    steps = bench.Steps(tmp_path, runner)
    steps.run("first", "synth", ["make"], marker.exists)
    steps.run("again", "synth", ["make"], marker.exists)  # done: not run
    assert calls == [["make"]]
    with pytest.raises(SystemExit, match=r"forgets failed .* start the same command again"):
        steps.run("forgets", "train", ["noop"], lambda: False)  # exit 0 but nothing made
    with (tmp_path / "timings.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["step"], r["status"]) for r in rows] == [
        ("first", "ran"),
        ("again", "reused"),
        ("forgets", "failed"),
    ]
    later = bench.Steps(tmp_path, runner)  # a second invocation keeps the first one's rows
    later.run("third", "synth", ["make"], marker.exists)
    with (tmp_path / "timings.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["step"] for r in rows] == ["first", "again", "forgets", "third"]


@pytest.mark.slow
def test_smoke_scale_end_to_end_then_resumes(tmp_path: Path, capsys) -> None:
    """The whole chain at smoke scale (minutes), then again: every step reused."""
    argv = [str(tmp_path), "--scale", "smoke", "--threads", "1", "--few-shot-family", "clinical"]
    bench.main(argv)
    with (tmp_path / "cross_domain.csv").open() as handle:
        cross = list(csv.DictReader(handle))
    assert {r["family"] for r in cross} == {f.name for f in bench.FAMILIES}
    scored = [r for r in cross if r["status"] == "scored"]
    assert {r["family"] for r in scored} >= {"randomized", "clinical", "hard", "out_of_range"}
    for row in scored:
        assert 0.0 <= float(row["jaccard"]) <= 1.0
    with (tmp_path / "few_shot.csv").open() as handle:
        few = list(csv.DictReader(handle))
    assert [(r["k"], r["arm"]) for r in few] == [("3", "fine-tune"), ("3", "scratch")]
    assert "not judged (smoke)" in (tmp_path / "report.md").read_text()
    capsys.readouterr()
    bench.main(argv)
    assert "[run]" not in capsys.readouterr().out
    with (tmp_path / "timings.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    second = [r for r in rows if r["invocation"] == rows[-1]["invocation"]]
    assert len(second) < len(rows) and {r["status"] for r in second} == {"reused"}


def _recording_runner() -> tuple[list[list[str]], Callable[[list[str]], int]]:
    """A runner that records commands and makes what each would: files, finished run folders."""
    commands: list[list[str]] = []

    def runner(command: list[str]) -> int:
        commands.append(command)
        if command[0].endswith(("cmrseg-synth", "cmrseg-ensemble")):
            Path(command[1]).touch()
        else:
            run_dir = Path(next(c for c in command if c.startswith("hydra.run.dir="))[14:])
            run_dir.mkdir(parents=True)
            record = {"format": RUN_FORMAT, "version": RUN_VERSION, "status": "finished"}
            (run_dir / "run.json").write_text(json.dumps(record))
        return 0

    return commands, runner


def test_cpu_scale_trains_the_randomized_model_on_1000_subjects(tmp_path: Path) -> None:
    """Pre-registration 3: the randomized training file and length; other families unchanged."""
    commands, runner = _recording_runner()
    bench_run = bench.Benchmark(tmp_path, "cpu", 1, "ellipsoid", runner)
    families = {f.name: f for f in bench.FAMILIES}
    bench_run.randomized_models(families["randomized"])
    bench_run.train("in_domain_clinical", bench_run.cohort(families["clinical"], "train"))
    synth_randomized, randomized, _, _, synth_clinical, clinical = commands  # _: the pair
    assert synth_randomized[synth_randomized.index("--subjects") + 1] == "1000"
    assert synth_randomized[synth_randomized.index("--cohort") + 1] == "paper_x20"
    assert synth_clinical[synth_clinical.index("--subjects") + 1] == "51"
    assert "--cohort" not in synth_clinical
    assert randomized[-2:] == ["trainer.max_epochs=3", "trainer.check_val_every_n_epoch=1"]
    assert not any(c.startswith(("trainer.max_epochs", "trainer.check_val")) for c in clinical)


def test_the_pair_is_the_3_epoch_model_and_its_6_epoch_twin(tmp_path: Path) -> None:
    """Pre-registration 10: the second member's training and the ensemble's command."""
    commands, runner = _recording_runner()
    bench_run = bench.Benchmark(tmp_path, "cpu", 1, "ellipsoid", runner)
    randomized = next(f for f in bench.FAMILIES if f.name == bench.TRAIN_FAMILY)
    models = bench_run.randomized_models(randomized)
    first, pair = models[bench.TRAIN_FAMILY], models[bench.PAIR_MODEL]
    _, train_first, train_second, ensemble = commands  # the training file is synthesized once
    assert train_first[-2:] == ["trainer.max_epochs=3", "trainer.check_val_every_n_epoch=1"]
    assert train_second[-2:] == ["trainer.max_epochs=6", "trainer.check_val_every_n_epoch=3"]
    data = [c for c in train_first if c.startswith("data.path=")]
    assert data == [c for c in train_second if c.startswith("data.path=")]
    second = tmp_path / "train" / "randomized_long" / "checkpoints" / "last.ckpt"
    assert ensemble[1:] == [str(pair), str(first), str(second)]
    assert bench_run.randomized_models(randomized) == models and len(commands) == 4  # reused
    no_pair = bench.Benchmark(tmp_path / "b", "cpu", 1, "ellipsoid", runner)
    no_pair.scale = dataclasses.replace(no_pair.scale, pair_overrides=None)
    assert list(no_pair.randomized_models(randomized)) == [bench.TRAIN_FAMILY]


def test_an_interrupted_training_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    commands: list[list[str]] = []

    def runner(command: list[str]) -> int:
        commands.append(command)
        record = {"format": RUN_FORMAT, "version": RUN_VERSION, "status": "finished"}
        run_dir = Path(next(c for c in command if c.startswith("hydra.run.dir=")).split("=")[1])
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(json.dumps(record))
        return 0

    bench_run = bench.Benchmark(tmp_path, "smoke", 1, "clinical", runner)
    run_dir = tmp_path / "train" / "model"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"status": "running"}))
    (run_dir / "checkpoints" / "last.ckpt").touch()
    ckpt = bench_run.train("model", tmp_path / "data.h5", ["seed=1"])
    assert ckpt == run_dir / "checkpoints" / "last.ckpt"
    assert commands[0][-2:] == ["seed=1", "ckpt_path=last"]
    assert "experiment=randomized" in commands[0] and "test=false" in commands[0]
    bench_run.train("model", tmp_path / "data.h5", ["seed=1"])  # finished now: reused
    assert len(commands) == 1
    fresh = bench_run.train("other", tmp_path / "data.h5")  # nothing to resume from
    assert fresh.parent.parent.name == "other"
    assert "ckpt_path=last" not in commands[1]


def test_steps_side_by_side_run_at_once_and_report_every_failure(tmp_path: Path, capsys) -> None:
    made = [tmp_path / "a", tmp_path / "b"]
    python = sys.executable
    slow = "import time, pathlib, sys; time.sleep(1); pathlib.Path(sys.argv[1]).touch()"
    items = [
        ("make a", "synth", [python, "-c", slow, str(made[0])], made[0].exists),
        ("make b", "synth", [python, "-c", slow, str(made[1])], made[1].exists),
        ("reused", "synth", ["false"], lambda: True),  # done already: never started
        ("breaks", "eval", [python, "-c", "print('why it broke'); raise SystemExit(3)"], bool),
    ]
    steps = bench.Steps(tmp_path)
    with pytest.raises(SystemExit, match=r"breaks failed \(logs in .*logs\)"):
        steps.run_side_by_side(items, tmp_path / "logs")
    assert all(p.exists() for p in made)  # the others ran to their end
    assert "why it broke" in capsys.readouterr().out  # the end of the failed step's log
    assert (tmp_path / "logs" / "breaks.log").read_text().strip() == "why it broke"
    with (tmp_path / "timings.csv").open() as handle:
        rows = {r["step"]: r for r in csv.DictReader(handle)}
    assert {s: r["status"] for s, r in rows.items()} == {
        "make a": "ran",
        "make b": "ran",
        "reused": "reused",
        "breaks": "failed",
    }
    assert 1.0 <= float(rows["make a"]["seconds"]) < 1.0 + float(rows["make b"]["seconds"])
