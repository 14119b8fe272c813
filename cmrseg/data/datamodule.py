"""LightningDataModule over one echo-stack file, with subject-level splits and k-fold.

Built from ``conf/data/echo_stack.yaml`` with Hydra's ``_target_``. The file is validated once,
in the process that first needs it (:func:`~cmrseg.data.echo_stack.inspect_echo_stack`); the
datasets hold an :class:`~cmrseg.data.echo_stack.EchoStackFile`, which opens its own read-only
HDF5 handle in each worker or DDP process and never pickles one, so fork, spawn and DDP are safe.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Sampler, get_worker_info

from cmrseg.core.errors import InputError
from cmrseg.data.dataset import (
    INPUT_MODES,
    EchoStackDataset,
    InputMode,
    Target,
    myocardium_classes,
    num_classes,
    resolve_echoes,
)
from cmrseg.data.echo_stack import EchoStackFile, EchoStackInfo, inspect_echo_stack
from cmrseg.data.splits import (
    SPLIT_NAMES,
    SubjectSplit,
    all_test_split,
    echo_stack_fingerprint,
    load_split,
    make_subject_split,
    save_split,
)
from cmrseg.data.transforms import NORMALIZATIONS, Normalization

__all__ = ["EchoStackDataModule", "EpochSampler"]

log = logging.getLogger(__name__)

LoaderSplit = Literal["train", "val", "test", "predict"]
TestSubjects = Literal["split", "all"]
TEST_SUBJECTS: tuple[TestSubjects, ...] = ("split", "all")


def collate_samples(samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch whose tensors are all views of one byte buffer.

    A worker process hands every tensor of a batch to the main process through a shared-memory
    file of its own, and on a 2-core machine that hand-off, not reading or augmenting, limits
    the loader (``benchmarks/bench_loader.py``). With one buffer a batch needs one file. Keys,
    dtypes and shapes are those of ``torch.utils.data.default_collate``; every value is a
    contiguous view.
    """
    keys = sorted(samples[0], key=lambda k: -samples[0][k].element_size())  # keeps views aligned
    shapes = {k: (len(samples), *samples[0][k].shape) for k in keys}
    sizes = {k: math.prod(shapes[k]) * samples[0][k].element_size() for k in keys}
    buffer = torch.empty(sum(sizes.values()), dtype=torch.uint8)
    batch, offset = {}, 0
    for key in keys:
        view = buffer[offset : offset + sizes[key]].view(samples[0][key].dtype).view(shapes[key])
        batch[key] = torch.stack([s[key] for s in samples], out=view)
        offset += sizes[key]
    return batch


def _seed_worker(worker_id: int) -> None:
    """Seed the global numpy and Python generators of a worker from its torch seed."""
    info = get_worker_info()
    seed = (info.seed if info is not None else torch.initial_seed()) % 2**32
    np.random.seed(seed)
    random.seed(seed)


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffle per epoch and give every sample of the epoch its own augmentation seed.

    Order and seeds are a function of ``(seed, epoch)`` alone, never of worker processes or
    of earlier epochs, so a run resumed from a checkpoint replays exactly the epochs it has
    not seen yet. Lightning calls :meth:`set_epoch` before every training epoch; without
    such calls (e.g. inside DDP's sampler wrapper) each iteration takes the next epoch.

    Args:
        num_samples: Length of the dataset.
        seed: Base seed.
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.num_samples)
        seeds = rng.integers(0, 2**31, self.num_samples)
        return iter(zip(order.tolist(), seeds.tolist(), strict=True))


class EchoStackDataModule(LightningDataModule):
    """Train/val/test/predict loaders over the slices of an echo-stack file.

    Every argument is required: the defaults live in ``conf/data/echo_stack.yaml`` only.
    Splits are by subject (see :mod:`cmrseg.data.splits`): ``num_folds=None`` gives a fixed
    split by ``val_fraction`` and ``test_fraction``; ``num_folds=K, fold=k`` makes fold ``k`` of
    the subjects the test set and draws ``val_fraction`` of all subjects from the rest for
    validation. With ``split_file`` set, an existing file is read back (and refused if its
    subjects differ from the data's); a missing one is written once the split is made.
    ``test_subjects="all"`` tests every subject of ``path`` instead (an external evaluation of a
    model trained on another cohort): no split is made, read or saved, and there is nothing to
    fit or validate on.

    Args:
        path: Echo-stack file with ``labels`` for fit/validate/test; ``None`` when only
            predicting on ``predict_path``.
        input_mode: ``echoes_as_samples`` (the paper: each echo of ``echoes`` is a separate
            single-channel sample with the slice's mask) or ``echoes_as_channels`` (the echoes
            are stacked as channels of one sample). Training only: validation, test and
            predict samples are always one per slice (see :meth:`_dataset_options`).
        echoes: 0-based echo indices, or ``None`` for all echoes of the file.
        target: ``binary``, ``three_class`` or ``aha16``
            (see :func:`~cmrseg.data.dataset.encode_target`).
        normalization: ``mvn`` (over all channels), ``mvn_per_channel`` or ``none``.
        batch_size: Samples per batch of every loader.
        val_fraction: Fraction of subjects for validation.
        test_fraction: Fraction of subjects for test (fixed split only).
        split_seed: Seed of the subject shuffle; keep it fixed across training seeds.
        num_folds: ``K`` for k-fold cross-validation, or ``None``.
        fold: Test fold in ``[0, K)``.
        split_file: JSON file to read the split from, or to write it to if absent; unused
            with ``test_subjects="all"``.
        test_subjects: ``split`` (the test part of the subject split) or ``all`` (every
            subject of ``path``; see :func:`~cmrseg.data.splits.all_test_split`).
        augmentation: Training-only albumentations transform (e.g. ``albumentations.Compose``)
            applied to image and mask together; ``None`` for none.
        seed: Seed of the training shuffle and augmentation streams; ``None`` derives it from
            ``torch.initial_seed()`` (set by ``lightning.seed_everything``).
        num_workers: Loader worker processes; workers persist across epochs when > 0.
        pin_memory: Page-locked batches for faster host-to-GPU copies.
        multiprocessing_context: ``fork``, ``spawn``, ``forkserver`` or ``None`` (the
            platform's default).
        sharing_strategy: How worker processes hand batches over
            (``torch.multiprocessing.set_sharing_strategy``, set for the whole process when a
            loader with workers is made): ``file_system`` (shared-memory files named in the
            message; no per-tensor descriptor passing, about 1.2x the batches per second on
            2 cores; ``torch_shm_manager`` removes the files of crashed processes),
            ``file_descriptor`` (PyTorch's Linux default), or ``None`` to leave it alone.
        predict_path: File for ``predict_dataloader`` (labels optional); ``None`` uses ``path``.
        te_ms: Echo times (ms) that validation, test and predict slices are given at (a
            model's training echo times; set by :mod:`cmrseg.inference`): slices acquired at
            other times get their decay resampled to these (see
            :class:`~cmrseg.data.dataset.EchoStackDataset`); ``None``: ``echoes`` as stored.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        input_mode: InputMode,
        echoes: Sequence[int] | None,
        target: Target,
        normalization: Normalization,
        batch_size: int,
        val_fraction: float,
        test_fraction: float,
        split_seed: int,
        num_folds: int | None,
        fold: int | None,
        split_file: str | os.PathLike[str] | None,
        test_subjects: TestSubjects,
        augmentation: Callable[..., dict[str, Any]] | None,
        seed: int | None,
        num_workers: int,
        pin_memory: bool,
        multiprocessing_context: str | None,
        sharing_strategy: str | None,
        predict_path: str | os.PathLike[str] | None,
        te_ms: Sequence[float] | None,
    ) -> None:
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise InputError(f"data.input_mode: {input_mode!r} is not one of {INPUT_MODES}")
        if normalization not in NORMALIZATIONS:
            raise InputError(
                f"data.normalization: {normalization!r} is not one of {NORMALIZATIONS}"
            )
        strategies = torch.multiprocessing.get_all_sharing_strategies()
        if sharing_strategy is not None and sharing_strategy not in strategies:
            raise InputError(
                f"data.sharing_strategy: {sharing_strategy!r} is not one of {sorted(strategies)}"
            )
        if test_subjects not in TEST_SUBJECTS:
            raise InputError(f"data.test_subjects: {test_subjects!r} is not one of {TEST_SUBJECTS}")
        if batch_size < 1 or num_workers < 0:
            raise InputError(f"data: batch_size {batch_size} / num_workers {num_workers} invalid")
        self._num_classes = num_classes(target)
        self.save_hyperparameters(ignore=["augmentation"], logger=False)
        self.path = None if path is None else Path(path)
        self.input_mode: InputMode = input_mode
        self.echoes = None if echoes is None else [int(e) for e in echoes]
        self.target: Target = target
        self.normalization: Normalization = normalization
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.num_folds = num_folds
        self.fold = fold
        self.split_file = None if split_file is None else Path(split_file)
        self.test_subjects: TestSubjects = test_subjects
        self.augmentation = augmentation
        self.seed = seed
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.multiprocessing_context = multiprocessing_context
        self.sharing_strategy = sharing_strategy
        self.predict_path = None if predict_path is None else Path(predict_path)
        self.te_ms = None if te_ms is None else [float(t) for t in te_ms]
        self._info: EchoStackInfo | None = None
        self._predict_info: EchoStackInfo | None = None
        self._split: SubjectSplit | None = None
        self._datasets: dict[LoaderSplit, EchoStackDataset] = {}
        self._files: list[EchoStackFile] = []

    # ------------------------------------------------------------------ file and split

    @property
    def info(self) -> EchoStackInfo:
        """Metadata of ``path``, validated on first access (once per process)."""
        if self._info is None:
            if self.path is None:
                raise InputError("data.path: not set; give the echo-stack file to train on")
            self._info = inspect_echo_stack(self.path)
            log.info(
                "%s: %d slices of %d subjects, %d echoes, %dx%d px",
                self.path,
                self._info.n_slices,
                len(self._info.subjects),
                self._info.n_echoes,
                self._info.height,
                self._info.width,
            )
        return self._info

    @property
    def predict_info(self) -> EchoStackInfo:
        """Metadata of the predict file (``predict_path``, else ``path``), validated once."""
        if self.predict_path is None:
            return self.info
        if self._predict_info is None:
            self._predict_info = inspect_echo_stack(self.predict_path)
        return self._predict_info

    @property
    def split(self) -> SubjectSplit:
        """The subject split: read from ``split_file`` if it exists, else made (and saved).

        With ``test_subjects="all"``: every subject in test, ``split_file`` left alone.
        """
        if self._split is None:
            self._split = self._resolve_split()
        return self._split

    def _resolve_split(self) -> SubjectSplit:
        info = self.info
        fingerprint = echo_stack_fingerprint(info)
        if self.test_subjects == "all":
            log.info("testing all %d subjects of %s (no split)", len(info.subjects), info.path)
            return all_test_split(
                info.subject_id,
                seed=self.split_seed,
                fingerprint=fingerprint,
                source=info.path.name,
            )
        if self.split_file is not None and self.split_file.exists():
            split = load_split(self.split_file)
            split.check_matches(
                info.subject_id,
                fingerprint,
                split_path=str(self.split_file),
                data_path=str(info.path),
            )
            wanted = {
                "seed": self.split_seed,
                "num_folds": self.num_folds,
                "fold": self.fold,
                "val_fraction": self.val_fraction,
                "test_fraction": self.test_fraction,
            }
            differ = [
                f"{key}={getattr(split, key)} (config: {value})"
                for key, value in wanted.items()
                if getattr(split, key) != value
            ]
            if differ:
                log.warning(
                    "%s: using the saved split, made with %s", self.split_file, ", ".join(differ)
                )
            log.info("%s: split read back", self.split_file)
            return split
        split = make_subject_split(
            info.subject_id,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.split_seed,
            num_folds=self.num_folds,
            fold=self.fold,
            fingerprint=fingerprint,
            source=info.path.name,
        )
        log.info(
            "subject split (seed %d, fold %s/%s): %d train, %d val, %d test subjects",
            split.seed,
            split.fold,
            split.num_folds,
            len(split.train),
            len(split.val),
            len(split.test),
        )
        if self.split_file is not None and (self.trainer is None or self.trainer.is_global_zero):
            save_split(split, self.split_file)
            log.info("%s: split saved", self.split_file)
        return split

    def save_split(self, path: str | os.PathLike[str]) -> None:
        """Write the subject split as JSON (atomically), e.g. into the run's output folder."""
        save_split(self.split, path)

    def split_indices(self, stage: LoaderSplit) -> np.ndarray:
        """0-based slice indices of a split, ascending (``predict``: every slice of its file)."""
        if stage == "predict":
            return np.arange(self.predict_info.n_slices, dtype=np.int64)
        if stage not in SPLIT_NAMES:
            raise ValueError(f"unknown split {stage!r}; expected train, val, test or predict")
        return self.split.slice_indices(self.info.subject_id, stage)

    # ------------------------------------------------------------------ model-facing sizes

    @property
    def in_channels(self) -> int:
        """Input channels of the network: 1, or the number of echoes stacked as channels."""
        if self.input_mode == "echoes_as_samples":
            return 1
        if self.te_ms is not None:
            return len(self.te_ms)
        if self.echoes is not None:
            return len(self.echoes)
        return (self.info if self.path is not None else self.predict_info).n_echoes

    @property
    def num_classes(self) -> int:
        """Output classes of the network, background included (2, 3 or 17)."""
        return self._num_classes

    @property
    def myocardium_classes(self) -> list[int]:
        """Classes that together form the LV myocardium (for metrics and T2* masks)."""
        return myocardium_classes(self.target)

    # ------------------------------------------------------------------ datasets and loaders

    def _dataset(self, split: LoaderSplit) -> EchoStackDataset:
        info = self.predict_info if split == "predict" else self.info
        source = EchoStackFile(info.path, info=info)
        self._files.append(source)
        options = self._dataset_options(split)
        if split != "predict":
            return EchoStackDataset(source, self.split_indices(split), **options)
        indices = self.split_indices("predict")
        try:
            return EchoStackDataset(source, indices, with_labels=True, **options)
        except InputError as err:
            log.info("predicting without masks: %s", err)
            return EchoStackDataset(source, indices, with_labels=False, **options)

    def _dataset_options(self, split: LoaderSplit) -> dict[str, Any]:
        """Dataset settings of a split: training as configured, every other split per slice.

        Validation, test and prediction show the network one sample per slice: with
        ``echoes_as_samples`` the same echoes come as channels and the module fuses them
        (``echo_fusion``); ``mvn`` of a one-echo sample equals ``mvn_per_channel`` of that echo
        as a channel, so the network sees identical inputs.
        """
        input_mode, normalization = self.input_mode, self.normalization
        if split != "train" and input_mode == "echoes_as_samples":
            input_mode = "echoes_as_channels"
            if normalization == "mvn":
                normalization = "mvn_per_channel"
        return {
            "input_mode": input_mode,
            "echoes": self.echoes,
            "target": self.target,
            "normalization": normalization,
            "transform": self.augmentation if split == "train" else None,
            "te_ms": None if split == "train" else self.te_ms,
        }

    def setup(self, stage: str) -> None:
        """Build the datasets that ``stage`` (fit, validate, test or predict) needs."""
        wanted: dict[str, tuple[LoaderSplit, ...]] = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
        }
        if stage not in wanted:
            raise ValueError(f"unknown stage {stage!r}; expected one of {sorted(wanted)}")
        if stage != "predict":
            if self.test_subjects == "all" and stage != "test":
                raise InputError(
                    f"data.test_subjects=all: every subject of {self.info.path} is a test "
                    f"subject, none is left to {stage}"
                )
            if "labels" not in self.info.datasets:
                raise InputError(f"{self.info.path}: labels: dataset is missing, needed to {stage}")
            if self.te_ms is None or "train" in wanted[stage]:
                resolve_echoes(self.echoes, self.info)
        for split in wanted[stage]:
            if split not in self._datasets:
                self._datasets[split] = self._dataset(split)

    def teardown(self, stage: str) -> None:
        """Close this process's HDF5 handles; they reopen lazily if the data is read again."""
        for source in self._files:
            source.close()

    def dataset(self, split: LoaderSplit) -> EchoStackDataset:
        """The dataset of a split, once :meth:`setup` has built it."""
        if split not in self._datasets:
            raise RuntimeError(f"the {split} dataset is not built; call setup() first")
        return self._datasets[split]

    def _dataloader_factory(self, split: LoaderSplit) -> DataLoader[dict[str, torch.Tensor]]:
        dataset = self.dataset(split)
        train = split == "train"
        seed = self.seed if self.seed is not None else torch.initial_seed() % 2**63
        sampler = EpochSampler(len(dataset), seed) if train else None
        workers = self.num_workers > 0
        if workers and self.sharing_strategy is not None:
            torch.multiprocessing.set_sharing_strategy(self.sharing_strategy)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            # worker seeds come from this generator, not the global one, so creating a loader
            # (e.g. after a resume) leaves the model's random stream (dropout, crops) alone
            generator=torch.Generator().manual_seed(seed),
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            pin_memory=self.pin_memory,
            persistent_workers=workers,
            worker_init_fn=_seed_worker if workers else None,
            multiprocessing_context=self.multiprocessing_context if workers else None,
        )

    def train_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        """Shuffled, augmented training batches."""
        return self._dataloader_factory("train")

    def val_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        """Validation batches in slice order, one sample per slice."""
        return self._dataloader_factory("val")

    def test_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        """Test batches in slice order, one sample per slice."""
        return self._dataloader_factory("test")

    def predict_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        """Every slice of the predict file in order, one sample per slice; ``mask`` if labelled."""
        return self._dataloader_factory("predict")
