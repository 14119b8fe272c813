"""Subject-level train/val/test splits and k-fold cross-validation, saved as JSON.

Slices of one subject are never split across train, val and test. Two schemes:

- ``num_folds=None``: a fixed split; ``round(test_fraction * S)`` subjects for test,
  ``round(val_fraction * S)`` for val (at least one each when the fraction is > 0), the rest
  for train (``S`` subjects in all).
- ``num_folds=K``, ``fold=k``: the subjects are dealt into ``K`` folds; fold ``k`` is the test
  set, so over ``k = 0 .. K-1`` every subject is tested exactly once. From the other ``K-1``
  folds, ``round(val_fraction * S)`` subjects are drawn (seeded by ``seed`` and ``k``) for
  validation (early stopping, checkpoint choice) and the rest train. ``test_fraction`` is unused.

An external evaluation (a trained model scored on a cohort it never saw) tests every subject of
its file: :func:`all_test_split`.

The subjects are sorted before they are shuffled with ``numpy.random.default_rng(seed)``, so a
split depends on the set of subjects and the seed, not on the order of slices in the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cmrseg.core.atomic import atomic_path
from cmrseg.core.errors import InputError
from cmrseg.data.echo_stack import EchoStackInfo

__all__ = [
    "SPLIT_NAMES",
    "SplitName",
    "SubjectSplit",
    "all_test_split",
    "echo_stack_fingerprint",
    "load_split",
    "make_subject_split",
    "save_split",
]

log = logging.getLogger(__name__)

SplitName = Literal["train", "val", "test"]
SPLIT_NAMES: tuple[SplitName, ...] = ("train", "val", "test")
_SPLIT_FORMAT = "cmrseg.subject-split"
_SPLIT_VERSION = 1


@dataclass(frozen=True)
class SubjectSplit:
    """Which subjects go to train, val and test, and how that was decided.

    Attributes:
        train: Training subject keys, sorted.
        val: Validation subject keys, sorted.
        test: Test subject keys, sorted.
        seed: Seed of the subject shuffle.
        num_folds: ``K`` of k-fold cross-validation, or ``None`` for a fixed split.
        fold: The test fold ``k`` (0-based), or ``None``.
        val_fraction: Fraction of all subjects used for validation.
        test_fraction: Fraction of all subjects used for test (fixed split only).
        fingerprint: :func:`echo_stack_fingerprint` of the file the split was made for.
        source: Name of that file (for people reading the JSON; never compared).
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    seed: int
    num_folds: int | None
    fold: int | None
    val_fraction: float
    test_fraction: float
    fingerprint: str
    source: str

    def subjects(self, split: SplitName) -> tuple[str, ...]:
        """Return the subject keys of one split."""
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLIT_NAMES}")
        return getattr(self, split)

    @property
    def all_subjects(self) -> frozenset[str]:
        """Every subject of the split, in any part."""
        return frozenset(self.train) | frozenset(self.val) | frozenset(self.test)

    def slice_indices(self, subject_id: Sequence[str], split: SplitName) -> np.ndarray:
        """Return the 0-based indices of the slices in ``split``, ascending.

        Args:
            subject_id: ``[N]`` subject key of every slice of the file.
            split: ``train``, ``val`` or ``test``.

        Returns:
            int64 ``[M]`` slice indices.
        """
        wanted = set(self.subjects(split))
        return np.array([i for i, s in enumerate(subject_id) if s in wanted], dtype=np.int64)

    def to_json_dict(self) -> dict[str, Any]:
        """Return the JSON document written by :func:`save_split`."""
        return {
            "format": _SPLIT_FORMAT,
            "version": _SPLIT_VERSION,
            "source": {"file": self.source, "fingerprint": self.fingerprint},
            "seed": self.seed,
            "num_folds": self.num_folds,
            "fold": self.fold,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "subjects": {name: list(self.subjects(name)) for name in SPLIT_NAMES},
        }

    def check_matches(
        self, subject_id: Sequence[str], fingerprint: str, *, split_path: str, data_path: str
    ) -> None:
        """Refuse a split that does not cover exactly the subjects of a file.

        A changed fingerprint with the same subjects (slices added, re-imported data) is
        logged as a warning, because the subject assignment is still well defined.

        Args:
            subject_id: ``[N]`` subject keys of the file.
            fingerprint: :func:`echo_stack_fingerprint` of the file.
            split_path: The split file, for messages.
            data_path: The data file, for messages.

        Raises:
            InputError: The split's subjects differ from the file's.
        """
        data = set(subject_id)
        missing = sorted(data - self.all_subjects)
        extra = sorted(self.all_subjects - data)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"{len(missing)} data subject(s) are not in it ({_few(missing)})")
            if extra:
                parts.append(f"{len(extra)} subject(s) in it are not in the data ({_few(extra)})")
            raise InputError(
                f"{split_path}: split does not match the subjects of {data_path}: "
                + "; ".join(parts)
                + ". Delete the split file or point split_file at the one made for this data."
            )
        if fingerprint != self.fingerprint:
            log.warning(
                "%s: made for a file with fingerprint %s, %s has %s; the subjects match, "
                "so the split is used as saved",
                split_path,
                self.fingerprint[:12],
                data_path,
                fingerprint[:12],
            )


def _few(keys: list[str], shown: int = 5) -> str:
    more = f", ... ({len(keys) - shown} more)" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def echo_stack_fingerprint(info: EchoStackInfo) -> str:
    """Return a SHA-256 over what defines a file's slices, without reading its images.

    It covers N, E, H, W and the ``subject_id`` and ``slice_location`` of every slice, so it
    changes when slices are added, removed, reordered or reassigned to another subject; and
    each slice's echo times, pixel spacing and RV insertion point (where the file has them), so
    two cohorts of the same size and subject keys (e.g. phantoms of two seeds, or two sites'
    pseudonymized ``S0001``...) differ: run records tell an external evaluation by it.

    Args:
        info: The file's metadata from :func:`~cmrseg.data.echo_stack.inspect_echo_stack`.

    Returns:
        64 hex digits.
    """
    doc = {
        "shape": [info.n_slices, info.n_echoes, info.height, info.width],
        "subject_id": list(info.subject_id),
        "slice_location": list(info.slice_location),
        "te_ms": np.asarray(info.te_ms, np.float64).tolist(),
        "pixel_spacing_mm": np.asarray(info.pixel_spacing_mm, np.float64).tolist(),
    }
    if info.rv_insertion is not None:
        doc["rv_insertion"] = np.asarray(info.rv_insertion, np.float64).tolist()
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode("utf-8")).hexdigest()


def _count(fraction: float, n: int) -> int:
    return 0 if fraction == 0 else max(1, round(fraction * n))


def make_subject_split(
    subjects: Sequence[str],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    num_folds: int | None = None,
    fold: int | None = None,
    fingerprint: str = "",
    source: str = "",
) -> SubjectSplit:
    """Split subjects into train, val and test (fixed or k-fold; see the module docstring).

    Args:
        subjects: Subject keys; repeats (one per slice) are allowed.
        val_fraction: Fraction of all subjects for validation, in ``[0, 1)``.
        test_fraction: Fraction of all subjects for test, in ``[0, 1)``; unused with folds.
        seed: Seed of the shuffle.
        num_folds: ``K >= 2`` for k-fold cross-validation, or ``None``.
        fold: Test fold ``k`` in ``[0, K)``; required with ``num_folds``.
        fingerprint: Recorded in the split (see :func:`echo_stack_fingerprint`).
        source: Recorded in the split (the data file's name).

    Returns:
        The split; its three parts are disjoint and cover all subjects.

    Raises:
        InputError: Fractions or fold options out of range, or too few subjects for them.
    """
    unique = sorted(set(subjects))
    n = len(unique)
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise InputError(f"data.{name}: {value} is not in [0, 1)")
    order = [unique[i] for i in np.random.default_rng(seed).permutation(n)]
    n_val = _count(val_fraction, n)
    if num_folds is None:
        if fold is not None:
            raise InputError(f"data.fold: {fold} given without data.num_folds")
        if val_fraction + test_fraction >= 1:
            raise InputError(
                f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction} "
                "leaves no subjects for training"
            )
        n_test = _count(test_fraction, n)
        test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    else:
        if not 2 <= num_folds <= n:
            raise InputError(f"data.num_folds: {num_folds} is not in [2, {n}] ({n} subjects)")
        if fold is None or not 0 <= fold < num_folds:
            raise InputError(f"data.fold: {fold} is not in [0, {num_folds}) for k-fold splits")
        folds = np.array_split(np.arange(n), num_folds)
        test = [order[i] for i in folds[fold]]
        rest = [order[i] for k, f in enumerate(folds) if k != fold for i in f]
        pick = np.random.default_rng([seed, fold]).permutation(len(rest))
        val = [rest[i] for i in pick[:n_val]]
        train = [rest[i] for i in pick[n_val:]]
    if not train:
        raise InputError(
            f"{n} subject(s) are too few for val_fraction={val_fraction}, "
            f"test_fraction={test_fraction}, num_folds={num_folds}: no subject left for training"
        )
    return SubjectSplit(
        train=tuple(sorted(train)),
        val=tuple(sorted(val)),
        test=tuple(sorted(test)),
        seed=int(seed),
        num_folds=num_folds,
        fold=fold,
        val_fraction=float(val_fraction),
        test_fraction=float(test_fraction),
        fingerprint=fingerprint,
        source=source,
    )


def all_test_split(
    subjects: Sequence[str], *, seed: int, fingerprint: str = "", source: str = ""
) -> SubjectSplit:
    """Put every subject in test, none in train or val: the split of an external evaluation.

    Args:
        subjects: Subject keys; repeats (one per slice) are allowed.
        seed: Recorded in the split only (nothing is shuffled).
        fingerprint: Recorded in the split (see :func:`echo_stack_fingerprint`).
        source: Recorded in the split (the data file's name).

    Returns:
        The split, with ``num_folds`` and ``fold`` ``None``, ``val_fraction`` 0 and
        ``test_fraction`` 1.
    """
    return SubjectSplit(
        train=(),
        val=(),
        test=tuple(sorted(set(subjects))),
        seed=int(seed),
        num_folds=None,
        fold=None,
        val_fraction=0.0,
        test_fraction=1.0,
        fingerprint=fingerprint,
        source=source,
    )


def save_split(split: SubjectSplit, path: str | os.PathLike[str]) -> None:
    """Write a split as JSON, atomically.

    Args:
        split: The split.
        path: Destination, e.g. ``<output_dir>/split.json``.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(split.to_json_dict(), indent=2) + "\n", encoding="utf-8")


def load_split(path: str | os.PathLike[str]) -> SubjectSplit:
    """Read a split written by :func:`save_split`.

    Args:
        path: The JSON file.

    Returns:
        The split.

    Raises:
        InputError: The file is missing, not JSON, not a split, or its parts share subjects.
    """
    where = Path(path)
    try:
        doc = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{where}: split file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{where}: not a readable JSON split file: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != _SPLIT_FORMAT:
        raise InputError(f"{where}: not a cmrseg split file (format is not {_SPLIT_FORMAT!r})")
    if doc.get("version") != _SPLIT_VERSION:
        raise InputError(f"{where}: unknown split file version {doc.get('version')!r}")
    try:
        parts = {name: tuple(str(s) for s in doc["subjects"][name]) for name in SPLIT_NAMES}
        split = SubjectSplit(
            **parts,
            seed=int(doc["seed"]),
            num_folds=None if doc["num_folds"] is None else int(doc["num_folds"]),
            fold=None if doc["fold"] is None else int(doc["fold"]),
            val_fraction=float(doc["val_fraction"]),
            test_fraction=float(doc["test_fraction"]),
            fingerprint=str(doc["source"]["fingerprint"]),
            source=str(doc["source"]["file"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{where}: malformed split file: {err!r}") from None
    for i, a in enumerate(SPLIT_NAMES):
        for b in SPLIT_NAMES[i + 1 :]:
            shared = sorted(set(parts[a]) & set(parts[b]))
            if shared:
                raise InputError(f"{where}: {a} and {b} share subjects ({_few(shared)})")
    return split
