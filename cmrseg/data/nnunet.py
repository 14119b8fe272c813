"""nnU-Net v2 raw data sets from echo stacks, and nnU-Net's predictions back as label maps.

An export (:func:`export_nnunet`) is one nnU-Net case per subject: the subject's slices in file
order are the ``z`` axis of a NIfTI volume (``[W, H, S]`` on disk, as NIfTI stores x fastest),
one file per echo (``imagesTr/<subject>_<echo:04d>.nii.gz``, echo ``k`` is channel ``k``) and
the reference labels with the file's coding (``labelsTr/<subject>.nii.gz``; 0 background,
1 blood pool, 2 myocardium). A case per subject, not per slice, keeps nnU-Net's own
cross-validation subject-level; train it with the ``2d`` configuration (the slices are not
contiguous: the volume's slice spacing is nominal, :data:`SLICE_SPACING_MM`). The affine holds
the pixel spacing only (an echo stack has no patient coordinates).

Beside ``dataset.json`` the export writes ``splits_final.json`` with the project's subject split
(the same folds, split seed and fractions as ``cmrseg-train``): nnU-Net fold ``k`` trains on the
subjects that the project's fold ``k`` trains on and predicts the project's test subjects of that
fold as its validation (``nnUNet_results/.../fold_k/validation/``). Copy it into
``nnUNet_preprocessed/DatasetXXX_NAME/`` after ``nnUNetv2_plan_and_preprocess``. The project's
validation subjects (early stopping) are left out of nnU-Net's training: nnU-Net trains a fixed
number of epochs and needs none. ``cmrseg_export.json`` records what was exported, so that
:func:`read_nnunet_predictions` maps predicted cases back to slices of the same file.

NIfTI files are read and written with nibabel (the ``nnunet`` extra), imported on first use.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.core.atomic import atomic_dir
from cmrseg.core.errors import InputError
from cmrseg.core.labels import BACKGROUND, BLOOD_POOL, LABEL_VALUES, MYOCARDIUM
from cmrseg.data.echo_stack import EchoStackFile, EchoStackInfo, inspect_echo_stack
from cmrseg.data.splits import SubjectSplit, echo_stack_fingerprint, make_subject_split

__all__ = [
    "EXPORT_FILE",
    "FILE_ENDING",
    "SLICE_SPACING_MM",
    "NnunetExport",
    "export_nnunet",
    "load_export",
    "read_nnunet_predictions",
]

FILE_ENDING = ".nii.gz"
EXPORT_FILE = "cmrseg_export.json"
_EXPORT_FORMAT = "cmrseg.nnunet-export"
_EXPORT_VERSION = 1
#: Nominal distance of a subject's slices in the exported volumes (mm); not measured.
SLICE_SPACING_MM = 10.0
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:
        raise InputError(
            "nnU-Net export/import needs nibabel: pip install 'cmrseg[nnunet]'"
        ) from None
    return nibabel


@dataclass(frozen=True)
class NnunetExport:
    """What an export holds (``cmrseg_export.json``).

    Attributes:
        source_file: Name of the exported echo-stack file.
        fingerprint: Its :func:`~cmrseg.data.splits.echo_stack_fingerprint`.
        echoes: 0-based echo indices exported, channel ``k`` being ``echoes[k]``.
        cases: Slice indices (ascending) of each case (subject), by case name.
        splits: The project's split of every exported fold (one for a fixed split).
    """

    source_file: str
    fingerprint: str
    echoes: tuple[int, ...]
    cases: dict[str, tuple[int, ...]]
    splits: tuple[SubjectSplit, ...]

    def split_of(self, fold: int | None) -> SubjectSplit:
        """The project's split of ``fold`` (``None`` for an export of a fixed split)."""
        for split in self.splits:
            if split.fold == fold:
                return split
        folds = [s.fold for s in self.splits]
        if fold is None:
            raise InputError(f"{EXPORT_FILE}: the export has folds {folds}; give --fold")
        raise InputError(f"{EXPORT_FILE}: fold {fold} is not exported (folds: {folds})")


def _subject_cases(info: EchoStackInfo) -> dict[str, tuple[int, ...]]:
    cases: dict[str, list[int]] = {}
    for index, subject in enumerate(info.subject_id):
        cases.setdefault(subject, []).append(index)
    for subject, index in cases.items():
        if not _CASE_ID.match(subject):
            raise InputError(
                f"{info.path}: subject_id {subject!r} cannot name an nnU-Net case (letters, "
                "digits, '.' and '-' only)"
            )
        spacing = info.pixel_spacing_mm[index]
        if not np.all(spacing == spacing[0]):
            raise InputError(
                f"{info.path}: the slices of subject {subject} differ in pixel_spacing_mm; one "
                "nnU-Net case needs one spacing"
            )
    return {subject: tuple(index) for subject, index in sorted(cases.items())}


def _affine(row_mm: float, col_mm: float) -> np.ndarray:
    """Voxel ``(col, row, slice)`` to mm: the spacing only."""
    return np.diag([col_mm, row_mm, SLICE_SPACING_MM, 1.0])


def _save(path: Path, volume: np.ndarray, affine: np.ndarray) -> None:
    """Write ``[S, H, W]`` as NIfTI ``[W, H, S]``."""
    nib = _nibabel()
    image = nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)


def export_nnunet(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dataset_name: str,
    echoes: Sequence[int] | None,
    num_folds: int | None,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
) -> NnunetExport:
    """Write an echo-stack file as an nnU-Net v2 raw data set (see the module docstring).

    Args:
        path: Labelled echo-stack file.
        out_dir: The data set folder to create, e.g. ``nnUNet_raw/Dataset501_CMR``; must not
            exist. It appears complete or not at all.
        dataset_name: ``name`` in ``dataset.json``.
        echoes: 0-based echoes to export as channels, ``None`` for all.
        num_folds: ``K`` folds as in ``cmrseg-train data.num_folds=K``, or ``None`` for the
            fixed split.
        val_fraction: ``data.val_fraction`` of the project's runs.
        test_fraction: ``data.test_fraction`` (fixed split only).
        split_seed: ``data.split_seed`` of the project's runs.

    Returns:
        What was exported.

    Raises:
        InputError: A file that is not a labelled echo stack, echoes out of range, subject keys
            that cannot name a file, mixed spacing within a subject, an existing ``out_dir``,
            or split settings that the project's splits refuse.
    """
    _nibabel()
    out = Path(out_dir)
    if out.exists():
        raise InputError(f"{out}: already exists; give a new folder")
    info = inspect_echo_stack(path)
    if "labels" not in info.datasets:
        raise InputError(f"{info.path}: labels: dataset is missing, needed for imagesTr/labelsTr")
    channels = list(range(info.n_echoes)) if echoes is None else [int(e) for e in echoes]
    if not channels or any(not 0 <= e < info.n_echoes for e in channels):
        raise InputError(f"echoes: {channels} outside [0, {info.n_echoes}) of {info.path}")
    fingerprint = echo_stack_fingerprint(info)
    folds = [None] if num_folds is None else list(range(num_folds))
    splits = tuple(
        make_subject_split(
            info.subject_id,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=split_seed,
            num_folds=num_folds,
            fold=fold,
            fingerprint=fingerprint,
            source=info.path.name,
        )
        for fold in folds
    )
    cases = _subject_cases(info)
    export = NnunetExport(info.path.name, fingerprint, tuple(channels), cases, splits)
    source = EchoStackFile(info.path, info=info)
    try:
        with atomic_dir(out) as tmp:
            _write_cases(tmp, source, info, export)
            _write_json(tmp / "dataset.json", _dataset_json(info, export, dataset_name))
            _write_json(
                tmp / "splits_final.json",
                [{"train": list(s.train), "val": list(s.test)} for s in splits],
            )
            _write_json(tmp / EXPORT_FILE, _export_json(export))
    finally:
        source.close()
    return export


def _write_cases(
    out: Path, source: EchoStackFile, info: EchoStackInfo, export: NnunetExport
) -> None:
    (out / "imagesTr").mkdir()
    (out / "labelsTr").mkdir()
    for case, index in export.cases.items():
        row_mm, col_mm = (float(v) for v in info.pixel_spacing_mm[index[0]])
        affine = _affine(row_mm, col_mm)
        images = np.stack([source.read("images", i, export.echoes) for i in index])  # [S, C, H, W]
        for channel in range(images.shape[1]):
            name = f"{case}_{channel:04d}{FILE_ENDING}"
            _save(out / "imagesTr" / name, images[:, channel].astype(np.float32), affine)
        labels = np.stack([source.read("labels", i) for i in index]).astype(np.uint8)
        _save(out / "labelsTr" / f"{case}{FILE_ENDING}", labels, affine)


def _dataset_json(info: EchoStackInfo, export: NnunetExport, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"cmrseg export of {info.path.name}: one case per subject, slices as z",
        "channel_names": {str(k): f"echo{e + 1}" for k, e in enumerate(export.echoes)},
        "labels": {"background": BACKGROUND, "blood_pool": BLOOD_POOL, "myocardium": MYOCARDIUM},
        "numTraining": len(export.cases),
        "file_ending": FILE_ENDING,
    }


def _export_json(export: NnunetExport) -> dict[str, Any]:
    return {
        "format": _EXPORT_FORMAT,
        "version": _EXPORT_VERSION,
        "source": {"file": export.source_file, "fingerprint": export.fingerprint},
        "echoes": list(export.echoes),
        "slice_spacing_mm": SLICE_SPACING_MM,
        "cases": {case: list(index) for case, index in export.cases.items()},
        "splits": [split.to_json_dict() for split in export.splits],
    }


def _write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def load_export(export_dir: str | os.PathLike[str]) -> NnunetExport:
    """Read ``cmrseg_export.json`` of an export folder.

    Raises:
        InputError: The file is missing, unreadable or not an export record of this version.
    """
    path = Path(export_dir) / EXPORT_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found; give the folder cmrseg-nnunet export wrote") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: unreadable: {err}") from None
    if not isinstance(doc, dict) or (doc.get("format"), doc.get("version")) != (
        _EXPORT_FORMAT,
        _EXPORT_VERSION,
    ):
        raise InputError(f"{path}: not a {_EXPORT_FORMAT} version {_EXPORT_VERSION} record")
    try:
        splits = []
        for part in doc["splits"]:
            subjects = part["subjects"]
            splits.append(
                SubjectSplit(
                    train=tuple(subjects["train"]),
                    val=tuple(subjects["val"]),
                    test=tuple(subjects["test"]),
                    seed=int(part["seed"]),
                    num_folds=part["num_folds"],
                    fold=part["fold"],
                    val_fraction=float(part["val_fraction"]),
                    test_fraction=float(part["test_fraction"]),
                    fingerprint=str(part["source"]["fingerprint"]),
                    source=str(part["source"]["file"]),
                )
            )
        return NnunetExport(
            source_file=str(doc["source"]["file"]),
            fingerprint=str(doc["source"]["fingerprint"]),
            echoes=tuple(int(e) for e in doc["echoes"]),
            cases={str(c): tuple(int(i) for i in idx) for c, idx in doc["cases"].items()},
            splits=tuple(splits),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise InputError(f"{path}: malformed: {err!r}") from None


def read_nnunet_predictions(
    pred_dir: str | os.PathLike[str], info: EchoStackInfo, subjects: Sequence[str]
) -> dict[int, np.ndarray]:
    """Read nnU-Net's predicted cases of some subjects back as label maps of their slices.

    Args:
        pred_dir: Folder of ``<subject>.nii.gz`` predictions (``nnUNetv2_predict -o`` or a
            fold's ``validation/`` folder), exported by :func:`export_nnunet`.
        info: The echo-stack file the cases were exported from.
        subjects: The subjects to read; each must have its file.

    Returns:
        uint8 labels ``[H, W]`` by 0-based slice index of ``info``'s file.

    Raises:
        InputError: A missing or unreadable prediction, one whose shape is not the subject's
            ``[S, H, W]``, or values outside the label coding.
    """
    nib = _nibabel()
    folder = Path(pred_dir)
    cases = _subject_cases(info)
    out: dict[int, np.ndarray] = {}
    for subject in subjects:
        path = folder / f"{subject}{FILE_ENDING}"
        if not path.is_file():
            raise InputError(f"{path}: prediction of subject {subject} not found")
        try:
            volume = np.asanyarray(nib.load(path).dataobj)
        except Exception as err:  # nibabel raises several types for a bad file
            raise InputError(f"{path}: not a readable NIfTI file: {err}") from None
        index = cases[subject]
        expected = (info.width, info.height, len(index))
        if volume.ndim == 4 and volume.shape[3] == 1:
            volume = volume[..., 0]
        if volume.shape != expected:
            raise InputError(
                f"{path}: shape {volume.shape}, expected {expected} (W, H, slices of {subject})"
            )
        if not np.all(np.isin(volume, LABEL_VALUES)):
            raise InputError(f"{path}: values outside the label coding {LABEL_VALUES}")
        labels = volume.transpose(2, 1, 0).astype(np.uint8)
        out |= {i: labels[k] for k, i in enumerate(index)}
    return out
