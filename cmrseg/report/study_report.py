"""``cmrseg-report``'s output folder: Markdown, CSV and PNG of a study, and its W&B summary.

:func:`write_study_report` writes, into one folder and all at once
(:func:`cmrseg.core.atomic.atomic_dir`: a failure leaves no partial output):

- ``report.md``: the runs used and refused, Table 1, the domain-shift table, Table 2 and the
  figures, with how the numbers were pooled;
- ``runs.csv``: every run folder given, ``used``/``external``/``refused`` and why;
- ``table1.csv`` (one row per method and metric), ``table1_external.csv`` (the same per
  external cohort), ``table2_subjects.csv`` (one row per subject), ``table2_agreement.csv``
  (one row per method and comparison), ``table2_external_agreement.csv`` (the same per
  external cohort);
- ``bland_altman_<method>.png``, ``jaccard_boxplot.png``, ``figure2.png``.

The pictures of ``figure2.png`` need each method's masks of a few slices: the caller passes a
:data:`MaskSource` (``cmrseg-report`` re-runs inference from the run's checkpoint); without
one, or when a run's masks cannot be had, the figure shows what it has and the report says why.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cmrseg.core.atomic import atomic_dir
from cmrseg.core.errors import InputError
from cmrseg.data.echo_stack import EchoStackError, EchoStackFile, inspect_echo_stack
from cmrseg.data.splits import echo_stack_fingerprint
from cmrseg.report.figures import figure_png
from cmrseg.report.runs import Run, Selection
from cmrseg.report.study import (
    PAPER_NOTE,
    STUDY_METRICS,
    method_order,
    pool_slices,
    subject_t2star,
    table1,
    table2_agreement,
    table2_subjects,
)
from cmrseg.report.study_figures import (
    ContourPanel,
    box_figure,
    contour_figure,
    subject_bland_altman_figure,
)
from cmrseg.report.tables import csv_text
from cmrseg.stats import AGREEMENT_STATISTICS

__all__ = ["MaskSource", "cohort_file", "log_study_to_wandb", "write_study_report"]

log = logging.getLogger(__name__)

#: Predicted labels ``[H, W]`` of the given 0-based slices of a run's cohort file, by slice;
#: raises :class:`~cmrseg.core.errors.InputError` (the reason) when it cannot.
MaskSource = Callable[[Run, Sequence[int]], Mapping[int, np.ndarray]]

_TABLE1_COLUMNS = (
    "method",
    "metric",
    "label",
    "unit",
    "n_runs",
    "seeds",
    "folds",
    "n_subjects",
    "n_slices",
    "mean",
    "sd",
    "fold_min",
    "fold_max",
    "ci_low",
    "ci_high",
    "wilcoxon_n",
    "wilcoxon_p",
    "wilcoxon_p_holm",
    "paper_mean",
    "paper_sd",
)
_RUN_COLUMNS = ("path", "use", "method", "seed", "fold", "split", "cohort_file", "reason")


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: csv_text(row.get(c, "")) for c in columns} for row in rows)


def _num(value: float, fmt: str = ".2f") -> str:
    return f"{value:{fmt}}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def cohort_file(run: Run) -> Path | None:
    """The echo-stack file a run scored, if it can be found here.

    Tried in order: ``cohort.file`` of ``run.json`` as given (absolute, or relative to the
    current folder), relative to the run folder, and ``data.path`` of the run's
    ``.hydra/config.yaml``.
    """
    given = run.cohort["file"]
    candidates = [Path(given), run.path / given] if given else []
    config = run.path / ".hydra" / "config.yaml"
    try:
        data_path = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data", {})
        data_path = data_path.get("path") if isinstance(data_path, dict) else None
    except (OSError, yaml.YAMLError):
        data_path = None
    if data_path:
        candidates += [Path(data_path), run.path / data_path]
    return next((p for p in candidates if p.is_file()), None)


def _runs_rows(selection: Selection) -> list[dict[str, Any]]:
    def row(run: Run, use: str) -> dict[str, Any]:
        return {
            "path": str(run.path),
            "use": use,
            "method": run.method,
            "seed": "" if run.seed is None else run.seed,
            "fold": "" if run.fold is None else run.fold,
            "split": run.split,
            "cohort_file": run.cohort["file"],
            "reason": "",
        }

    rows = [row(r, "used") for r in selection.in_domain]
    rows += [row(r, "external") for r in selection.external]
    rows += [{"path": str(r.path), "use": "refused", "reason": r.reason} for r in selection.refused]
    return rows


def _table1_markdown(rows: Sequence[Mapping[str, Any]], proposed: str, *, paper: bool) -> list[str]:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["Mean (SD) over test slices" + ("; the paper's numbers beside." if paper else "."), ""]
    header = ["method", *[f"{label} ({unit})" for _, label, unit, _ in STUDY_METRICS]]
    body = []
    for method in methods:
        cells = [method]
        for metric, *_ in STUDY_METRICS:
            r = next(x for x in rows if x["method"] == method and x["metric"] == metric)
            cell = f"{_num(r['mean'])} ({_num(r['sd'])})"
            if math.isfinite(r["paper_mean"]):
                cell += f"; paper {_num(r['paper_mean'], '.0f')} ({_num(r['paper_sd'], '.0f')})"
            cells.append(cell)
        body.append(cells)
    lines += _md_table(header, body)
    lines += ["", f"Note: {PAPER_NOTE}.", ""] if paper else [""]
    for metric, label, unit, _ in STUDY_METRICS:
        lines += [f"**{label} ({unit})**", ""]
        body = []
        for method in methods:
            r = next(x for x in rows if x["method"] == method and x["metric"] == metric)
            test = (
                "reference"
                if method == proposed
                else f"{_p(r['wilcoxon_p_holm'])} ({_p(r['wilcoxon_p'])}, n={r['wilcoxon_n']})"
            )
            body.append(
                [
                    method,
                    f"{r['n_runs']} ({r['folds']} x {r['seeds']})",
                    f"{r['n_subjects']} / {r['n_slices']}",
                    f"{_num(r['mean'])} ({_num(r['sd'])})",
                    f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
                    f"{_num(r['fold_min'])}..{_num(r['fold_max'])}",
                    test,
                ]
            )
        header = [
            "method",
            "runs (folds x seeds)",
            "subjects / slices",
            "mean (SD)",
            "95% CI (subjects)",
            "fold means",
            f"p vs {proposed}, Holm (raw, pairs)",
        ]
        lines += [*_md_table(header, body), ""]
    return lines


def _agreement_markdown(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    def ci(r: Mapping[str, Any], name: str, fmt: str) -> str:
        low, high = _num(r[f"{name}_ci_low"], fmt), _num(r[f"{name}_ci_high"], fmt)
        return f"{_num(r[name], fmt)} [{low}, {high}]"

    header = [
        "method",
        "against",
        "subjects",
        "bias (ms)",
        "95% LoA (ms)",
        "bias (%)",
        "95% LoA (%)",
        "ICC(2,1)",
        "kappa",
        "kappa, linear weights",
    ]
    body = [
        [
            r["method"],
            r["against"],
            str(r["n"]),
            ci(r, "bias", "+.2f"),
            f"{ci(r, 'loa_low', '+.2f')} .. {ci(r, 'loa_high', '+.2f')}",
            ci(r, "bias_pct", "+.1f"),
            f"{ci(r, 'loa_low_pct', '+.1f')} .. {ci(r, 'loa_high_pct', '+.1f')}",
            ci(r, "icc", ".3f"),
            ci(r, "kappa", ".2f"),
            ci(r, "kappa_linear", ".2f"),
        ]
        for r in rows
    ]
    return _md_table(header, body)


def _figure2_panels(
    selection: Selection, proposed: str, masks: MaskSource | None, notes: list[str]
) -> tuple[list[ContourPanel], list[str]]:
    """The best, median and worst slice by the proposed method's Jaccard, with every mask."""
    runs = selection.in_domain
    methods = method_order(runs, proposed)
    ranking = [
        s
        for s in pool_slices([r for r in runs if r.method == methods[0]])
        if math.isfinite(s["jaccard"])
    ]
    if not ranking:
        notes.append("Figure 2 analog skipped: no slice with a Jaccard value.")
        return [], methods
    ranking.sort(key=lambda s: s["jaccard"])
    picks = {"best": ranking[-1], "median": ranking[len(ranking) // 2], "worst": ranking[0]}
    source = cohort_file(runs[0])
    if source is None:
        notes.append(
            f"Figure 2 analog skipped: cohort file {runs[0].cohort['file']!r} not found here."
        )
        return [], methods
    try:
        if echo_stack_fingerprint(inspect_echo_stack(source)) != selection.cohort["fingerprint"]:
            notes.append(
                f"Figure 2 analog skipped: {source} is not the study's cohort "
                "(fingerprint differs)."
            )
            return [], methods
    except (EchoStackError, OSError) as err:
        notes.append(f"Figure 2 analog skipped: {source}: {err}")
        return [], methods
    wanted = {(s["subject_id"], s["slice_index"]) for s in picks.values()}
    found: dict[tuple[str, int], dict[str, np.ndarray | None]] = {key: {} for key in wanted}
    for method in methods:
        by_run: dict[Path, tuple[Run, list[int]]] = {}
        for key in wanted:
            run = next(
                (
                    r
                    for r in runs
                    if r.method == method
                    and any((s["subject_id"], s["slice_index"]) == key for s in r.slices)
                ),
                None,
            )
            if run is not None:
                by_run.setdefault(run.path, (run, []))[1].append(key[1])
        for run, indices in by_run.values():
            if masks is None:
                continue
            try:
                labels = masks(run, sorted(indices))
            except InputError as err:
                notes.append(f"Figure 2 analog: no {method} masks from {run.path}: {err}")
                continue
            for key in wanted:
                if key[1] in labels and key[1] in indices:
                    found[key][method] = labels[key[1]]
    if masks is None:
        notes.append(
            "Figure 2 analog: drawn without method masks (re-running inference was turned off)."
        )
    panels = []
    stack = EchoStackFile(source)
    try:
        for name, s in picks.items():
            key = (s["subject_id"], s["slice_index"])
            panels.append(
                ContourPanel(
                    title=f"{name}: {key[0]} slice {key[1]} ({s['slice_location']}), "
                    f"{methods[0]} Jaccard {100 * s['jaccard']:.1f}%",
                    image=stack.read("images", key[1])[0],
                    reference=stack.read("labels", key[1]),
                    masks={m: found[key].get(m) for m in methods},
                )
            )
    finally:
        stack.close()
    return panels, methods


def write_study_report(
    out_dir: str | os.PathLike[str],
    selection: Selection,
    *,
    proposed: str,
    n_boot: int,
    seed: int,
    masks: MaskSource | None,
) -> dict[str, Any]:
    """Write the study's tables, figures and ``report.md`` into ``out_dir`` (atomically).

    Args:
        out_dir: Output folder (created; the files of an earlier report there are replaced
            together, and its tables and figures that this report does not have are removed).
        selection: The runs (:func:`cmrseg.report.runs.select_runs`); needs in-domain runs.
        proposed: The method the others are tested against.
        n_boot: Bootstrap replicates of every interval.
        seed: Seed of the bootstrap.
        masks: Where Figure 2 gets each method's masks; ``None``: reference contours only.

    Returns:
        The summary (tables as rows, notes, PNG bytes by file name) that
        :func:`log_study_to_wandb` logs.
    """
    if not selection.in_domain:
        raise ValueError("no in-domain run to report")
    runs = selection.in_domain
    notes: list[str] = []
    t1 = table1(runs, proposed=proposed, n_boot=n_boot, seed=seed)
    external: list[dict[str, Any]] = []
    for cohort, group in _by_cohort(selection.external):
        external += [
            {"cohort": cohort, **row}
            for row in table1(group, proposed=proposed, n_boot=n_boot, seed=seed, paper=False)
        ]
    reference, per_method = subject_t2star(runs, proposed)
    subjects = table2_subjects(reference, per_method)
    agreement = table2_agreement(subjects, list(per_method), n_boot=n_boot, seed=seed)
    external_agreement = _external_agreement(selection, proposed, n_boot, seed)
    if not per_method:
        notes.append("Table 2 skipped: no used run has t2star/test_table.csv.")

    pngs: dict[str, bytes] = {}
    for method in per_method:
        comparisons = {"reference": np.array([s["t2star_ref_ms"] for s in subjects], dtype=float)}
        truth = np.array([s["t2star_true_ms"] for s in subjects], dtype=float)
        if np.isfinite(truth).any():
            comparisons["true"] = truth
        pred = np.array([s[f"t2star_{method}_ms"] for s in subjects], dtype=float)
        pngs[f"bland_altman_{method}.png"] = figure_png(
            subject_bland_altman_figure(pred, comparisons, f"{method}: global T2* per subject")
        )
    groups: dict[str, list[float]] = {}
    for method in method_order(runs, proposed):
        groups[method] = [
            100 * s["jaccard"] for s in pool_slices([r for r in runs if r.method == method])
        ]
    for method in method_order(selection.external, proposed):
        mine = [r for r in selection.external if r.method == method]
        for cohort, group in _by_cohort(mine):
            groups[f"{method} @ {cohort}"] = [100 * s["jaccard"] for s in pool_slices(group)]
    pngs["jaccard_boxplot.png"] = figure_png(
        box_figure(groups, "Jaccard (%)", "Per-slice Jaccard (seeds averaged per slice)")
    )
    panels, methods = _figure2_panels(selection, proposed, masks, notes)
    if panels:
        pngs["figure2.png"] = figure_png(contour_figure(panels, methods))

    run_rows = _runs_rows(selection)
    lines = _report_markdown(
        selection,
        proposed,
        n_boot,
        seed,
        t1,
        external,
        external_agreement,
        subjects,
        per_method,
        agreement,
        pngs,
        notes,
    )
    with atomic_dir(out_dir) as tmp:
        _write_csv(tmp / "runs.csv", _RUN_COLUMNS, run_rows)
        _write_csv(tmp / "table1.csv", _TABLE1_COLUMNS, t1)
        if external:
            _write_csv(tmp / "table1_external.csv", ("cohort", *_TABLE1_COLUMNS), external)
        if subjects:
            _write_csv(tmp / "table2_subjects.csv", list(subjects[0]), subjects)
        columns = ["method", "against", "n"] + [
            f"{n}{e}" for n in AGREEMENT_STATISTICS for e in ("", "_ci_low", "_ci_high")
        ]
        if agreement:
            _write_csv(tmp / "table2_agreement.csv", columns, agreement)
        if external_agreement:
            _write_csv(
                tmp / "table2_external_agreement.csv", ["cohort", *columns], external_agreement
            )
        for name, png in pngs.items():
            (tmp / name).write_bytes(png)
        (tmp / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        written = {p.name for p in tmp.iterdir()}
    # a report written into the folder of an earlier one: drop the earlier one's files that
    # this one does not have (e.g. a figure it could not draw now), so none is stale
    for stale in (*Path(out_dir).glob("*.png"), *Path(out_dir).glob("table*.csv")):
        if stale.name not in written:
            stale.unlink()
    return {
        "runs": run_rows,
        "table1": t1,
        "table1_external": external,
        "table2_subjects": subjects,
        "table2_agreement": agreement,
        "table2_external_agreement": external_agreement,
        "notes": notes,
        "pngs": pngs,
    }


def _by_cohort(runs: Sequence[Run]) -> list[tuple[str, list[Run]]]:
    """The runs grouped by scored cohort, in order of first appearance.

    Returns:
        ``(name, runs)`` pairs; the name is the cohort's file name, else its fingerprint's start.
    """
    out = []
    for fingerprint in dict.fromkeys(r.cohort["fingerprint"] for r in runs):
        group = [r for r in runs if r.cohort["fingerprint"] == fingerprint]
        out.append((group[0].cohort["file"] or fingerprint[:12], group))
    return out


def _external_agreement(
    selection: Selection, proposed: str, n_boot: int, seed: int
) -> list[dict[str, Any]]:
    """Table 2's agreement for each external cohort: its runs' global T2* per subject.

    Returns:
        Rows of :func:`~cmrseg.report.study.table2_agreement` with a leading ``cohort`` (the
        file name, else the fingerprint's start); none for runs without a T2* table.
    """
    out: list[dict[str, Any]] = []
    for cohort, group in _by_cohort(selection.external):
        reference, per_method = subject_t2star(group, proposed)
        subjects = table2_subjects(reference, per_method)
        out += [
            {"cohort": cohort, **row}
            for row in table2_agreement(subjects, list(per_method), n_boot=n_boot, seed=seed)
        ]
    return out


def _report_markdown(
    selection: Selection,
    proposed: str,
    n_boot: int,
    seed: int,
    t1: Sequence[Mapping[str, Any]],
    external: Sequence[Mapping[str, Any]],
    external_agreement: Sequence[Mapping[str, Any]],
    subjects: Sequence[Mapping[str, Any]],
    per_method: Mapping[str, Any],
    agreement: Sequence[Mapping[str, Any]],
    pngs: Mapping[str, bytes],
    notes: Sequence[str],
) -> list[str]:
    cohort = selection.cohort
    lines = [
        "# Study report (cmrseg-report)",
        "",
        f"Cohort: `{cohort['file']}` (fingerprint `{cohort['fingerprint'][:12]}`). "
        f"{len(selection.in_domain)} runs used, {len(selection.external)} external "
        f"(domain shift), {len(selection.refused)} refused (`runs.csv`).",
        "",
        "How the numbers are pooled: each method's slices are averaged over its runs (seeds) "
        "first, then pooled over folds; mean (SD) is over those slices. Fold means give the "
        "per-fold spread. 95% confidence intervals are percentile bootstraps over subjects "
        f"(whole subjects resampled, {n_boot} replicates, seed {seed}). The paired test is the "
        f"Wilcoxon signed-rank test of per-subject means against `{proposed}` on the subjects "
        "both methods scored, Holm-corrected over the methods of each metric. Table 2: a "
        "subject's T2* is the mean over its slices (and seeds) of the global region, its grade "
        "the median grade of those slices (the severer of two middle ones).",
        "",
        "## Runs",
        "",
    ]
    used = [
        [
            str(r.path),
            r.method,
            "-" if r.seed is None else str(r.seed),
            "-" if r.fold is None else str(r.fold),
            "external" if r.external else "used",
        ]
        for r in [*selection.in_domain, *selection.external]
    ]
    lines += [*_md_table(["run", "method", "seed", "fold", "use"], used), ""]
    if selection.refused:
        lines += ["Refused:", ""]
        lines += _md_table(["run", "reason"], [[str(r.path), r.reason] for r in selection.refused])
        lines.append("")
    lines += [
        "## Table 1 analog: overlap of the myocardium",
        "",
        *_table1_markdown(t1, proposed, paper=True),
    ]
    if external:
        lines += ["## Domain shift: models scored on another cohort", ""]
        for name in dict.fromkeys(r["cohort"] for r in external):
            lines += [f"### `{name}`", ""]
            lines += _table1_markdown(
                [r for r in external if r["cohort"] == name], proposed, paper=False
            )
            mine = [r for r in external_agreement if r["cohort"] == name]
            if mine:
                lines += ["Global T2* per subject on this cohort (as in Table 2):", ""]
                lines += [*_agreement_markdown(mine), ""]
    lines += ["## Table 2 analog: global T2* per subject", ""]
    if subjects:
        header = ["subject", "reference (ms)", "grade", "true (ms)", "grade"]
        for method in per_method:
            header += [f"{method} (ms)", "grade"]
        body = []
        for s in subjects:
            cells = [
                s["subject_id"],
                _num(s["t2star_ref_ms"], ".1f"),
                s["grade_ref"],
                _num(s["t2star_true_ms"], ".1f"),
                s["grade_true"],
            ]
            for method in per_method:
                cells += [_num(s[f"t2star_{method}_ms"], ".1f"), s[f"grade_{method}"]]
            body.append(cells)
        lines += [*_md_table(header, body), ""]
        lines += [
            "Agreement over subjects (value [95% bootstrap CI]); bias = method - reference or "
            "truth; ICC(2,1): two-way random, absolute agreement; kappa of the grades "
            "(normal, mild, moderate, severe), plain and linearly weighted.",
            "",
        ]
        lines += [*_agreement_markdown(agreement), ""]
    lines += ["## Figures", ""]
    lines += [f"![{name}]({name})" for name in pngs] + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return lines


def log_study_to_wandb(
    summary: Mapping[str, Any], out_dir: str | os.PathLike[str], mode: str
) -> None:
    """Log the study's tables and figures to W&B (``mode`` unless ``WANDB_MODE`` is set).

    Never raises: a failure is a warning (W&B must not stop a report).
    """
    mode = os.environ.get("WANDB_MODE") or mode
    if mode == "disabled":
        return
    try:
        import io

        import wandb
        from PIL import Image

        run = wandb.init(project="cmrseg", job_type="report", dir=str(out_dir), mode=mode)
        try:
            payload: dict[str, Any] = {}
            for key in (
                "runs",
                "table1",
                "table1_external",
                "table2_subjects",
                "table2_agreement",
                "table2_external_agreement",
            ):
                rows = summary.get(key) or []
                if rows:
                    columns = list(rows[0])
                    data = [[csv_text(r.get(c, "")) for c in columns] for r in rows]
                    payload[f"report/{key}"] = wandb.Table(columns=columns, data=data)
            for name, png in summary.get("pngs", {}).items():
                payload[f"report/{name.removesuffix('.png')}"] = wandb.Image(
                    Image.open(io.BytesIO(png))
                )
            run.log(payload)
        finally:
            run.finish()
    except Exception as err:  # anything W&B raises is logged, never fatal
        log.warning("study report not logged to W&B: %s: %s", type(err).__name__, err)
