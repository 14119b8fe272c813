"""Cross-domain benchmark at GPU scale (issue 16, pre-registration 11): one randomized model.

Pre-registered on 2026-11-30, before the run (benchmarks/README.md, "Pre-registration 11",
is the reference if the two ever differ). Made for one lent GPU machine (16 cores), where
``bench_cross_domain.py --scale full`` (in-domain models, pair and few-shot arms, one after the
other) does not fit the device time:

- Training file: ``--subjects`` (2000) subjects of ``--cohort paper_x40``, randomized preset,
  seed 0 (``cmrseg-synth --jobs``); recipe ``experiment=randomized`` trained ``--epochs`` (6) on
  the GPU (``trainer=gpu``, bf16 mixed precision), validated after the last epoch only, training
  seed 12345, last checkpoint. ``--max-minutes`` caps the training (``trainer.max_time``); a
  capped training is reported as such, with its steps, and is not the recipe.
- Test files: ``bench_cross_domain.py``'s five families, the same commands and seeds (200-204),
  synthesized side by side with the training file.
- Scores: ``cmrseg-eval ... split=all`` on every test file, side by side; mean per-slice
  Jaccard, share of slices below 0.5, apex mean (95% bootstrap intervals over subjects); T2* on
  predicted against reference masks per subject (bias, kappa, same grade), as
  ``bench_cross_domain.py`` computes them.
- Targets (issue 16) on each held-out family: mean Jaccard within 3 points of the in-domain score
  given as ``--in-domain FAMILY=JACCARD`` (unpaired: the in-domain models of
  ``bench_cross_domain.py`` are not trained here), no slice below 0.5, apex >= 0.85, T2* bias
  within 0.5 ms, same grade >= 95%.

Started again with the same output folder it reuses the files and every run that finished. Writes
``cross_domain_gpu.csv``, ``timings.csv`` and ``report.md`` (atomically) into the output folder.

    python benchmarks/bench_cross_domain_gpu.py OUT [--subjects 2000] [--epochs 6] [--jobs 14]
        [--workers 12] [--max-minutes M] [--in-domain clinical=0.913 ...] [--trainer gpu]
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench_cross_domain import (
    CROSS_COLUMNS,
    FAMILIES,
    TRAIN_FAMILY,
    Family,
    Steps,
    _cli,
    _fmt,
    _interval,
    _judge,
    _number,
    cross_row,
    eval_command,
    run_finished,
    synth_options,
    target_checks,
    train_command,
    write_csv,
)

from cmrseg.core.atomic import atomic_path
from cmrseg.report.runs import read_run

MODEL = "randomized_gpu"
COLUMNS = (*CROSS_COLUMNS, "in_domain_jaccard", "training_steps")


def parse_in_domain(items: Sequence[str]) -> dict[str, float]:
    """``FAMILY=JACCARD`` pairs as a dict (a fraction in [0, 1] each).

    Raises:
        SystemExit: A pair is malformed or names no held-out family.
    """
    held_out = {f.name for f in FAMILIES if f.name != TRAIN_FAMILY}
    result = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if name not in held_out or not 0.0 <= number <= 1.0:
            raise SystemExit(
                f"--in-domain {item}: expected FAMILY=JACCARD with FAMILY one of "
                f"{', '.join(sorted(held_out))} and JACCARD a fraction in [0, 1]"
            )
        result[name] = number
    return result


def training_steps(run_dir: Path) -> int | None:
    """The last optimizer step logged in ``run_dir``'s CSV metrics (``None`` without any)."""
    steps = [
        int(row["step"])
        for path in run_dir.glob("csv/**/metrics.csv")
        for row in csv.DictReader(path.read_text(encoding="utf-8").splitlines())
        if row.get("step", "").isdigit()
    ]
    return max(steps) + 1 if steps else None


class GpuBenchmark:
    """The commands and results of one output folder."""

    def __init__(self, out: Path, args: argparse.Namespace) -> None:
        self.out = out
        self.args = args
        self.steps = Steps(out)
        self.logs = out / "logs"

    def cohort_step(
        self, family: Family, part: str
    ) -> tuple[Path, tuple[str, str, list[str], Any]]:
        """Path and side-by-side item of a family's training or test file."""
        path = self.out / "cohorts" / f"{family.name}_{part}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        command = [_cli("cmrseg-synth"), str(path), "--no-progress", *family.synth_args]
        if part == "train":
            command += ["--subjects", str(self.args.subjects), "--cohort", "paper_x40"]
            command += ["--seed", str(family.train_seed), "--jobs", str(self.args.jobs)]
        else:
            command += ["--subjects", str(self.args.test_subjects), "--seed", str(family.test_seed)]
        return path, (f"synthesize {family.name} {part}", "synth", command, path.exists)

    def train(self, data: Path) -> Path:
        """Train (or reuse) the randomized model; return its last checkpoint."""
        run_dir = self.out / "train" / MODEL
        epochs = self.args.epochs
        overrides = [
            f"trainer={self.args.trainer}",
            f"data.num_workers={self.args.workers}",
            f"trainer.max_epochs={epochs}",
            f"trainer.check_val_every_n_epoch={epochs}",
            f"seed={self.args.seed}",
        ]
        if self.args.max_minutes is not None:
            minutes = self.args.max_minutes
            overrides.append(f"+trainer.max_time=00:{minutes // 60:02d}:{minutes % 60:02d}:00")
        command = train_command(data, run_dir, overrides)
        self.steps.run(f"train {MODEL}", "train", command, lambda: run_finished(run_dir))
        return run_dir / "checkpoints" / "last.ckpt"

    def eval_dir(self, family: str) -> Path:
        """Run folder of the evaluation on ``family``'s test file."""
        return self.out / "eval" / f"{MODEL}_on_{family}"

    def eval_step(self, family: str, ckpt: Path, data: Path) -> tuple[str, str, list[str], Any]:
        """Side-by-side item of the evaluation of ``ckpt`` on ``data``."""
        run_dir = self.eval_dir(family)
        overrides = (
            f"trainer={self.args.trainer}",
            f"extras.torch_num_threads={self.args.eval_threads}",
        )
        command = eval_command(ckpt, data, run_dir, overrides)
        return f"evaluate {MODEL} on {family}", "eval", command, lambda: run_finished(run_dir)

    def run(self, in_domain: Mapping[str, float]) -> list[dict[str, Any]]:
        """Every step; returns the rows of ``cross_domain_gpu.csv``."""
        known = synth_options(_cli("cmrseg-synth"))
        families = [f for f in FAMILIES if not f.missing_options(known)]
        for family in FAMILIES:
            if family not in families:
                print(f"[skip] family {family.name}: cmrseg-synth lacks its options", flush=True)
        train, train_item = self.cohort_step(FAMILIES[0], "train")
        tests = {f.name: self.cohort_step(f, "test") for f in families}
        self.steps.run_side_by_side([train_item, *(item for _, item in tests.values())], self.logs)
        ckpt = self.train(train)
        steps = training_steps(ckpt.parents[1])
        evals = [self.eval_step(name, ckpt, path) for name, (path, _) in tests.items()]
        self.steps.run_side_by_side(evals, self.logs)
        rows = []
        for name in tests:
            row = cross_row(name, MODEL, read_run(self.eval_dir(name)), None)
            own = in_domain.get(name, math.nan)
            row |= {"in_domain_jaccard": own, "training_steps": steps}
            row["minus_in_domain"] = float(row["jaccard"]) - own
            rows.append(row)
        return rows


def render(rows: Sequence[Mapping[str, Any]], args: argparse.Namespace, wall_s: float) -> str:
    """The Markdown report: scores per family and the targets."""
    steps = rows[0]["training_steps"] if rows else None
    lines = [
        f"# Cross-domain benchmark at GPU scale ({MODEL})",
        "",
        f"{args.subjects} randomized subjects (paper_x40, seed 0), {args.epochs} epochs, "
        f"training seed {args.seed} (trainer={args.trainer}; {steps} optimizer steps logged"
        + (f"; cap {args.max_minutes} min" if args.max_minutes is not None else "")
        + f"). Wall time of this invocation: {wall_s:.0f} s (each step: timings.csv). "
        "Intervals: 95% bootstrap over subjects. In-domain: given (--in-domain), unpaired.",
        "",
        "| family | subjects (slices) | Jaccard | slices < 0.5 | apex Jaccard | in-domain | "
        "minus in-domain | T2* bias, ms (subjects) | kappa | same grade |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['subjects']} ({r['slices']}) | "
            f"{_fmt(_interval(r, 'jaccard', 'jaccard'))} | "
            f"{_fmt(_interval(r, 'below_0_5', 'below_0_5'), 100, 0)}% | "
            f"{_fmt(_interval(r, 'apex_jaccard', 'apex'))} | "
            f"{_number(r['in_domain_jaccard'], '.3f')} | "
            f"{_number(r['minus_in_domain'], '+.3f')} | "
            f"{_fmt(_interval(r, 't2star_bias_ms', 't2star_bias'), 1, 2)} "
            f"({_number(r['t2star_subjects'], '.0f')}) | "
            f"{_number(r['grade_kappa'], '.2f')} | {_number(r['same_grade'], '.0%')} |"
        )
    lines += [
        "",
        "| family | within 3 points | no slice < 0.5 | apex >= 0.85 | T2* bias | grades |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["family"] == TRAIN_FAMILY:
            continue
        judged = " | ".join(_judge(c, smoke=False) for c in target_checks(r))
        lines.append(f"| {r['family']} | {judged} |")
    return "\n".join([*lines, ""])


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and write its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (started again: resumes)")
    parser.add_argument("--subjects", type=int, default=2000, help="training subjects (2000)")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs (6)")
    parser.add_argument(
        "--test-subjects",
        type=int,
        default=20,
        help="subjects per test file (20, as pre-registered)",
    )
    parser.add_argument("--seed", type=int, default=12345, help="training seed (12345)")
    parser.add_argument("--jobs", type=int, default=14, help="synthesis processes (14)")
    parser.add_argument("--workers", type=int, default=12, help="training loader workers (12)")
    parser.add_argument("--eval-threads", type=int, default=2, help="torch threads per eval (2)")
    parser.add_argument("--max-minutes", type=int, default=None, help="cap the training")
    parser.add_argument("--trainer", default="gpu", help="trainer config (gpu; cpu to smoke)")
    parser.add_argument("--in-domain", nargs="*", default=[], metavar="FAMILY=JACCARD")
    args = parser.parse_args(argv)
    in_domain = parse_in_domain(args.in_domain)
    start = time.perf_counter()
    rows = GpuBenchmark(args.out, args).run(in_domain)
    write_csv(args.out / "cross_domain_gpu.csv", rows, COLUMNS)
    report = render(rows, args, time.perf_counter() - start)
    with atomic_path(args.out / "report.md") as tmp:
        tmp.write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
