"""Tests of the DICOM import (contract section 4) and ``cmrseg-import-dicom``."""

from __future__ import annotations

import csv
import hashlib
import logging
import re
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
from dicom_factory import (
    LV_BLOOD,
    RV_BLOOD,
    TE_MS,
    VIEWS,
    Patient,
    Written,
    anatomy,
    write_localizer,
    write_series,
)
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder, get_encoder
from pydicom.uid import MPEG2MPML, JPEG2000Lossless, JPEGLSLossless, RLELossless

from cmrseg.cli.import_dicom import main
from cmrseg.core.labels import BLOOD_POOL, MYOCARDIUM
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


# --------------------------------------------------------------------------- orientation


def _header_tissue(path: Path) -> np.ndarray:
    """Tissue of every stored pixel, from the file's own geometry (checks the factory)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    o = np.array(ds.ImageOrientationPatient, float)
    dr, dc = (float(v) for v in ds.PixelSpacing)
    i, j = np.indices((int(ds.Rows), int(ds.Columns)))
    points = (
        np.array(ds.ImagePositionPatient, float)
        + j[..., None] * dc * o[:3]
        + i[..., None] * dr * o[3:]
    )
    return anatomy(points)[0]


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_every_view_imports_as_the_standard_view(tmp_path, rng, caplog, view):
    caplog.set_level(logging.INFO, logger="cmrseg")
    written = write_series(tmp_path, Patient(**ALICE), rng, view=view, phase_direction="ROW")
    # the header geometry of the file says where each stored pixel's anatomy is
    stored_tissue = _header_tissue(written.paths[0])
    assert stored_tissue.shape == written.stored[0].shape[1:]
    result = import_dicom(tmp_path, progress=False)
    stack = result.stack
    np.testing.assert_array_equal(stack.images, np.stack(written.images))
    np.testing.assert_allclose(stack.pixel_spacing_mm, np.tile([1.5, 1.25], (3, 1)), rtol=1e-5)
    transposed = view in ("rot90", "rot270", "transpose", "antitranspose")
    assert stack.phase_encoding_axis.tolist() == [0 if transposed else 1] * 3
    # the standard view of the anatomy: anterior up, septum (towards the RV) on the left
    for tissue in written.tissue:
        rv = np.argwhere(tissue == RV_BLOOD).mean(axis=0)
        lv = np.argwhere(tissue == LV_BLOOD).mean(axis=0)
        assert rv[1] < lv[1] - 3  # RV left of the LV
        assert rv[0] < lv[0]  # and anterior (up)
    expected = {
        "standard": "already in the standard view",
        "rot90": "rotated 90 degrees clockwise",
        "rot180": "rotated 180 degrees",
        "rot270": "rotated 90 degrees counterclockwise",
        "fliplr": "flipped left-right",
        "flipud": "flipped up-down",
        "transpose": "flipped about the main diagonal",
        "antitranspose": "flipped about the anti-diagonal",
    }[view]
    assert result.view == [f"{expected} (anterior 0 degrees from up)"] * 3
    assert f"S0001 visit 1, series 10 'T2star_gre_8echo': {expected}" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_no_reorient_keeps_the_scanner_view(tmp_path, rng, caplog):
    caplog.set_level(logging.INFO, logger="cmrseg")
    root, out = tmp_path / "dicom", tmp_path / "out.h5"
    written = write_series(root, Patient(**ALICE), rng, view="rot90", phase_direction="COL")
    assert main([str(root), str(out), "--no-reorient", "--no-progress"]) == 0
    stack = read_echo_stack(out)
    np.testing.assert_array_equal(stack.images, np.stack(written.stored))
    np.testing.assert_allclose(stack.pixel_spacing_mm, np.tile([1.25, 1.5], (3, 1)), rtol=1e-5)
    assert stack.phase_encoding_axis.tolist() == [0] * 3
    assert "kept in the scanner's view: --no-reorient" in caplog.text


@pytest.mark.parametrize(("inplane_deg", "warned"), [(20.0, False), (-40.0, True)])
def test_residual_in_plane_angle(tmp_path, rng, caplog, inplane_deg, warned):
    caplog.set_level(logging.INFO, logger="cmrseg")
    written = write_series(tmp_path, Patient(**ALICE), rng, view="rot180", inplane_deg=inplane_deg)
    result = import_dicom(tmp_path, progress=False)
    # nearest 90-degree step: here a half turn of the stored pixels, nothing resampled
    np.testing.assert_array_equal(
        result.stack.images, np.stack([np.rot90(s, 2, axes=(1, 2)) for s in written.stored])
    )
    assert (
        result.view
        == [f"rotated 180 degrees (anterior {abs(inplane_deg):.0f} degrees from up)"] * 3
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == (1 if warned else 0)
    if warned:
        assert "no 90-degree step brings this oblique plane" in warnings[0]


def test_field_strength(tmp_path, rng):
    write_series(tmp_path / "a", Patient(**ALICE), rng, field_strength_t=3.0)
    write_series(tmp_path / "b", Patient(**BOB), rng, field_strength_t=None, series_number=20)
    result = import_dicom(tmp_path, progress=False)
    by_patient = {k.patient_id: k.subject_id for k in result.keys}
    for patient_id, expected in ((ALICE["patient_id"], 3.0), (BOB["patient_id"], np.nan)):
        index = _slices_of(result.stack, by_patient[patient_id])
        np.testing.assert_array_equal(result.stack.field_strength_t[index], [expected] * 3)


# --------------------------------------------------------------------------- subjects and visits


def test_two_studies_of_one_patient_are_visits_of_one_subject(tmp_path, rng, caplog, capsys):
    caplog.set_level(logging.INFO, logger="cmrseg")
    root = tmp_path / "dicom"
    follow_up = Patient(**ALICE, study_date="20210302")
    baseline = Patient(**ALICE, study_date="20190105")
    written_follow_up = write_series(root / "later", follow_up, rng, view="fliplr")
    written_baseline = write_series(root / "earlier", baseline, rng, series_number=30)
    written_bob = write_series(root / "bob", Patient(**BOB), rng, series_number=40)

    result = import_dicom(root, progress=False)
    stack = result.stack
    alice = next(k.subject_id for k in result.keys if k.patient_id == ALICE["patient_id"])
    index = _slices_of(stack, alice)
    assert len(index) == 6 and index == list(range(index[0], index[0] + 6))  # together
    assert result.visit[index].tolist() == [1, 1, 1, 2, 2, 2]
    assert [stack.slice_location[i] for i in index] == ["base", "mid", "apex"] * 2
    expected = np.stack(written_baseline.images + written_follow_up.images)
    np.testing.assert_array_equal(stack.images[index], expected)
    assert len(set(stack.subject_id)) == 2

    key_file = tmp_path / "key.csv"
    outs = {v: tmp_path / f"visit{v}.h5" for v in (1, 2)}
    for v, out in outs.items():
        assert main([str(root), str(out), "--visit", str(v), "--key-file", str(key_file)]) == 0
    with key_file.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {
            "subject_id": alice,
            "visit": "2",
            "patient_id": ALICE["patient_id"],
            "study_instance_uid": follow_up.study_uid,
            "study_date": "20210302",
        }
    ]
    visit_1, visit_2 = (read_echo_stack(outs[v]) for v in (1, 2))
    assert visit_2.subject_id == [alice] * 3  # the same key in both files
    np.testing.assert_array_equal(visit_2.images, np.stack(written_follow_up.images))
    assert sorted(set(visit_1.subject_id)) == sorted(set(stack.subject_id))
    assert len(visit_1.subject_id) == 6
    bob_index = _slices_of(
        visit_1,
        next(
            k.subject_id for k in result.keys if k.visit == 1 and k.patient_id == BOB["patient_id"]
        ),
    )
    np.testing.assert_array_equal(visit_1.images[bob_index], np.stack(written_bob.images))
    assert "left out, 1 visit(s) and no visit 2" in caplog.text

    assert main([str(root), str(tmp_path / "v3.h5"), "--visit", "3"]) == 2
    assert "no patient has a visit 3" in capsys.readouterr().err
    assert not (tmp_path / "v3.h5").exists()


def test_subject_keys_do_not_depend_on_the_studies(tmp_path, rng):
    root = tmp_path / "dicom"
    write_series(root, Patient(**ALICE), rng)
    write_series(root, Patient(**BOB), rng, series_number=20)
    first = {k.patient_id: k.subject_id for k in import_dicom(root, progress=False).keys}
    write_series(root, Patient(**BOB, study_date="20230101"), rng, series_number=50)
    second = {k.patient_id: k.subject_id for k in import_dicom(root, progress=False).keys}
    assert first == second


# --------------------------------------------------------------------------- decoding


def _compression(uid: str) -> None:
    if not get_encoder(uid).is_available:
        pytest.skip(f"no encoder for {uid.name} installed (pip install 'cmrseg[dicom]')")
    if not get_decoder(uid).is_available:
        pytest.skip(f"no decoder for {uid.name} installed (pip install 'cmrseg[dicom]')")


@pytest.mark.parametrize("uid", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_series(tmp_path, rng, uid):
    _compression(uid)
    patient = Patient(**ALICE)
    # 32 x 40: OpenJPEG's default 6 resolution levels need >= 32 pixels a side
    written = write_series(
        tmp_path, patient, rng, transfer_syntax=uid, view="rot270", rows=32, cols=40
    )
    assert pydicom.dcmread(written.paths[0]).file_meta.TransferSyntaxUID == uid
    stack = import_dicom(tmp_path, progress=False).stack
    np.testing.assert_array_equal(stack.images, np.stack(written.images))


def test_undecodable_transfer_syntax_is_refused_before_any_pixel_is_read(tmp_path, rng, capsys):
    root, out, key_file = tmp_path / "dicom", tmp_path / "out.h5", tmp_path / "key.csv"
    write_series(root, Patient(**BOB), rng, series_number=20)
    written = write_series(root, Patient(**ALICE), rng)
    ds = pydicom.dcmread(written.paths[4])
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(written.paths[4], enforce_file_format=True)
    before = _snapshot(root)
    assert main([str(root), str(out), "--key-file", str(key_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(written.paths[4]) in err
    assert "MPEG2 Main Profile / Main Level" in err
    assert "nothing was written" in err
    assert not out.exists() and not key_file.exists()
    assert _snapshot(root) == before


# --------------------------------------------------------------------------- bad input


def test_missing_echo_at_one_position_is_refused(tmp_path, rng, capsys):
    root, out = tmp_path / "dicom", tmp_path / "out.h5"
    written = write_series(root, Patient(**ALICE), rng)
    lost = written.paths[len(TE_MS) + 3]  # mid position, echo 4
    lost.unlink()
    assert main([str(root), str(out)]) == 2
    err = capsys.readouterr().err
    assert "echo time(s) 11.01 ms missing" in err
    mid_files = [p for p in written.paths[len(TE_MS) : 2 * len(TE_MS)] if p.exists()]
    assert str(mid_files[0]) in err
    assert not out.exists()


def test_inconsistent_echo_times_across_positions_are_refused(tmp_path, rng, capsys):
    root, out = tmp_path / "dicom", tmp_path / "out.h5"
    written = write_series(root, Patient(**ALICE), rng)
    for path in written.paths[: len(TE_MS)]:  # one position acquired with other echo times
        ds = pydicom.dcmread(path)
        ds.EchoTime = f"{float(ds.EchoTime) + 0.5:g}"
        ds.save_as(path)
    assert main([str(root), str(out)]) == 2
    err = capsys.readouterr().err
    assert "every slice of a multi-echo series needs the same echo times" in err
    assert str(written.paths[0].parent) in err
    assert not out.exists()


def test_non_gre_series_only_is_refused(tmp_path, rng, caplog, capsys):
    caplog.set_level(logging.INFO, logger="cmrseg")
    root, out = tmp_path / "dicom", tmp_path / "out.h5"
    written = write_series(root, Patient(**ALICE), rng, description="T2_multi_echo_SE")
    for path in written.paths:
        ds = pydicom.dcmread(path)
        ds.ScanningSequence = "SE"
        ds.save_as(path)
    assert main([str(root), str(out)]) == 2
    err = capsys.readouterr().err
    assert "no multi-echo series" in err
    assert "not gradient echo (ScanningSequence SE)" in caplog.text
    assert not out.exists()


def test_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    assert main([str(tmp_path / "in"), str(tmp_path / "out.h5")]) == 2
    assert "no files in this folder" in capsys.readouterr().err
    assert not (tmp_path / "out.h5").exists()


# --------------------------------------------------------------------------- pseudonymization


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _date_forms(yyyymmdd: str) -> list[str]:
    """One date in the ways people and programs write it."""
    y, m, d = yyyymmdd[:4], yyyymmdd[4:6], yyyymmdd[6:8]
    month = _MONTHS[int(m) - 1]
    forms = [f"{y}{m}{d}", f"{y}-{m}-{d}", f"{y}.{m}.{d}", f"{y}/{m}/{d}", f"{d}.{m}.{y}"]
    forms += [f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}-{m}-{y}", f"{d}{m}{y}", f"{y[2:]}{m}{d}"]
    forms += [f"{int(d)} {month} {y}", f"{month} {int(d)}, {y}", f"{d}-{month}-{y}"]
    return forms


def _time_forms(hhmmss: str) -> list[str]:
    h, m, s = hhmmss[:2], hhmmss[2:4], hhmmss[4:6]
    return [f"{h}{m}{s}", f"{h}:{m}:{s}"]


def _secrets(patient: Patient, written: Written) -> dict[str, str]:
    """Every identifying string of a patient, its parts, and its dates in many forms."""
    found: dict[str, str] = {}
    for keyword, value in patient.attributes().items():
        if keyword in ("PatientAge", "PatientSize", "PatientWeight"):
            found[value] = keyword  # short numbers: searched as written
            continue
        found[value] = keyword
        for part in re.split(r"[\^ ,]+", value):  # every part of a name or address
            if len(part) >= 4 and not part.isdigit():
                found[part] = keyword
        for date in re.findall(r"(?<!\d)(?:19|20)\d{6}(?!\d)", value):
            found.update(dict.fromkeys(_date_forms(date), keyword))
        if keyword.endswith("DateTime"):
            found.update(dict.fromkeys(_date_forms(value[:8]) + _time_forms(value[8:]), keyword))
        elif keyword.endswith("Time"):
            found.update(dict.fromkeys(_time_forms(value), keyword))
    for date in ("19610723", "20190502", "20110314", "20191105"):  # also written as free text
        found.update(dict.fromkeys(_date_forms(date), "a date"))
    found.update(dict.fromkeys(written.uids, "UID"))
    return {k: v for k, v in found.items() if k}


def _h5_contents(path: Path) -> list[bytes]:
    """Raw bytes of the file, then every dataset's and attribute's decoded content."""
    out = [path.read_bytes()]
    with h5py.File(path, "r") as f:

        def visit(name: str, obj: object) -> None:
            out.append(name.encode())
            for key, value in obj.attrs.items():
                out.append(f"{key}={value!r}".encode())
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                if obj.dtype.kind == "O":
                    out.append(
                        " ".join(
                            v.decode() if isinstance(v, bytes) else str(v) for v in np.ravel(data)
                        ).encode()
                    )
                else:
                    out.append(np.ascontiguousarray(data).tobytes())

        out.append(repr(dict(f.attrs)).encode())
        f.visititems(visit)
    return out


def test_pseudonymization(tmp_path, rng, caplog, capsys):
    """No identifying attribute of PS3.15's basic profile, nor a part or a date form of it."""
    caplog.set_level(logging.DEBUG)
    root, out, key_file = tmp_path / "dicom", tmp_path / "out.h5", tmp_path / "key.csv"
    patients = {
        "alice": Patient(**ALICE),
        "alice2": Patient(**ALICE, study_date="20190502"),
        "bob": Patient(**BOB),
    }
    written = {
        "alice": write_series(root, patients["alice"], rng, view="transpose"),
        "alice2": write_series(
            root, patients["alice2"], rng, series_number=30, series_per_echo=True
        ),
        "bob": write_series(root, patients["bob"], rng, series_number=20, explicit_vr=False),
    }
    loc = write_localizer(root, patients["bob"], rng)  # skipped series are logged too
    written["bob"].uids += loc.uids

    assert main([str(root), str(out), "--key-file", str(key_file), "--verbose"]) == 0
    stderr = capsys.readouterr().err
    messages = "\n".join(caplog.messages) + "\n" + stderr
    # the log's own time stamps are today's date, not the patient's: look past them
    messages = re.sub(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} ", "", messages, flags=re.M)
    h5 = [b.lower() for b in _h5_contents(out)]
    with key_file.open(newline="") as f:
        rows = list(csv.DictReader(f))

    secrets: dict[str, str] = {}
    for name, patient in patients.items():
        secrets.update(_secrets(patient, written[name]))
    assert len(secrets) > 250
    for secret, source in secrets.items():
        needle = secret.lower()
        assert not any(needle.encode() in blob for blob in h5), (secret, source)
        if source not in ("SeriesDescription",):
            assert needle not in messages.lower(), (secret, source)
    # no date-like string at all in the log messages
    assert not re.search(r"(?<![\d.])(?:19|20)\d{2}[-/.]?\d{2}[-/.]?\d{2}(?![\d.])", messages)

    # the key file: its documented columns, and no identifier besides PatientID,
    # StudyInstanceUID and StudyDate (the mapping it exists for)
    assert list(rows[0]) == [
        "subject_id",
        "visit",
        "patient_id",
        "study_instance_uid",
        "study_date",
    ]
    pairs = sorted((r["patient_id"], r["visit"]) for r in rows)
    assert pairs == [
        (ALICE["patient_id"], "1"),
        (ALICE["patient_id"], "2"),
        (BOB["patient_id"], "1"),
    ]
    assert len(rows) == 3
    allowed = set()
    for patient in patients.values():
        allowed |= {patient.patient_id, patient.study_uid, patient.study_date}
    cells = {
        cell for row in rows for key, cell in row.items() if key not in ("subject_id", "visit")
    }
    assert cells <= allowed
    key_text = key_file.read_text().lower()
    for secret, source in secrets.items():
        if source not in ("PatientID", "StudyInstanceUID", "StudyDate", "a date"):
            assert secret.lower() not in key_text, (secret, source)


def _ring_labels(n: int, rows: int, cols: int) -> np.ndarray:
    """A blood pool and a myocardial ring at the image centre, for every slice."""
    r, c = np.indices((rows, cols))
    radius = np.hypot(r - rows / 2, c - cols / 2)
    one = np.where(radius < 4, BLOOD_POOL, np.where(radius < 7, MYOCARDIUM, 0)).astype(np.uint8)
    return np.repeat(one[None], n, axis=0)


def test_no_identifier_reaches_predictions_report_logs_or_wandb(
    tmp_path, rng, make_cfg, tiny_run, monkeypatch
):
    """Downstream of the import: predict's files and report, run logs and an offline W&B run."""
    import wandb
    from conftest import compose_config, shrink
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from cmrseg.cli.predict import predict
    from cmrseg.cli.train import train
    from cmrseg.data.echo_stack import write_echo_stack

    root, out = tmp_path / "dicom", tmp_path / "cohort.h5"
    patients = {"alice": Patient(**ALICE), "bob": Patient(**BOB)}
    written = {
        "alice": write_series(root, patients["alice"], rng),
        "bob": write_series(root, patients["bob"], rng, series_number=20),
    }
    assert main([str(root), str(out), "--key-file", str(tmp_path / "key.csv")]) == 0
    secrets: dict[str, str] = {}
    for name, patient in patients.items():
        secrets.update(_secrets(patient, written[name]))

    # cmrseg-predict: predictions.h5, t2star.csv, the per-patient report, the run's log
    cfg = make_cfg(
        [
            f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}",
            f"input={out}",
            f"output={tmp_path / 'predict'}",
        ],
        "predict.yaml",
        do_shrink=False,
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "predict" / "logs")
        cfg.trainer.enable_progress_bar = False
    predict(cfg)

    # a labelled copy trained for one step with an offline W&B run
    stack = read_echo_stack(out)
    stack.labels = _ring_labels(*stack.images.shape[:1], *stack.images.shape[2:])
    labelled = tmp_path / "labelled.h5"
    write_echo_stack(labelled, stack)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    train_cfg = compose_config("train.yaml", ["logger=wandb", "+trainer.fast_dev_run=true"])
    wandb_node = train_cfg.logger
    shrink(train_cfg, tmp_path / "train", labelled)
    with open_dict(train_cfg):
        train_cfg.logger = wandb_node
        train_cfg.data.val_fraction = 0.5
        train_cfg.data.test_fraction = 0.0
        train_cfg.test = False
    HydraConfig().set_config(train_cfg)
    with open_dict(train_cfg):
        train_cfg.pop("hydra")  # as in a real run: the job's config holds no hydra node
    train(train_cfg)
    wandb.teardown()  # stop the W&B service as the process's end would: later tests start clean
    assert list((tmp_path / "train").rglob("*.wandb")), "no offline W&B run was written"

    files = [
        p
        for folder in ("predict", "train")
        for p in (tmp_path / folder).rglob("*")
        if p.is_file() and p.suffix not in (".ckpt",)
    ]
    assert any(p.suffix == ".html" for p in files) and any(p.name == "t2star.csv" for p in files)
    blobs = {p: p.read_bytes().lower() for p in files}
    for secret, source in secrets.items():
        needle = secret.lower().encode()
        if len(needle) < 6:  # short strings occur by chance in compressed binary data
            continue
        for path, blob in blobs.items():
            assert needle not in blob, (secret, source, path)
