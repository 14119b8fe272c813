"""A map-style dataset over the slices of one echo-stack file, and the target codings.

Each item is a dict for the default collate function::

    image             float32 [C, H, W]  normalized signal (C = 1 for echoes_as_samples)
    mask              uint8   [H, W]     target classes (only when the dataset has labels)
    sample_id         int64   []         slice_index * E + echo_index, or slice_index
    slice_index       int64   []         0-based slice in the file
    echo_index        int64   []         0-based echo, -1 for echoes_as_channels
    pixel_spacing_mm  float32 [2]        (row, column) spacing of the slice as stored
    te_ms             float32 [C]        echo times of the image's channels in ms

``pixel_spacing_mm`` is the slice's spacing in the file; augmentation (rotation, scaling) does
not update it, and validation, test and predict data are never augmented.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from cmrseg.core.errors import InputError
from cmrseg.core.geometry import aha_segment_map
from cmrseg.core.labels import MYOCARDIUM
from cmrseg.data.echo_stack import EchoStackInfo
from cmrseg.data.resample import check_te_coverage, resample_decay, same_echo_times
from cmrseg.data.transforms import Normalization, augment, iter_transforms, normalize
from cmrseg.data.transforms import seed_transform as _seed_transform

__all__ = [
    "INPUT_MODES",
    "TARGETS",
    "EchoStackDataset",
    "InputMode",
    "SliceReader",
    "Target",
    "encode_target",
    "myocardium_classes",
    "num_classes",
    "resolve_echoes",
]

log = logging.getLogger(__name__)

InputMode = Literal["echoes_as_samples", "echoes_as_channels"]
INPUT_MODES: tuple[InputMode, ...] = ("echoes_as_samples", "echoes_as_channels")
Target = Literal["binary", "three_class", "aha16"]
TARGETS: tuple[Target, ...] = ("binary", "three_class", "aha16")
_AHA_LOCATIONS = ("base", "mid", "apex")


def num_classes(target: Target) -> int:
    """Number of classes of a target coding, background included (2, 3 or 17)."""
    return {"binary": 2, "three_class": 3, "aha16": 17}[_check_target(target)]


def myocardium_classes(target: Target) -> list[int]:
    """Classes that together form the LV myocardium: ``[1]``, ``[2]`` or ``[1, ..., 16]``."""
    return {"binary": [1], "three_class": [2], "aha16": list(range(1, 17))}[_check_target(target)]


def _check_target(target: str) -> Target:
    if target not in TARGETS:
        raise InputError(f"data.target: {target!r} is not one of {TARGETS}")
    return target  # type: ignore[return-value]


def encode_target(
    labels: np.ndarray,
    target: Target,
    *,
    rv_insertion: np.ndarray | None = None,
    slice_location: str = "",
) -> np.ndarray:
    """Turn contract labels into the classes a network is trained on.

    Args:
        labels: uint8 ``[H, W]``; 0 background, 1 LV blood pool, 2 LV myocardium.
        target: ``binary`` (1 myocardium, 0 rest), ``three_class`` (the file's coding) or
            ``aha16`` (0 outside the myocardium, 1..16 AHA segment of each myocardial pixel).
        rv_insertion: ``(row, col)`` of the anterior RV insertion point; ``aha16`` only.
        slice_location: ``base``, ``mid`` or ``apex``; ``aha16`` only.

    Returns:
        uint8 ``[H, W]`` class map (uint8, because OpenCV warps int64 masks differently from
        the image; the dataset casts to int64 after augmentation).
    """
    if target == "binary":
        return (labels == MYOCARDIUM).astype(np.uint8)
    if target == "three_class":
        return labels.astype(np.uint8)
    if target == "aha16":
        if rv_insertion is None:
            raise ValueError("aha16 targets need rv_insertion")
        if not np.any(labels == MYOCARDIUM):
            return np.zeros(labels.shape, dtype=np.uint8)
        point = (float(rv_insertion[0]), float(rv_insertion[1]))
        return aha_segment_map(labels, point, slice_location).astype(np.uint8)
    raise InputError(f"data.target: {target!r} is not one of {TARGETS}")


class SliceReader(Protocol):
    """What the dataset needs from its source: the file's info and slice reads.

    :class:`~cmrseg.data.echo_stack.EchoStackFile` is the implementation for files; anything
    with the same two members (e.g. arrays held in memory) works too.
    """

    info: EchoStackInfo

    def read(self, name: str, index: int, channels: Sequence[int] | None = None) -> np.ndarray:
        """Read slice ``index`` of dataset ``name``, only ``channels`` of its first axis if set."""
        ...


class EchoStackDataset(Dataset[dict[str, torch.Tensor]]):
    """Samples of selected slices of one echo-stack file.

    Args:
        source: Where slices come from, usually an
            :class:`~cmrseg.data.echo_stack.EchoStackFile` (which opens its HDF5 handle lazily
            in each worker process).
        slice_indices: 0-based slices of the file that this dataset serves.
        input_mode: ``echoes_as_samples``: every selected echo of a slice is its own
            single-channel sample with the slice's mask; ``echoes_as_channels``: the selected
            echoes of a slice are the channels of one sample.
        echoes: 0-based echoes to use, or ``None`` for all.
        target: Target coding (see :func:`encode_target`).
        normalization: See :func:`~cmrseg.data.transforms.normalize`.
        transform: Optional albumentations transform applied to image and mask (training).
        with_labels: Whether items carry a ``mask``; needs ``labels`` in the file.
        te_ms: ``echoes_as_channels`` only: the echo times (ms) the channels must have, e.g.
            those a model was trained on; ``echoes`` is then unused. A slice that has echoes at
            these times (within 0.5 %) gives them as stored; any other slice gives its decay
            resampled to them (:func:`~cmrseg.data.resample.resample_decay`). ``None``: the
            ``echoes`` as stored.

    Raises:
        InputError: An echo index out of range, labels requested from a file without them,
            ``aha16`` targets for slices without RV insertion point or slice location, or a
            slice whose echoes do not cover ``te_ms``.
    """

    def __init__(
        self,
        source: SliceReader,
        slice_indices: Sequence[int] | np.ndarray,
        *,
        input_mode: InputMode,
        echoes: Sequence[int] | None,
        target: Target,
        normalization: Normalization,
        transform: Callable[..., dict[str, Any]] | None = None,
        with_labels: bool = True,
        te_ms: Sequence[float] | None = None,
    ) -> None:
        info = source.info
        if input_mode not in INPUT_MODES:
            raise InputError(f"data.input_mode: {input_mode!r} is not one of {INPUT_MODES}")
        if te_ms is not None and input_mode != "echoes_as_channels":
            raise ValueError("te_ms needs input_mode echoes_as_channels")
        self.source = source
        self.slice_indices = np.asarray(slice_indices, dtype=np.int64)
        self.input_mode = input_mode
        self.te_ms = None if te_ms is None else np.asarray(te_ms, np.float32)
        self._stored_echoes: dict[int, list[int]] = {}
        if self.te_ms is not None:
            self.echoes = tuple(range(len(self.te_ms)))
            self._match_echo_times(info)
        else:
            self.echoes = resolve_echoes(echoes, info)
        self.target = _check_target(target)
        self.normalization = normalization
        self.transform = transform
        self.with_labels = with_labels
        if np.any((self.slice_indices < 0) | (self.slice_indices >= info.n_slices)):
            raise ValueError(f"slice indices outside [0, {info.n_slices}) of {info.path}")
        if with_labels:
            self._check_labels(info)

    def _match_echo_times(self, info: EchoStackInfo) -> None:
        """Per slice: the stored echoes at ``te_ms``, or a check that resampling can reach them."""
        for i in self.slice_indices.tolist():
            te = info.te_ms[i]
            nearest = [int(np.argmin(np.abs(te - t))) for t in self.te_ms]
            if same_echo_times(te[nearest], self.te_ms):
                self._stored_echoes[i] = nearest
            else:
                check_te_coverage(te, self.te_ms, f"{info.path}: slice {i}")
        resampled = len(self.slice_indices) - len(self._stored_echoes)
        if resampled:
            log.info(
                "%s: %d slices resampled to the echo times %s ms (log-linear per pixel)",
                info.path,
                resampled,
                ", ".join(f"{t:.2f}" for t in self.te_ms),
            )

    def _check_labels(self, info: EchoStackInfo) -> None:
        if "labels" not in info.datasets:
            raise InputError(f"{info.path}: labels: dataset is missing, needed for training")
        if self.target != "aha16":
            return
        if info.rv_insertion is None:
            raise InputError(f"{info.path}: rv_insertion: dataset is missing, needed for aha16")
        for i in self.slice_indices:
            if not np.isfinite(info.rv_insertion[i]).all():
                raise InputError(
                    f"{info.path}: rv_insertion: unknown (NaN) at slice {i}, needed for aha16"
                )
            if info.slice_location[i] not in _AHA_LOCATIONS:
                raise InputError(
                    f"{info.path}: slice_location: unknown at slice {i}, needed for aha16"
                )
        mirrors = [
            type(t).__name__
            for t in iter_transforms(self.transform)
            if type(t).__name__ in ("HorizontalFlip", "VerticalFlip", "Transpose", "D4")
        ]
        if mirrors:
            log.warning(
                "aha16 targets with mirroring (%s): mirroring reverses the counterclockwise "
                "numbering of the AHA segments, so anterior and inferior walls become ambiguous",
                ", ".join(mirrors),
            )

    @property
    def in_channels(self) -> int:
        """Channels C of ``image``."""
        return 1 if self.input_mode == "echoes_as_samples" else len(self.echoes)

    def __len__(self) -> int:
        per_slice = len(self.echoes) if self.input_mode == "echoes_as_samples" else 1
        return len(self.slice_indices) * per_slice

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Return sample ``key``, or ``(index, augmentation_seed)`` as ``EpochSampler`` yields.

        With a seed the augmentation of this sample depends on that seed alone, not on the
        worker process that draws it or on the samples drawn before.
        """
        index, augmentation_seed = key if isinstance(key, tuple) else (key, None)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        info = self.source.info
        if self.input_mode == "echoes_as_samples":
            slice_index = int(self.slice_indices[index // len(self.echoes)])
            echo_index = self.echoes[index % len(self.echoes)]
            sample_id = slice_index * info.n_echoes + echo_index
            channels: list[int] = [echo_index]
        else:
            slice_index = int(self.slice_indices[index])
            echo_index = -1
            sample_id = slice_index
            channels = list(self._stored_echoes.get(slice_index, self.echoes))
        te_ms = info.te_ms[slice_index, channels].astype(np.float32)
        if self.te_ms is not None and slice_index not in self._stored_echoes:
            image = resample_decay(
                self.source.read("images", slice_index), info.te_ms[slice_index], self.te_ms
            )
            te_ms = self.te_ms
        else:
            image = self.source.read("images", slice_index, channels)
        mask = None
        if self.with_labels:
            mask = encode_target(
                self.source.read("labels", slice_index),
                self.target,
                rv_insertion=None if info.rv_insertion is None else info.rv_insertion[slice_index],
                slice_location=info.slice_location[slice_index],
            )
        if self.transform is not None:
            if augmentation_seed is not None:
                _seed_transform(self.transform, augmentation_seed)
            image, mask = augment(self.transform, image, mask)
        image = normalize(image, self.normalization)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "sample_id": torch.tensor(sample_id, dtype=torch.int64),
            "slice_index": torch.tensor(slice_index, dtype=torch.int64),
            "echo_index": torch.tensor(echo_index, dtype=torch.int64),
            "pixel_spacing_mm": torch.from_numpy(info.pixel_spacing_mm[slice_index].copy()),
            "te_ms": torch.from_numpy(np.array(te_ms, dtype=np.float32)),
        }
        if mask is not None:
            item["mask"] = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))
        return item


def resolve_echoes(echoes: Sequence[int] | None, info: EchoStackInfo) -> tuple[int, ...]:
    """Check 0-based echo indices against a file; ``None`` means all ``E`` echoes.

    Raises:
        InputError: An index outside ``[0, E)``, a repeat, or an empty list.
    """
    if echoes is None:
        return tuple(range(info.n_echoes))
    chosen = tuple(int(e) for e in echoes)
    if not chosen:
        raise InputError("data.echoes: empty list; give 0-based echo indices or null for all")
    bad = [e for e in chosen if not 0 <= e < info.n_echoes]
    if bad:
        raise InputError(
            f"data.echoes: {bad} outside [0, {info.n_echoes}) of {info.path} "
            f"({info.n_echoes} echoes; indices are 0-based)"
        )
    if len(set(chosen)) != len(chosen):
        raise InputError(f"data.echoes: {list(chosen)} repeats an echo")
    return chosen
