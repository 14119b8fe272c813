"""The echo-stack HDF5 format (contract version 1): strict reader, lazy reader, atomic writer.

One file holds N short-axis slices of E echoes of H x W magnitude pixels plus per-slice
metadata; the README section "The echo-stack format" is the user documentation. Every check
of the contract lives in one table (``_DATASETS``) and one set of value rules
(``_check_values``) that the reader and the writer share, so a file that cmrseg writes is
always one it can read back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cmrseg.core.atomic import atomic_path
from cmrseg.core.errors import InputError
from cmrseg.core.labels import LABEL_VALUES

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SLICE_LOCATIONS",
    "EchoStack",
    "EchoStackError",
    "EchoStackFile",
    "EchoStackInfo",
    "SliceSource",
    "inspect_echo_stack",
    "read_echo_stack",
    "write_echo_stack",
]

log = logging.getLogger(__name__)

FORMAT_NAME = "cmrseg.echo-stack"
FORMAT_VERSION = 1
SLICE_LOCATIONS = ("base", "mid", "apex", "")
_IMAGE_BLOCK = 16  # slices checked at a time when scanning `images` without loading it whole


class EchoStackError(InputError):
    """A file or an in-memory stack breaks the echo-stack contract.

    Attributes:
        path: The offending file (or ``<memory>``).
        dataset: The offending dataset or attribute, or ``None`` for the file as a whole.
        problem: What is wrong, in words.
    """

    def __init__(self, path: str | os.PathLike[str], dataset: str | None, problem: str) -> None:
        self.path = str(path)
        self.dataset = dataset
        self.problem = problem
        where = f"{self.path}: {dataset}" if dataset else self.path
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class _Spec:
    """Shape and kind of one dataset; shape letters are N, E, H, W or literal sizes."""

    shape: tuple[str | int, ...]
    kind: str  # "float", "int", "str"
    dtype: Any
    required: bool


_DATASETS: dict[str, _Spec] = {
    "images": _Spec(("N", "E", "H", "W"), "float", np.float32, True),
    "te_ms": _Spec(("N", "E"), "float", np.float32, True),
    "subject_id": _Spec(("N",), "str", str, True),
    "slice_location": _Spec(("N",), "str", str, True),
    "pixel_spacing_mm": _Spec(("N", 2), "float", np.float32, True),
    "labels": _Spec(("N", "H", "W"), "int", np.uint8, False),
    "rv_insertion": _Spec(("N", 2), "float", np.float32, False),
    "phase_encoding_axis": _Spec(("N",), "int", np.int8, False),
    "t2star_ms": _Spec(("N", "H", "W"), "float", np.float32, False),
    "labels_pred": _Spec(("N", "H", "W"), "int", np.uint8, False),
    "t2star_map_ms": _Spec(("N", "H", "W"), "float", np.float32, False),
    "field_strength_t": _Spec(("N",), "float", np.float32, False),
    "seg_uncertainty": _Spec(("N",), "float", np.float32, False),
}


class SliceSource:
    """Images ``[N, E, H, W]`` made one slice at a time: large stacks written in constant memory.

    :func:`write_echo_stack` asks for, checks and writes one slice at a time; indexing with an
    int gives one slice ``[E, H, W]``, and ``np.asarray(source)`` reads them all.

    Args:
        shape: ``(N, E, H, W)``.
        read_slice: Returns slice ``i`` as ``[E, H, W]``; may raise :class:`InputError`.
    """

    ndim = 4

    def __init__(
        self, shape: tuple[int, int, int, int], read_slice: Callable[[int], np.ndarray]
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self._read_slice = read_slice

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            image = np.asarray(self._read_slice(int(index)), dtype=np.float32)
            if image.shape != self.shape[1:]:
                raise ValueError(f"slice {index} has shape {image.shape}, not {self.shape[1:]}")
            return image
        return np.stack([self[int(i)] for i in np.arange(self.shape[0])[index]])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        images = self[:]
        return images if dtype is None else images.astype(dtype)


@dataclass
class EchoStack:
    """An echo stack held in memory; field names and codings follow the contract.

    Attributes:
        images: Magnitude signal, float32 ``[N, E, H, W]``, finite and >= 0.
        te_ms: Echo times in ms, float32 ``[N, E]``, strictly increasing along E.
        subject_id: Pseudonymous subject key per slice, ``[N]``.
        slice_location: ``base``, ``mid``, ``apex`` or ``""`` per slice, ``[N]``.
        pixel_spacing_mm: (row, column) spacing in mm, float32 ``[N, 2]``.
        labels: Optional reference labels, uint8 ``[N, H, W]``: 0 background, 1 LV blood
            pool, 2 LV myocardium.
        rv_insertion: Optional (row, column) of the anterior RV insertion point, float32
            ``[N, 2]``, NaN when unknown.
        phase_encoding_axis: Optional image axis of phase encoding, int8 ``[N]`` (0 rows,
            1 columns, -1 unknown).
        t2star_ms: Optional true T2* map (synthetic data), float32 ``[N, H, W]``, NaN
            outside tissue.
        labels_pred: Optional predicted labels, same coding as ``labels``.
        t2star_map_ms: Optional pixel-wise T2* in the predicted myocardium, NaN elsewhere.
        field_strength_t: Optional main field of the scanner in tesla, float32 ``[N]``, NaN
            when unknown.
        seg_uncertainty: Optional segmentation uncertainty of ``labels_pred``, float32
            ``[N]`` in [0, 1] (share of the myocardium on which rotated passes disagree), NaN
            when not measured.
    """

    images: np.ndarray | SliceSource
    te_ms: np.ndarray
    subject_id: list[str]
    slice_location: list[str]
    pixel_spacing_mm: np.ndarray
    labels: np.ndarray | None = None
    rv_insertion: np.ndarray | None = None
    phase_encoding_axis: np.ndarray | None = None
    t2star_ms: np.ndarray | None = None
    labels_pred: np.ndarray | None = None
    t2star_map_ms: np.ndarray | None = None
    field_strength_t: np.ndarray | None = None
    seg_uncertainty: np.ndarray | None = None

    @property
    def n_slices(self) -> int:
        """Number of slices N."""
        return int(self.images.shape[0])

    @property
    def n_echoes(self) -> int:
        """Number of echoes E."""
        return int(self.images.shape[1])

    def present(self) -> dict[str, Any]:
        """Return the datasets that are set, by contract name."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    def select(self, index: np.ndarray | list[int]) -> EchoStack:
        """Return a new stack holding the slices at ``index`` (in that order)."""
        idx = np.asarray(index, dtype=np.int64)
        out: dict[str, Any] = {}
        for name, value in self.present().items():
            out[name] = [value[i] for i in idx] if isinstance(value, list) else value[idx]
        return EchoStack(**out)


@dataclass(frozen=True)
class EchoStackInfo:
    """Metadata of a validated file; images and maps stay on disk.

    Attributes:
        path: The file.
        n_slices: N.
        n_echoes: E.
        height: H.
        width: W.
        datasets: Names of the contract datasets present in the file.
        subject_id: ``[N]`` subject keys.
        slice_location: ``[N]`` slice locations.
        te_ms: float32 ``[N, E]`` echo times.
        pixel_spacing_mm: float32 ``[N, 2]`` spacing.
        rv_insertion: float32 ``[N, 2]`` or ``None`` when the file has none.
        phase_encoding_axis: int8 ``[N]`` or ``None``.
        field_strength_t: float32 ``[N]`` (NaN unknown) or ``None`` when the file has none.
    """

    path: Path
    n_slices: int
    n_echoes: int
    height: int
    width: int
    datasets: frozenset[str]
    subject_id: tuple[str, ...]
    slice_location: tuple[str, ...]
    te_ms: np.ndarray = field(repr=False)
    pixel_spacing_mm: np.ndarray = field(repr=False)
    rv_insertion: np.ndarray | None = field(default=None, repr=False)
    phase_encoding_axis: np.ndarray | None = field(default=None, repr=False)
    field_strength_t: np.ndarray | None = field(default=None, repr=False)

    @property
    def subjects(self) -> list[str]:
        """Distinct subject keys in order of first appearance."""
        return list(dict.fromkeys(self.subject_id))


# --------------------------------------------------------------------------- shared value rules


def _resolve_shape(spec: _Spec, dims: dict[str, int]) -> tuple[int, ...]:
    return tuple(dims[s] if isinstance(s, str) else s for s in spec.shape)


def _check_kind(where: str, name: str, dtype: np.dtype, kind: str) -> None:
    ok = {
        "float": np.issubdtype(dtype, np.floating),
        "int": np.issubdtype(dtype, np.integer) or dtype == np.bool_,
        "str": dtype.kind in "OSU" or h5py.check_string_dtype(dtype) is not None,
    }[kind]
    if not ok:
        raise EchoStackError(where, name, f"dtype {dtype} is not a {kind} type")


def _check_values(where: str, name: str, value: np.ndarray | list[str], offset: int = 0) -> None:
    """Apply the contract's value rules to one dataset (or a block of slices starting at offset)."""

    def bad(mask: np.ndarray, problem: str) -> None:
        if np.any(mask):
            first = int(np.argwhere(mask)[0][0]) + offset
            raise EchoStackError(where, name, f"{problem} (first at slice {first})")

    if name == "images":
        bad(~np.isfinite(value).all(axis=(1, 2, 3)), "non-finite values")
        bad((value < 0).any(axis=(1, 2, 3)), "negative values (magnitude must be >= 0)")
    elif name == "te_ms":
        bad(~np.isfinite(value).all(axis=1), "non-finite echo times")
        bad((value <= 0).any(axis=1), "echo times must be > 0 ms")
        if value.shape[1] > 1:
            bad((np.diff(value, axis=1) <= 0).any(axis=1), "echo times not strictly increasing")
    elif name == "pixel_spacing_mm":
        bad(~(np.isfinite(value) & (value > 0)).all(axis=1), "spacing must be finite and > 0 mm")
    elif name in ("labels", "labels_pred"):
        bad(
            ~np.isin(value, LABEL_VALUES).all(axis=(1, 2)),
            f"label values outside {set(LABEL_VALUES)}",
        )
    elif name == "rv_insertion":
        bad(np.isinf(value).any(axis=1), "infinite coordinates (use NaN for unknown)")
    elif name == "phase_encoding_axis":
        bad(~np.isin(value, (-1, 0, 1)), "values outside {-1, 0, 1}")
    elif name == "field_strength_t":
        bad(np.isinf(value) | (value <= 0), "field strength must be > 0 T or NaN (unknown)")
    elif name == "seg_uncertainty":
        bad((value < 0) | (value > 1), "values outside [0, 1] (NaN: not measured)")
    elif name in ("t2star_ms", "t2star_map_ms"):
        bad((np.isinf(value) | (value <= 0)).any(axis=(1, 2)), "T2* must be > 0 ms or NaN")
    elif name == "subject_id":
        bad(np.array([not s for s in value]), "empty subject key")
    elif name == "slice_location":
        bad(
            np.array([s not in SLICE_LOCATIONS for s in value]),
            f"value not one of {SLICE_LOCATIONS}",
        )


def _dims_from_images(where: str, shape: tuple[int, ...]) -> dict[str, int]:
    if len(shape) != 4:
        raise EchoStackError(where, "images", f"expected 4 dimensions [N, E, H, W], got {shape}")
    if min(shape) < 1:
        raise EchoStackError(where, "images", f"empty dimension in shape {shape}")
    return dict(zip("NEHW", shape, strict=True))


def _check_shape(where: str, name: str, shape: tuple[int, ...], dims: dict[str, int]) -> None:
    expected = _resolve_shape(_DATASETS[name], dims)
    if tuple(shape) != expected:
        letters = ", ".join(str(s) for s in _DATASETS[name].shape)
        raise EchoStackError(
            where, name, f"shape {tuple(shape)} does not match [{letters}] = {expected}"
        )


# --------------------------------------------------------------------------- reading


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise EchoStackError(path, None, "file not found")
    if path.is_dir():
        raise EchoStackError(path, None, "is a folder, not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise EchoStackError(
            path, None, f"not a readable HDF5 file (truncated or not HDF5): {err}"
        ) from None


def _read(where: Path, f: h5py.File, name: str) -> Any:
    """Read one whole dataset, turning HDF5 read failures into contract errors."""
    ds = f[name]
    try:
        if _DATASETS[name].kind == "str":
            return [str(s) for s in ds.asstr()[()]]
        return ds[()]
    except (OSError, ValueError, TypeError) as err:
        raise EchoStackError(
            where, name, f"cannot be read (file truncated or damaged?): {err}"
        ) from None


def _check_header(where: Path, f: h5py.File) -> dict[str, int]:
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode("utf-8", "replace")
    if fmt != FORMAT_NAME:
        raise EchoStackError(
            where, "format", f"root attribute is {fmt!r}, expected {FORMAT_NAME!r}"
        )
    version = f.attrs.get("version")
    if not isinstance(version, (int, np.integer)) or isinstance(version, bool):
        raise EchoStackError(
            where, "version", f"root attribute is {version!r}, expected an integer"
        )
    if int(version) != FORMAT_VERSION:
        raise EchoStackError(
            where,
            "version",
            f"unknown version {int(version)}; this cmrseg reads version {FORMAT_VERSION}",
        )
    for name, spec in _DATASETS.items():
        if name not in f:
            if spec.required:
                raise EchoStackError(where, name, "required dataset is missing")
            continue
        if not isinstance(f[name], h5py.Dataset):
            raise EchoStackError(where, name, "is a group, expected a dataset")
        _check_kind(str(where), name, f[name].dtype, spec.kind)
    dims = _dims_from_images(str(where), f["images"].shape)
    for name in _DATASETS:
        if name in f:
            _check_shape(str(where), name, f[name].shape, dims)
    unknown = sorted(set(f.keys()) - set(_DATASETS))
    if unknown:
        log.debug("%s: ignoring datasets outside the contract: %s", where, unknown)
    return dims


def _scan_images(where: Path, ds: h5py.Dataset) -> None:
    """Check `images` block by block so a large file is never held in memory at once."""
    for start in range(0, ds.shape[0], _IMAGE_BLOCK):
        try:
            block = ds[start : start + _IMAGE_BLOCK]
        except (OSError, ValueError) as err:
            raise EchoStackError(
                where, "images", f"cannot be read (file truncated or damaged?): {err}"
            ) from None
        _check_values(str(where), "images", block, offset=start)


def inspect_echo_stack(path: str | os.PathLike[str]) -> EchoStackInfo:
    """Validate a file completely and return its metadata without keeping images in memory.

    Args:
        path: An echo-stack HDF5 file.

    Returns:
        The file's metadata.

    Raises:
        EchoStackError: The file breaks the contract; the message names file, dataset and rule.
    """
    where = Path(path)
    with _open(where) as f:
        dims = _check_header(where, f)
        _scan_images(where, f["images"])
        small: dict[str, Any] = {}
        for name in _DATASETS:
            if name in f and name != "images":
                small[name] = _read(where, f, name)
                _check_values(str(where), name, small[name])
        return EchoStackInfo(
            path=where,
            n_slices=dims["N"],
            n_echoes=dims["E"],
            height=dims["H"],
            width=dims["W"],
            datasets=frozenset(n for n in _DATASETS if n in f),
            subject_id=tuple(small["subject_id"]),
            slice_location=tuple(small["slice_location"]),
            te_ms=np.asarray(small["te_ms"], dtype=np.float32),
            pixel_spacing_mm=np.asarray(small["pixel_spacing_mm"], dtype=np.float32),
            rv_insertion=_as(small.get("rv_insertion"), np.float32),
            phase_encoding_axis=_as(small.get("phase_encoding_axis"), np.int8),
            field_strength_t=_as(small.get("field_strength_t"), np.float32),
        )


def _as(value: np.ndarray | None, dtype: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=dtype)


def read_echo_stack(path: str | os.PathLike[str]) -> EchoStack:
    """Read and validate a whole file into memory.

    Args:
        path: An echo-stack HDF5 file.

    Returns:
        The stack, with every array converted to the contract's dtype.

    Raises:
        EchoStackError: The file breaks the contract; the message names file, dataset and rule.
    """
    where = Path(path)
    with _open(where) as f:
        _check_header(where, f)
        values: dict[str, Any] = {}
        for name, spec in _DATASETS.items():
            if name not in f:
                continue
            value = _read(where, f, name)
            _check_values(str(where), name, value)
            values[name] = value if spec.kind == "str" else np.asarray(value, dtype=spec.dtype)
    return EchoStack(**values)


class EchoStackFile:
    """Lazy, per-process reader of one validated file, for datasets and data loaders.

    The HDF5 handle is opened on first access in each process (workers of a ``DataLoader``,
    DDP ranks) and is never pickled, so it is safe under fork, spawn and forkserver.

    Args:
        path: An echo-stack HDF5 file.
        info: Its metadata from :func:`inspect_echo_stack`; computed when omitted.
    """

    def __init__(self, path: str | os.PathLike[str], info: EchoStackInfo | None = None) -> None:
        self.path = Path(path)
        self.info = info if info is not None else inspect_echo_stack(self.path)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._datasets: dict[str, h5py.Dataset] = {}

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._datasets = {}
        return self._file

    def _dataset(self, name: str) -> h5py.Dataset:
        """The open dataset ``name`` of this process (opening one costs ~0.4 ms; reuse it)."""
        handle = self._handle()
        if name not in self._datasets:
            self._datasets[name] = handle[name]
        return self._datasets[name]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        state["_datasets"] = {}
        return state

    def __len__(self) -> int:
        return self.info.n_slices

    def read(self, name: str, index: int, channels: Sequence[int] | None = None) -> np.ndarray:
        """Read slice ``index`` of dataset ``name`` (e.g. ``images`` gives ``[E, H, W]``).

        Args:
            name: Dataset name.
            index: Slice index.
            channels: Indices along the slice's first axis (e.g. echoes) to read, in this
                order, or ``None`` for all; only the selected bytes are read from the file.
        """
        if name not in self.info.datasets:
            raise EchoStackError(self.path, name, "dataset is not in this file")
        dataset = self._dataset(name)
        if channels is None:
            data = dataset[index]
        else:
            wanted = [int(c) for c in channels]
            first, last = min(wanted), max(wanted)
            if wanted == list(range(first, last + 1)):
                data = dataset[index, first : last + 1]
            else:
                order = sorted(set(wanted))  # h5py reads increasing indices only
                data = dataset[index, order][[order.index(c) for c in wanted]]
        return np.asarray(data, dtype=_DATASETS[name].dtype)

    def iter_slices(self, name: str) -> Iterator[np.ndarray]:
        """Yield the slices of dataset ``name`` one by one."""
        for i in range(len(self)):
            yield self.read(name, i)

    def close(self) -> None:
        """Close the handle of this process, if open."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None
        self._datasets = {}


# --------------------------------------------------------------------------- writing


def _validate_stack(stack: EchoStack) -> dict[str, Any]:
    """Check everything but the images of a :class:`SliceSource` (checked as they are written)."""
    where = "<memory>"
    dims = _dims_from_images(where, tuple(stack.images.shape))
    values: dict[str, Any] = {}
    for name, value in stack.present().items():
        spec = _DATASETS[name]
        if isinstance(value, SliceSource):
            values[name] = value
            continue
        if spec.kind == "str":
            value = [str(s) for s in value]
            shape: tuple[int, ...] = (len(value),)
        else:
            arr = np.asarray(value)
            _check_kind(where, name, arr.dtype, spec.kind)
            value = arr.astype(spec.dtype, copy=False)
            shape = value.shape
        _check_shape(where, name, shape, dims)
        _check_values(where, name, value)
        values[name] = value
    return values


def write_echo_stack(
    path: str | os.PathLike[str],
    stack: EchoStack,
    *,
    compression: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Validate ``stack`` and write it atomically in the contract's format.

    ``images`` is chunked one slice per chunk; the file appears only once it is complete. Images
    given as a :class:`SliceSource` are read, checked and written one slice at a time.

    Args:
        path: Destination file; an existing file is replaced only on success.
        stack: The data to write.
        compression: Optional h5py compression filter for the image chunks (e.g. ``"lzf"``).
        progress: Optional callback receiving the number of slices written after each slice.

    Raises:
        EchoStackError: ``stack`` breaks the contract (nothing is written).
        InputError: A :class:`SliceSource` could not produce a slice (nothing is written).
    """
    values = _validate_stack(stack)
    n, e, h, w = values["images"].shape
    lazy = isinstance(values["images"], SliceSource)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["version"] = np.int64(FORMAT_VERSION)
        for name, value in values.items():
            if name == "images":
                ds = f.create_dataset(
                    name,
                    shape=(n, e, h, w),
                    dtype=np.float32,
                    chunks=(1, e, h, w),
                    compression=compression,
                )
                for i in range(n):
                    image = value[i]
                    if lazy:
                        _check_values("<memory>", name, image[None], offset=i)
                    ds[i] = image
                    if progress is not None:
                        progress(1)
            elif _DATASETS[name].kind == "str":
                f.create_dataset(
                    name, data=np.array(value, dtype=object), dtype=h5py.string_dtype("utf-8")
                )
            elif value.ndim == 3:
                f.create_dataset(name, data=value, chunks=(1, h, w))
            else:
                f.create_dataset(name, data=value)
