"""Tests of the DICOM import (contract section 4) and ``cmrseg-import-dicom``."""

from __future__ import annotations

import csv
import hashlib
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import TE_MS, Patient, Written, write_localizer, write_series

from cmrseg.cli.import_dicom import main
from cmrseg.data.dicom import import_dicom
from cmrseg.data.echo_stack import read_echo_stack

ALICE = dict(patient_id="MRN-48213-X", patient_name="Liddell^Alice^Pleasance^Mrs^OBE", tag="Ax")
BOB = dict(patient_id="MRN-90817-Q", patient_name="Builder^Robert^Tobias^Mr^MBE", tag="Bx")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _slices_of(stack, subject: str) -> list[int]:
    return [i for i, s in enumerate(stack.subject_id) if s == subject]


def _cohort(root: Path, rng: np.random.Generator) -> tuple[dict[str, Patient], dict[str, Written]]:
    """Alice: one series with rescale; Bob: one series per echo, implicit VR, rotated view."""
    patients = {"alice": Patient(**ALICE), "bob": Patient(**BOB)}
    written = {
        "alice": write_series(
            root, patients["alice"], rng, slope=2.5, intercept=7.0, phase_direction="ROW"
        ),
        "bob": write_series(
            root,
            patients["bob"],
            rng,
            series_number=20,
            series_per_echo=True,
            view="rot90",
            explicit_vr=False,
            phase_direction="COL",
        ),
    }
    loc = write_localizer(root, patients["alice"], rng)
    written["alice"].uids += loc.uids
    (root / "notes").mkdir()
    (root / "notes" / "README.txt").write_text("not a DICOM file\n")
    return patients, written


def test_cli_imports_pseudonymized_cohort(tmp_path, rng, caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="cmrseg")
    root, out, key_file = tmp_path / "dicom", tmp_path / "out" / "cohort.h5", tmp_path / "key.csv"
    patients, written = _cohort(root, rng)
    before = _snapshot(root)

    assert main([str(root), str(out), "--key-file", str(key_file)]) == 0

    assert _snapshot(root) == before
    with key_file.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["subject_id"] for r in rows] == ["S0001", "S0002"]
    assert [r["visit"] for r in rows] == ["1", "1"]
    by_patient = {r["patient_id"]: r for r in rows}
    assert set(by_patient) == {ALICE["patient_id"], BOB["patient_id"]}
    for patient in patients.values():
        assert by_patient[patient.patient_id]["study_instance_uid"] == patient.study_uid

    stack = read_echo_stack(out)
    assert stack.images.shape == (6, len(TE_MS), 24, 32)
    np.testing.assert_allclose(stack.te_ms, np.tile(np.float32(TE_MS), (6, 1)))
    assert stack.slice_location == ["base", "mid", "apex"] * 2
    np.testing.assert_allclose(stack.pixel_spacing_mm, np.tile([1.5, 1.25], (6, 1)))
    for name, patient in patients.items():
        subject = by_patient[patient.patient_id]["subject_id"]
        index = _slices_of(stack, subject)
        assert len(index) == 3
        for position, i in enumerate(index):  # base, mid, apex by geometry
            np.testing.assert_array_equal(stack.images[i], written[name].images[position])
        # Alice: ROW -> columns axis; Bob: COL -> rows axis as stored, columns once rotated
        assert stack.phase_encoding_axis[index].tolist() == [1] * 3
    # Rescale was applied: the smallest stored value of Alice is >= 0, times 2.5, plus 7.
    alice = _slices_of(stack, by_patient[ALICE["patient_id"]]["subject_id"])
    assert stack.images[alice].min() >= 7.0

    data = out.read_bytes()
    logs = caplog.text + capsys.readouterr().err
    for name, patient in patients.items():
        for secret in [*patient.identifiers(), *written[name].uids]:
            assert secret.encode() not in data, secret
            assert secret not in logs, secret
    assert "series 1 'localizer'" in logs


def test_without_key_file_no_mapping_is_written(tmp_path, rng):
    root, out_dir = tmp_path / "dicom", tmp_path / "out"
    _cohort(root, rng)
    assert main([str(root), str(out_dir / "a.h5"), "--no-progress"]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dicom", "out"]


def test_import_is_deterministic(tmp_path, rng):
    root = tmp_path / "dicom"
    _cohort(root, rng)
    first, second = import_dicom(root, progress=False), import_dicom(root, progress=False)
    assert first.keys == second.keys
    np.testing.assert_array_equal(first.stack.images, second.stack.images)
    assert first.n_series_skipped == 1  # the localizer


def test_series_per_position_form_one_subject(tmp_path, rng):
    root = tmp_path / "dicom"
    written = write_series(root, Patient(**ALICE), rng, series_per_position=True)
    result = import_dicom(root, progress=False)
    assert result.stack.slice_location == ["base", "mid", "apex"]
    assert set(result.stack.subject_id) == {"S0001"}
    for i in range(3):
        np.testing.assert_array_equal(result.stack.images[i], written.images[i])


def test_one_series_per_echo_and_position(tmp_path, rng):
    root = tmp_path / "dicom"
    written = write_series(
        root, Patient(**ALICE), rng, series_per_echo=True, series_per_position=True
    )
    result = import_dicom(root, progress=False)
    assert result.stack.slice_location == ["base", "mid", "apex"]
    np.testing.assert_array_equal(result.stack.images, np.stack(written.images))


def test_two_positions_are_ordered_but_not_labelled(tmp_path, rng):
    root = tmp_path / "dicom"
    written = write_series(root, Patient(**ALICE), rng, n_positions=2, phase_direction=None)
    stack = import_dicom(root, progress=False).stack
    assert stack.slice_location == ["", ""]
    np.testing.assert_array_equal(stack.images, np.stack(written.images))  # base first
    assert stack.phase_encoding_axis.tolist() == [-1, -1]


def test_normal_perpendicular_to_apex_direction_leaves_location_unknown(tmp_path, rng, caplog):
    caplog.set_level(logging.INFO, logger="cmrseg")
    row, col = np.array([0.0, 0.0, 1.0]), np.array([1.0, -1.0, 0.0]) / np.sqrt(2)
    written = write_series(tmp_path, Patient(**ALICE), rng, cosines=(row, col))
    result = import_dicom(tmp_path, progress=False)
    assert result.stack.slice_location == ["", "", ""]
    assert "perpendicular" in caplog.text
    # no standard view is defined for such a plane: kept as stored, with a warning
    for image in result.stack.images:  # slice order comes from the image centres here
        assert any(np.array_equal(image, stored) for stored in written.stored)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "S0001 visit 1, series 10 'T2star_gre_8echo': kept in the scanner's view" in warnings[0]


def _mark_ge_phase(ds: pydicom.Dataset) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x2F, "SS", 1)


def _mark_complex_component(ds: pydicom.Dataset) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ComplexImageComponent = "PHASE"


@pytest.mark.parametrize("explicit_vr", [True, False])
@pytest.mark.parametrize("mark", [None, _mark_ge_phase, _mark_complex_component])
def test_phase_series_are_ignored(tmp_path, rng, caplog, mark, explicit_vr):
    caplog.set_level(logging.INFO, logger="cmrseg")
    patient = Patient(**ALICE)
    written = write_series(tmp_path, patient, rng)
    phase = write_series(
        tmp_path,
        patient,
        rng,
        series_number=11,
        description="T2star_gre_8echo_P",
        image_type=("ORIGINAL", "PRIMARY", "P", "ND"),
        explicit_vr=explicit_vr,
    )
    if mark is not None:  # the same information, as other vendors write it
        for path in phase.paths:
            ds = pydicom.dcmread(path)
            mark(ds)
            ds.save_as(path)
    stack = import_dicom(tmp_path, progress=False).stack
    np.testing.assert_array_equal(stack.images, np.stack(written.images))
    assert "series 11 'T2star_gre_8echo_P': phase, real or imaginary" in caplog.text


@pytest.mark.parametrize("series_per_echo", [False, True])
def test_identical_copy_of_a_file_is_read_once(tmp_path, rng, series_per_echo):
    root = tmp_path / "dicom"
    written = write_series(root, Patient(**ALICE), rng, series_per_echo=series_per_echo)
    (root / "copy").mkdir()
    shutil.copy(written.paths[5], root / "copy" / "IM0001")
    stack = import_dicom(root, progress=False).stack
    np.testing.assert_array_equal(stack.images, np.stack(written.images))


def test_duplicate_echo_time_skips_series(tmp_path, rng, caplog):
    root = tmp_path / "dicom"
    write_series(root, Patient(**ALICE), rng, te_ms=(2.97, 5.65, 5.65, 8.33))
    written = write_series(root, Patient(**BOB), rng, series_number=30)
    result = import_dicom(root, progress=False)
    assert [k.patient_id for k in result.keys] == [BOB["patient_id"]]
    np.testing.assert_array_equal(result.stack.images, np.stack(written.images))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "series 10" in warnings[0].getMessage()
    assert "5.65 ms" in warnings[0].getMessage()


def test_no_multi_echo_series_exits_2(tmp_path, rng, capsys):
    root, out = tmp_path / "dicom", tmp_path / "out.h5"
    write_localizer(root, Patient(**ALICE), rng)
    write_series(root, Patient(**BOB), rng, te_ms=(2.0, 4.0))  # two echoes are not enough
    assert main([str(root), str(out), "--key-file", str(tmp_path / "key.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cmrseg-import-dicom: error: ")
    assert "no multi-echo series" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dicom"]


@pytest.mark.parametrize(
    ("bob_kwargs", "mismatch"),
    [(dict(te_ms=TE_MS[:6]), "6 echoes"), (dict(rows=10), "10x32")],
)
def test_mismatched_shapes_are_refused(tmp_path, rng, capsys, bob_kwargs, mismatch):
    root, out, key_file = tmp_path / "dicom", tmp_path / "out.h5", tmp_path / "key.csv"
    write_series(root, Patient(**ALICE), rng)
    write_series(root, Patient(**BOB), rng, series_number=30, **bob_kwargs)
    assert main([str(root), str(out), "--key-file", str(key_file)]) == 2
    err = capsys.readouterr().err
    assert mismatch in err
    assert "S0001" in err
    assert "S0002" in err
    assert "series 30" in err
    for secret in (ALICE["patient_id"], BOB["patient_id"]):
        assert secret not in err
    assert not out.exists()
    assert not key_file.exists()


def test_negative_values_after_rescale_are_refused(tmp_path, rng, capsys):
    root, out = tmp_path / "dicom", tmp_path / "out.h5"
    write_series(root, Patient(**ALICE), rng, intercept=-2000.0)
    assert main([str(root), str(out)]) == 2
    err = capsys.readouterr().err
    assert "negative magnitude" in err
    assert str(root) in err
    assert not out.exists()


def test_output_inside_input_folder_is_refused(tmp_path, rng, capsys):
    root = tmp_path / "dicom"
    write_series(root, Patient(**ALICE), rng)
    before = _snapshot(root)
    assert main([str(root), str(root / "out.h5")]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert _snapshot(root) == before


def test_missing_input_folder_is_refused(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), str(tmp_path / "out.h5")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_series_description_selects_cardiac_series(tmp_path, rng, capsys):
    root, out = tmp_path / "dicom", tmp_path / "out.h5"
    patient = Patient(**ALICE)
    written = write_series(root, patient, rng)
    liver_te = tuple(1.0 + 1.5 * i for i in range(12))
    axial = (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    liver = dict(series_number=40, description="liver_T2star", n_positions=1, cosines=axial)
    write_series(root, patient, rng, te_ms=liver_te, rows=10, cols=10, **liver)

    assert main([str(root), str(out)]) == 2
    err = capsys.readouterr().err
    assert "series 40 'liver_T2star'" in err
    assert "12 echoes of 10x10" in err

    assert main([str(root), str(out), "--series-description", "^t2STAR_gre"]) == 0
    np.testing.assert_array_equal(read_echo_stack(out).images, np.stack(written.images))

    assert main([str(root), str(out), "--series-description", "("]) == 2
    assert "series description '('" in capsys.readouterr().err


def test_truncated_files(tmp_path, rng, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    root, out = tmp_path / "dicom", tmp_path / "out.h5"
    patient = Patient(**ALICE)
    written = write_series(root, patient, rng)
    header_only = root / "header_only.dcm"
    header_only.write_bytes(written.paths[0].read_bytes()[:700])
    stack = import_dicom(root, progress=False).stack
    np.testing.assert_array_equal(stack.images, np.stack(written.images))
    # pydicom's value validation (which quotes header values, e.g. a cut UID) stays quiet
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]

    data = written.paths[3].read_bytes()
    written.paths[3].write_bytes(data[:-50])  # pixel data cut short: refuse, naming the file
    assert main([str(root), str(out)]) == 2
    err = capsys.readouterr().err
    assert str(written.paths[3]) in err
    assert "cannot read pixel data" in err
    assert not out.exists()


def test_missing_pydicom_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    (tmp_path / "in").mkdir()
    monkeypatch.delitem(sys.modules, "cmrseg.data.dicom", raising=False)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom -> ModuleNotFoundError
    assert main([str(tmp_path / "in"), str(tmp_path / "out.h5")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cmrseg-import-dicom: error: needs pydicom: pip install 'cmrseg[dicom]'"]
    assert not (tmp_path / "out.h5").exists()
