"""The per-patient report of cmrseg-predict: panel content against t2star.csv, no identifiers."""

from __future__ import annotations

import base64
import csv
import html
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ring_phantom
from PIL import Image
from test_eval_predict import _predict_cfg

import cmrseg.t2star.quantify as quantify_module
from cmrseg import __version__
from cmrseg.cli.predict import predict
from cmrseg.core.atomic import atomic_dir
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.data.echo_stack import EchoStack, read_echo_stack, write_echo_stack
from cmrseg.report.patient import (
    APEX_SEGMENT_SECTORS,
    patient_figure,
    patient_report,
    write_patient_reports,
)
from cmrseg.t2star import (
    core_erosion_px,
    load_t2star_config,
    quantify_stack,
    t2star_map,
    wall_core_mask,
    write_t2star_csv,
)

SIGMA = 30.0  # noise SD of ring_phantom (0.03 x 1000)
FIELDS_T = (1.5, 3.0, math.nan)  # per subject
METHOD = "UNet (checkpoint last.ckpt); T2*: median_pixel of the core wall"


def _three_slice_cohort() -> EchoStack:
    """3 subjects x base/mid/apex rings of 96 x 96 px, 8 echoes, labels as predictions."""
    rings = ring_phantom(5, seed=21, size=96, n_echoes=8)
    n = 9
    return EchoStack(
        images=rings.images[:n],
        te_ms=rings.te_ms[:n],
        subject_id=[f"S{1 + i // 3:03d}" for i in range(n)],
        slice_location=["base", "mid", "apex"] * 3,
        pixel_spacing_mm=rings.pixel_spacing_mm[:n],
        rv_insertion=rings.rv_insertion[:n],
        labels_pred=rings.labels[:n],
        field_strength_t=np.repeat(np.array(FIELDS_T, np.float32), 3),
    )


def _quantified(stack: EchoStack, config) -> list[dict[str, str]]:
    """The ``t2star.csv`` rows of ``stack`` as cmrseg-predict computes them; fills its map."""
    stack.t2star_map_ms = np.empty(stack.labels_pred.shape, np.float32)
    return quantify_stack(
        stack.images,
        stack.te_ms,
        stack.labels_pred,
        stack.subject_id,
        stack.slice_location,
        config=config,
        rv_insertion=stack.rv_insertion,
        phase_encoding_axis=stack.phase_encoding_axis,
        pixel_spacing_mm=stack.pixel_spacing_mm,
        field_strength_t=stack.field_strength_t,
        progress=False,
        t2star_maps=stack.t2star_map_ms,
    )


@pytest.fixture(scope="module")
def config():
    """Default T2* settings with the phantom's known noise (one channel)."""
    return load_t2star_config(None, [f"noise_sigma={SIGMA}", "fit.n_coils=1"])


@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory, config) -> tuple[Path, EchoStack, list]:
    """A predictions.h5 + t2star.csv pair as cmrseg-predict writes it, read back, and a report."""
    folder = tmp_path_factory.mktemp("predicted")
    stack = _three_slice_cohort()
    rows = _quantified(stack, config)
    write_echo_stack(folder / "predictions.h5", stack)
    write_t2star_csv(folder / "t2star.csv", rows)
    stack = read_echo_stack(folder / "predictions.h5")
    with open(folder / "t2star.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    write_patient_reports(
        folder / "report", stack, rows, config, method=METHOD, version=__version__
    )
    return folder, stack, rows


def _row(rows: list[dict[str, str]], slice_index: int, region: str) -> dict[str, str]:
    return next(r for r in rows if int(r["slice_index"]) == slice_index and r["region"] == region)


def _expected_segments(rows: list[dict[str, str]], first_slice: int) -> dict[int, dict[str, str]]:
    """The CSV row each AHA segment shows: base/mid sectors as numbered, apex by the mapping."""
    expected = {}
    for number in range(1, 17):
        if number <= 12:
            slice_index = first_slice + (number - 1) // 6
            expected[number] = _row(rows, slice_index, f"sector{(number - 1) % 6 + 1}")
        else:
            pair = [_row(rows, first_slice + 2, r) for r in APEX_SEGMENT_SECTORS[number]]
            with_value = [r for r in pair if r["t2star_ms"]]
            expected[number] = min(with_value, key=lambda r: float(r["t2star_ms"]))
    return expected


def _html_table(page: str, first_header: str) -> list[list[str]]:
    """The body cells of the HTML table whose first header is ``first_header``."""
    start = page.index(f"<table><tr><th>{first_header}</th>")
    table = page[start : page.index("</table>", start)]
    return [
        [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", line)]
        for line in table.splitlines()[1:]
    ]


def test_bullseye_values_drawn_and_written_equal_the_csv(predicted, config) -> None:
    folder, stack, rows = predicted
    for subject, first in (("S001", 0), ("S002", 3), ("S003", 6)):
        expected = _expected_segments(rows, first)
        assert sum(r["status"] == "ok" for r in expected.values()) == 16  # real values
        report = patient_report(stack, rows, subject, config, method=METHOD, version=__version__)
        for segment in report.bullseye:
            row = expected[segment.segment]
            assert segment.source == row["region"]
            assert segment.slice_index == int(row["slice_index"])
            assert segment.value.t2star_ms == float(row["t2star_ms"])
            assert segment.grade == row["grade"]
        # the numbers drawn in the bull's-eye axes
        bullseye_axes = patient_figure(report).axes[0]
        drawn = dict(t.get_text().split("\n") for t in bullseye_axes.texts if "\n" in t.get_text())
        assert drawn == {str(n): f"{float(row['t2star_ms']):.1f}" for n, row in expected.items()}
        # and the segment table of the page
        page = (folder / "report" / f"{subject}.html").read_text(encoding="utf-8")
        table = _html_table(page, "AHA segment")
        assert [(int(c[0]), c[3], c[4], c[5]) for c in table] == [
            (n, row["region"], f"{float(row['t2star_ms']):.1f}", row["grade"])
            for n, row in sorted(expected.items())
        ]


def test_apex_segments_take_the_lower_of_two_sectors(predicted, config) -> None:
    _, stack, rows = predicted
    report = patient_report(stack, rows, "S001", config, method=METHOD, version=__version__)
    apex = {s.segment: s for s in report.bullseye if s.segment > 12}
    values = {f"sector{k}": float(_row(rows, 2, f"sector{k}")["t2star_ms"]) for k in range(1, 7)}
    assert apex[13].value.t2star_ms == values["sector1"]
    assert apex[14].value.t2star_ms == min(values["sector2"], values["sector3"])
    assert apex[15].value.t2star_ms == values["sector4"]
    assert apex[16].value.t2star_ms == min(values["sector5"], values["sector6"])


def _grade_15t(t2star_ms: float) -> str:
    return (
        "normal"
        if t2star_ms >= 20
        else "mild"
        if t2star_ms >= 14
        else "moderate"
        if t2star_ms >= 10
        else "severe"
    )


def test_global_t2star_grade_and_iron_follow_the_csv_and_carpenter(predicted) -> None:
    folder, _, rows = predicted
    for subject, first, field in (("S001", 0, 1.5), ("S002", 3, 3.0), ("S003", 6, math.nan)):
        page = (folder / "report" / f"{subject}.html").read_text(encoding="utf-8")
        table = _html_table(page, "slice")
        assert [int(c[0]) for c in table] == [first, first + 1, first + 2]
        for cells in table:
            row = _row(rows, int(cells[0]), "global")
            t2star = float(row["t2star_ms"])
            _, _, value, ci, grade, iron, status, qc, reasons = cells
            assert value == f"{t2star:.1f}"
            low, high = float(row["t2star_ci_low_ms"]), float(row["t2star_ci_high_ms"])
            assert ci == f"{low:.1f} - {high:.1f}"
            assert status == row["status"] == "ok"
            assert qc == row["qc"]
            assert reasons == ("; ".join(row["qc_reasons"].split(";")) or "-")
            assert grade == row["grade"]
            if field == 3.0:  # 3 T cut-offs; the iron calibration is for 1.5 T only
                assert iron == "-"
                assert "iron not estimated" in page
            else:
                assert grade == _grade_15t(t2star)
                # Carpenter et al., Circulation 2011: [Fe] = 45.0 x (T2*)^-1.22 mg/g dry weight
                assert iron == f"{45.0 * t2star**-1.22:.2f}"
        grading = {1.5: "1.5 T cut-offs (scan at 1.5 T)", 3.0: "3 T cut-offs (scan at 3 T)"}
        assert grading.get(field, "1.5 T cut-offs (field strength unknown)") in page
    assert "unknown_field" in _row(rows, 6, "global")["qc_reasons"]


def test_decay_curve_is_the_mean_signal_of_the_global_region(predicted, config) -> None:
    folder, stack, rows = predicted
    report = patient_report(stack, rows, "S002", config, method=METHOD, version=__version__)
    page = (folder / "report" / "S002.html").read_text(encoding="utf-8")
    decay_table = _html_table(page.split("<h2>Decay of the global region</h2>")[1], "slice")
    # one slice is a short-T2* region refitted on its first echoes: its model is still drawn
    assert any("/first_" in _row(rows, p.slice_index, "global")["method"] for p in report.slices)
    for panel, cells in zip(report.slices, decay_table, strict=True):
        i = panel.slice_index
        labels = stack.labels_pred[i]
        core = wall_core_mask(labels, core_erosion_px(3.0, stack.pixel_spacing_mm[i], -1), -1)
        assert 0 < core.sum() < (labels == MYOCARDIUM).sum()
        mean = stack.images[i][:, core].astype(float).mean(axis=1)
        np.testing.assert_allclose(panel.decay.mean_signal, mean, rtol=1e-12)
        assert panel.decay.n_pixels == int(_row(rows, i, "global")["n_pixels"])
        # the noise floor of one channel: sigma sqrt(pi / 2)
        assert panel.decay.noise_floor == pytest.approx(SIGMA * math.sqrt(math.pi / 2))
        # the drawn model passes through the data, to within the noise (the phantom's noise is
        # on one channel's real part only, so its floor is below the model's Rician one)
        model = np.interp(panel.decay.te_ms, panel.decay.model_te_ms, panel.decay.model_signal)
        np.testing.assert_allclose(model, mean, rtol=0.05, atol=SIGMA)
        assert panel.decay.model == "noise_corrected"
        assert cells[0] == str(i)
        assert cells[2] == " ".join(f"{s:.4g}" for s in mean)


def test_decay_curve_follows_the_global_rows_pixels_off_the_cavity(config) -> None:
    """With a known phase-encoding axis the global row uses the wall off the cavity's lines."""
    stack = _three_slice_cohort()
    stack.phase_encoding_axis = np.zeros(len(stack.subject_id), np.int8)
    rows = _quantified(stack, config)
    report = patient_report(stack, rows, "S001", config, method=METHOD, version=__version__)
    methods = [_row(rows, p.slice_index, "global")["method"] for p in report.slices]
    assert any("/core_off_cavity/" in m for m in methods)
    for panel in report.slices:
        i = panel.slice_index
        labels = stack.labels_pred[i]
        wall = wall_core_mask(labels, core_erosion_px(3.0, stack.pixel_spacing_mm[i], 0), 0)
        if "/core_off_cavity/" in _row(rows, i, "global")["method"]:
            wall &= ~(labels == 1).any(axis=0)[None, :]
        assert panel.decay.n_pixels == int(_row(rows, i, "global")["n_pixels"]) == wall.sum()
        mean = stack.images[i][:, wall].astype(float).mean(axis=1)
        np.testing.assert_allclose(panel.decay.mean_signal, mean, rtol=1e-12)


def test_maps_panels_and_embedded_png(predicted, config) -> None:
    folder, stack, rows = predicted
    report = patient_report(stack, rows, "S001", config, method=METHOD, version=__version__)
    fig = patient_figure(report)
    for j, panel in enumerate(report.slices):
        r0, r1, c0, c1 = panel.crop
        echo_axes, map_axes = fig.axes[1 + 4 * j], fig.axes[2 + 4 * j]  # + colorbar, decay
        np.testing.assert_array_equal(
            echo_axes.images[0].get_array(), stack.images[panel.slice_index, 0, r0:r1, c0:c1]
        )
        drawn_map = np.ma.filled(map_axes.images[1].get_array().astype(float), np.nan)
        np.testing.assert_array_equal(
            drawn_map, stack.t2star_map_ms[panel.slice_index, r0:r1, c0:c1]
        )
        assert np.isfinite(drawn_map).sum() > 100
        assert echo_axes.collections  # the myocardium contour
    page = (folder / "report" / "S001.html").read_text(encoding="utf-8")
    png = (folder / "report" / "S001.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    embedded = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page).group(1)
    assert base64.b64decode(embedded) == png
    assert METHOD in page and f"cmrseg {__version__}" in page
    index = (folder / "report" / "index.html").read_text(encoding="utf-8")
    assert all(f'href="{s}.html"' in index for s in ("S001", "S002", "S003"))


def test_quantify_stack_fits_each_pixel_once_for_rows_and_maps(config, monkeypatch) -> None:
    stack = _three_slice_cohort()
    fitted = []
    real_fit = quantify_module.fit_curves

    def counting(te_ms, signals, *args, **kwargs):
        if len(te_ms) == stack.te_ms.shape[1]:  # not a short-T2* region's refit on its first echoes
            fitted.append(np.asarray(signals).shape[0])
        return real_fit(te_ms, signals, *args, **kwargs)

    monkeypatch.setattr(quantify_module, "fit_curves", counting)
    maps = np.empty(stack.labels_pred.shape, np.float32)
    quantify_stack(
        stack.images,
        stack.te_ms,
        stack.labels_pred,
        stack.subject_id,
        stack.slice_location,
        config=config,
        rv_insertion=stack.rv_insertion,
        pixel_spacing_mm=stack.pixel_spacing_mm,
        progress=False,
        t2star_maps=maps,
    )
    assert sum(fitted) == int((stack.labels_pred == MYOCARDIUM).sum())
    for i in range(stack.n_slices):  # the same values as the map fitted on its own
        alone = t2star_map(stack.images[i], stack.te_ms[i], stack.labels_pred[i], config)
        np.testing.assert_allclose(maps[i], alone.t2star_ms.astype(np.float32), rtol=1e-5)
        assert np.isfinite(maps[i]).sum() > 0.9 * (stack.labels_pred[i] == MYOCARDIUM).sum()


def test_atomic_dir_replaces_a_sub_folder_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "report").mkdir()
        (tmp / "report" / "OLD.html").write_text("old")
        (tmp / "keep.txt").write_text("kept")
    with atomic_dir(out) as tmp:
        (tmp / "report").mkdir()
        (tmp / "report" / "NEW.html").write_text("new")
    assert sorted(p.name for p in (out / "report").iterdir()) == ["NEW.html"]
    assert (out / "keep.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left


def test_predict_writes_a_report_without_identifiers(
    make_cfg, tiny_run: Path, tmp_path: Path
) -> None:
    """Names, dates and record numbers in the input's and checkpoint's paths stay out of it."""
    private = tmp_path / "Doe_Jane_19700101"
    private.mkdir()
    scans = private / "MRN4711.h5"
    write_echo_stack(scans, ring_phantom(2, seed=7, labels=False))
    ckpt = private / "last.ckpt"
    shutil.copy(tiny_run / "checkpoints" / "last.ckpt", ckpt)
    out = tmp_path / "out" / "report"
    out.mkdir(parents=True)
    (out / "S999.html").write_text("a page of an earlier run")
    result = predict(_predict_cfg(make_cfg, ckpt, scans, tmp_path))
    assert result["report"] == out
    assert sorted(p.name for p in out.iterdir()) == [
        "S000.html",
        "S000.png",
        "S001.html",
        "S001.png",
        "index.html",
    ]
    with open(tmp_path / "out" / "t2star.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    texts = {p.name: p.read_text(encoding="utf-8") for p in out.glob("*.html")}
    texts = {k: re.sub(r"base64,[A-Za-z0-9+/=]+", "", v) for k, v in texts.items()}
    for png in out.glob("*.png"):  # what a PNG says besides its pixels: its text chunks
        texts[png.name] = repr(Image.open(png).text)
        assert "Software" in texts[png.name]
    for name, text in texts.items():
        for secret in ("Doe", "Jane", "1970", "MRN4711", str(tmp_path)):
            assert secret not in text, (name, secret)
    for subject in ("S000", "S001"):
        page = (out / f"{subject}.html").read_text(encoding="utf-8")
        assert "(checkpoint last.ckpt)" in page
        table = _html_table(page, "slice")
        for cells in table:
            row = _row(rows, int(cells[0]), "global")
            assert row["subject_id"] == subject
            assert cells[6] == row["status"] and cells[7] == row["qc"]
            assert cells[2] == (f"{float(row['t2star_ms']):.1f}" if row["t2star_ms"] else "-")


def test_apex_pair_with_a_bound_or_without_a_value(predicted, config) -> None:
    """A below_range sector ranks below any value; a sector without one never wins."""
    _, stack, rows = predicted
    edited = [dict(r) for r in rows]
    sector2, sector5 = _row(edited, 2, "sector2"), _row(edited, 2, "sector5")
    sector2.update(status="below_range", t2star_ms="", t2star_ci_high_ms="1.49", grade="severe")
    sector5.update(status="fit_failed", t2star_ms="", grade="")
    report = patient_report(stack, edited, "S001", config, method=METHOD, version=__version__)
    segments = {s.segment: s for s in report.bullseye}
    assert segments[14].source == "sector2"
    assert (segments[14].text, segments[14].grade) == ("< 1.5", "severe")
    assert segments[14].value.iron_text == f"> {45.0 * 1.49**-1.22:.2f}"
    assert segments[16].source == "sector6"
    assert segments[16].value.t2star_ms == float(_row(rows, 2, "sector6")["t2star_ms"])


def test_pages_of_ids_that_are_no_plain_file_name(predicted, config, tmp_path: Path) -> None:
    _, stack, rows = predicted
    new_ids = {"S001": "a/b", "S002": "index", "S003": "S1"}
    renamed = EchoStack(**{**vars(stack), "subject_id": [new_ids[s] for s in stack.subject_id]})
    edited = [{**r, "subject_id": new_ids[r["subject_id"]]} for r in rows]
    pages = write_patient_reports(
        tmp_path / "report", renamed, edited, config, method=METHOD, version=__version__
    )
    assert [p.name for p in pages] == ["a_b-1.html", "index-2.html", "S1.html", "index.html"]
    index = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert '<a href="a_b-1.html">a/b</a>' in index
    assert "<h1>a/b: myocardial T2*</h1>" in pages[0].read_text(encoding="utf-8")


def test_predict_leaves_nothing_when_the_report_fails(
    make_cfg, tiny_run: Path, tmp_path: Path, monkeypatch
) -> None:
    import cmrseg.cli.predict as predict_cli

    scans = tmp_path / "scans.h5"
    write_echo_stack(scans, ring_phantom(1, seed=7, labels=False))

    def fail(folder, *args, **kwargs) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(predict_cli, "write_patient_reports", fail)
    with pytest.raises(OSError, match="disk full"):
        predict(_predict_cfg(make_cfg, tiny_run / "checkpoints" / "last.ckpt", scans, tmp_path))
    assert not (tmp_path / "out").exists()  # neither predictions.h5 nor t2star.csv
    assert {p.name for p in tmp_path.iterdir()} <= {"run", "scans.h5"}
