"""cmrseg-nnunet: nnU-Net v2 raw export and the import of predictions as a run folder."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ring_phantom

from cmrseg.cli.nnunet import main
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.data.echo_stack import EchoStack, write_echo_stack
from cmrseg.data.splits import make_subject_split

nib = pytest.importorskip("nibabel", reason="the nnunet extra: pip install -e '.[nnunet]'")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, EchoStack, Path]:
    """6 subjects x 2 slices, 4 echoes, and its export with 3 folds."""
    folder = tmp_path_factory.mktemp("nnunet")
    path = folder / "cohort.h5"
    stack = ring_phantom(6, seed=3, size=64)
    write_echo_stack(path, stack)
    export = folder / "Dataset501_CMR"
    assert main(["export", str(path), str(export), "--num-folds", "3", "--name", "CMR"]) == 0
    return path, stack, export


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_export_writes_the_nnunet_raw_layout(cohort) -> None:
    _, stack, export = cohort
    dataset = json.loads((export / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "echo1", "1": "echo2", "2": "echo3", "3": "echo4"}
    assert dataset["labels"] == {"background": 0, "blood_pool": 1, "myocardium": 2}
    assert (dataset["numTraining"], dataset["file_ending"], dataset["name"]) == (
        6,
        ".nii.gz",
        "CMR",
    )
    assert len(list((export / "imagesTr").iterdir())) == 6 * 4
    assert len(list((export / "labelsTr").iterdir())) == 6
    # subject S001 holds slices 2 and 3: z is the slice, the file stores [W, H, S]
    image = nib.load(export / "imagesTr" / "S001_0002.nii.gz")
    np.testing.assert_array_equal(
        np.asanyarray(image.dataobj).transpose(2, 1, 0), stack.images[2:4, 2]
    )
    assert image.header.get_zooms() == (1.5, 1.5, 10.0)
    labels = np.asanyarray(nib.load(export / "labelsTr" / "S001.nii.gz").dataobj)
    np.testing.assert_array_equal(labels.transpose(2, 1, 0), stack.labels[2:4])
    # nnU-Net's folds are the project's: train on its training subjects, validate on its test fold
    splits = json.loads((export / "splits_final.json").read_text())
    assert len(splits) == 3
    for fold, part in enumerate(splits):
        project = make_subject_split(
            stack.subject_id,
            val_fraction=0.1,
            test_fraction=0.1,
            seed=2025,
            num_folds=3,
            fold=fold,
        )
        assert (part["train"], part["val"]) == (list(project.train), list(project.test))
    assert sorted(s for part in splits for s in part["val"]) == [f"S00{i}" for i in range(6)]


def _predict(export: Path, out: Path, subjects, erase: tuple[str, int] | None = None) -> Path:
    """Perfect 'nnU-Net predictions' (the reference labels), one slice's myocardium erased."""
    out.mkdir()
    for subject in subjects:
        shutil.copy(export / "labelsTr" / f"{subject}.nii.gz", out / f"{subject}.nii.gz")
    if erase is not None:
        subject, z = erase
        image = nib.load(out / f"{subject}.nii.gz")
        data = np.asanyarray(image.dataobj).copy()
        data[:, :, z][data[:, :, z] == MYOCARDIUM] = 0
        nib.save(nib.Nifti1Image(data, image.affine, image.header), out / f"{subject}.nii.gz")
    return out


def test_import_of_a_fold_writes_a_run_folder(cohort, tmp_path: Path) -> None:
    path, stack, export = cohort
    test = json.loads((export / "splits_final.json").read_text())[1]["val"]
    preds = _predict(export, tmp_path / "fold_1_validation", test, erase=(test[0], 1))
    run = tmp_path / "run"
    assert main(["import", str(path), str(export), str(preds), str(run), "--fold", "1"]) == 0

    record = json.loads((run / "run.json").read_text())
    assert (record["format"], record["version"], record["status"]) == ("cmrseg.run", 1, "finished")
    assert (record["method"], record["task"], record["split"]) == ("nnunet", "eval", "test")
    assert (record["fold"], record["num_folds"], record["split_seed"]) == (1, 3, 2025)
    assert record["cohort"] == record["train_cohort"]
    assert record["cohort"]["file"] == "cohort.h5"

    rows = _csv(run / "slices.csv")
    scored = [i for i, s in enumerate(stack.subject_id) if s in test]
    assert [int(r["slice_index"]) for r in rows] == scored
    erased = scored[1]  # the second slice of the first test subject
    for row in rows:
        assert float(row["jaccard"]) == (0.0 if int(row["slice_index"]) == erased else 1.0)
        assert row["subject_id"] == stack.subject_id[int(row["slice_index"])]

    table = _csv(run / "t2star" / "test_table.csv")
    assert {int(r["slice_index"]) for r in table} == set(scored)
    for row in (r for r in table if r["region"] == "global"):
        if int(row["slice_index"]) == erased:
            assert (row["n_pixels_pred"], row["status_pred"]) == ("0", "empty_mask")
        else:  # the same mask: the same fit
            assert row["n_pixels_pred"] == row["n_pixels_ref"] != "0"
            assert row["t2star_pred_ms"] == row["t2star_ref_ms"]
            assert row["status_pred"] == row["status_ref"]


def test_import_of_another_cohort_scores_every_slice(cohort, tmp_path: Path) -> None:
    _, _, export = cohort
    other = tmp_path / "other.h5"
    write_echo_stack(other, ring_phantom(5, seed=9))
    other_export = tmp_path / "other_export"
    assert main(["export", str(other), str(other_export)]) == 0
    preds = _predict(other_export, tmp_path / "preds", [f"S00{i}" for i in range(5)])
    run = tmp_path / "run"
    assert main(["import", str(other), str(export), str(preds), str(run)]) == 0
    record = json.loads((run / "run.json").read_text())
    assert (record["split"], record["fold"], record["num_folds"]) == ("all", None, None)
    assert record["cohort"]["file"] == "other.h5"
    assert record["train_cohort"]["file"] == "cohort.h5"
    assert record["cohort"]["fingerprint"] != record["train_cohort"]["fingerprint"]
    assert len(_csv(run / "slices.csv")) == 10


def test_bad_input_is_refused_without_output(cohort, tmp_path: Path, capsys) -> None:
    path, _, export = cohort
    preds = _predict(export, tmp_path / "preds", ["S000"])
    run = tmp_path / "run"
    # fold 0's test subjects are not all predicted
    test = json.loads((export / "splits_final.json").read_text())[0]["val"]
    missing = next(s for s in test if s != "S000")
    assert main(["import", str(path), str(export), str(preds), str(run), "--fold", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"cmrseg-nnunet: error: {preds / f'{missing}.nii.gz'}: prediction of subject "
        f"{missing} not found"
    ]
    assert not run.exists()

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for subject in test:
        nib.save(
            nib.Nifti1Image(np.zeros((4, 4, 2), np.uint8), np.eye(4)), wrong / f"{subject}.nii.gz"
        )
    assert main(["import", str(path), str(export), str(wrong), str(run), "--fold", "0"]) == 2
    assert "shape (4, 4, 2), expected (64, 64, 2)" in capsys.readouterr().err
    assert main(["import", str(path), str(export), str(wrong), str(run), "--fold", "7"]) == 2
    assert "fold 7 is not exported (folds: [0, 1, 2])" in capsys.readouterr().err
    assert main(["import", str(path), str(export), str(wrong), str(run)]) == 2
    assert "the export has folds [0, 1, 2]; give --fold" in capsys.readouterr().err
    assert not run.exists()

    assert main(["export", str(path), str(export)]) == 2
    assert f"{export}: already exists" in capsys.readouterr().err
