"""The echo-stack format: round trip, lazy access and every refusal the contract lists."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from cmrseg.data.echo_stack import (
    FORMAT_NAME,
    EchoStack,
    EchoStackError,
    EchoStackFile,
    SliceSource,
    inspect_echo_stack,
    read_echo_stack,
    write_echo_stack,
)

N, E, H, W = 4, 5, 12, 16


def make_stack(seed: int = 0, **optional: bool) -> EchoStack:
    rng = np.random.default_rng(seed)
    te = np.tile(np.linspace(2.97, 21.68, E, dtype=np.float32), (N, 1))
    labels = rng.integers(0, 3, (N, H, W), dtype=np.uint8)
    stack = EchoStack(
        images=rng.random((N, E, H, W), dtype=np.float32) * 100,
        te_ms=te,
        subject_id=["S0001", "S0001", "S0002", "S0002"],
        slice_location=["base", "mid", "apex", ""],
        pixel_spacing_mm=np.full((N, 2), 1.4, np.float32),
        labels=labels,
        rv_insertion=np.array([[3, 4], [np.nan, np.nan], [5, 6], [1, 2]], np.float32),
        phase_encoding_axis=np.array([0, 0, 1, -1], np.int8),
        t2star_ms=np.where(labels == 2, 20.0, np.nan).astype(np.float32),
        field_strength_t=np.array([1.5, 1.5, 3.0, np.nan], np.float32),
    )
    for name, keep in optional.items():
        if not keep:
            setattr(stack, name, None)
    return stack


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.h5"
    write_echo_stack(path, make_stack())
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_keeps_every_dataset(good_file: Path) -> None:
    original = make_stack()
    back = read_echo_stack(good_file)
    for name, value in original.present().items():
        got = getattr(back, name)
        if isinstance(value, list):
            assert got == value
        else:
            np.testing.assert_array_equal(got, value)
            assert got.dtype == value.dtype
    with h5py.File(good_file) as f:
        assert f.attrs["format"] == FORMAT_NAME
        assert int(f.attrs["version"]) == 1
        assert f["images"].chunks == (1, E, H, W)


def test_required_only_round_trip(tmp_path: Path) -> None:
    stack = make_stack(
        labels=False,
        rv_insertion=False,
        phase_encoding_axis=False,
        t2star_ms=False,
        field_strength_t=False,
    )
    write_echo_stack(tmp_path / "min.h5", stack)
    info = inspect_echo_stack(tmp_path / "min.h5")
    assert info.datasets == {"images", "te_ms", "subject_id", "slice_location", "pixel_spacing_mm"}
    assert (info.n_slices, info.n_echoes, info.height, info.width) == (N, E, H, W)
    assert info.subjects == ["S0001", "S0002"]
    assert info.rv_insertion is None and info.field_strength_t is None


def test_select_keeps_rows_together() -> None:
    stack = make_stack()
    sub = stack.select([2, 0])
    assert sub.subject_id == ["S0002", "S0001"]
    np.testing.assert_array_equal(sub.images[0], stack.images[2])
    np.testing.assert_array_equal(sub.labels[1], stack.labels[0])


def test_lazy_file_reads_slices_and_pickles_without_handle(good_file: Path) -> None:
    lazy = EchoStackFile(good_file)
    np.testing.assert_array_equal(lazy.read("images", 2), make_stack().images[2])
    clone = pickle.loads(pickle.dumps(lazy))
    assert clone._file is None
    np.testing.assert_array_equal(clone.read("labels", 1), make_stack().labels[1])
    for channels in ([1], [0, 1, 2], [2, 0], [1, 1]):  # one, a range, reordered, repeated
        np.testing.assert_array_equal(
            lazy.read("images", 2, channels), make_stack().images[2][channels]
        )
    with pytest.raises(EchoStackError, match="labels_pred: dataset is not in this file"):
        lazy.read("labels_pred", 0)
    lazy.close()


def test_failed_write_leaves_existing_file(good_file: Path) -> None:
    before = digest(good_file)
    bad = make_stack()
    bad.images[1, 0, 0, 0] = np.nan
    with pytest.raises(EchoStackError, match="images: non-finite values"):
        write_echo_stack(good_file, bad)
    assert digest(good_file) == before
    assert list(good_file.parent.iterdir()) == [good_file]


# Each entry breaks one rule of the contract by editing a valid file in place.
Mutation = Callable[[h5py.File], None]


def _replace(name: str, value: np.ndarray, **kw: object) -> Mutation:
    def mutate(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, data=value, **kw)

    return mutate


def _set_attr(name: str, value: object) -> Mutation:
    def mutate(f: h5py.File) -> None:
        f.attrs[name] = value

    return mutate


def _delete(name: str) -> Mutation:
    def mutate(f: h5py.File) -> None:
        del f[name]

    return mutate


def _poke(name: str, index: tuple[int, ...], value: float) -> Mutation:
    def mutate(f: h5py.File) -> None:
        f[name][index] = value

    return mutate


STR = h5py.string_dtype("utf-8")
REFUSALS: dict[str, tuple[Mutation, str]] = {
    "missing images": (_delete("images"), "images: required dataset is missing"),
    "missing te": (_delete("te_ms"), "te_ms: required dataset is missing"),
    "missing subject": (_delete("subject_id"), "subject_id: required dataset is missing"),
    "missing location": (_delete("slice_location"), "slice_location: required dataset is missing"),
    "missing spacing": (
        _delete("pixel_spacing_mm"),
        "pixel_spacing_mm: required dataset is missing",
    ),
    "wrong format": (_set_attr("format", "something.else"), "format: root attribute is"),
    "no format": (lambda f: f.attrs.__delitem__("format"), "format: root attribute is None"),
    "unknown version": (_set_attr("version", 2), "version: unknown version 2"),
    "string version": (_set_attr("version", "1"), "version: root attribute is '1'"),
    "images 3-D": (_replace("images", np.ones((N, E, H), np.float32)), "images: expected 4 dim"),
    "te wrong E": (_replace("te_ms", np.ones((N, E + 1), np.float32)), "te_ms: shape"),
    "subject wrong N": (
        _replace("subject_id", np.array(["a"] * 3, object), dtype=STR),
        "subject_id: shape",
    ),
    "labels wrong H": (_replace("labels", np.zeros((N, H + 1, W), np.uint8)), "labels: shape"),
    "truth wrong W": (
        _replace("t2star_ms", np.ones((N, H, W - 1), np.float32)),
        "t2star_ms: shape",
    ),
    "spacing wrong": (
        _replace("pixel_spacing_mm", np.ones((N, 3), np.float32)),
        "pixel_spacing_mm: shape",
    ),
    "nan image": (
        _poke("images", (3, 4, 5, 6), np.nan),
        "images: non-finite values (first at slice 3)",
    ),
    "inf image": (
        _poke("images", (0, 0, 0, 0), np.inf),
        "images: non-finite values (first at slice 0)",
    ),
    "negative image": (_poke("images", (1, 1, 1, 1), -1.0), "images: negative values"),
    "te not increasing": (_poke("te_ms", (2, 3), 1.0), "te_ms: echo times not strictly increasing"),
    "te repeated": (
        _replace("te_ms", np.tile(np.array([3, 5, 5, 7, 9], np.float32), (N, 1))),
        "te_ms: echo times not strictly increasing (first at slice 0)",
    ),
    "te negative": (_poke("te_ms", (0, 0), -3.0), "te_ms: echo times must be > 0 ms"),
    "te nan": (_poke("te_ms", (1, 0), np.nan), "te_ms: non-finite echo times"),
    "label 3": (_poke("labels", (2, 0, 0), 3), "labels: label values outside {0, 1, 2}"),
    "float labels": (_replace("labels", np.zeros((N, H, W), np.float32)), "labels: dtype float32"),
    "string images": (
        _replace("images", np.full((N, E, H, W), "x", object), dtype=STR),
        "images: dtype",
    ),
    "bad location": (
        _replace("slice_location", np.array(["base", "mid", "top", ""], object), dtype=STR),
        "slice_location: value not one of",
    ),
    "empty subject": (
        _replace("subject_id", np.array(["S1", "", "S2", "S2"], object), dtype=STR),
        "subject_id: empty subject key (first at slice 1)",
    ),
    "zero spacing": (_poke("pixel_spacing_mm", (0, 1), 0.0), "pixel_spacing_mm: spacing must be"),
    "pe axis 2": (_poke("phase_encoding_axis", (0,), 2), "phase_encoding_axis: values outside"),
    "negative truth": (_poke("t2star_ms", (0, 0, 0), -5.0), "t2star_ms: T2* must be > 0 ms or NaN"),
    "zero field": (_poke("field_strength_t", (2,), 0.0), "field_strength_t: field strength must"),
    "inf field": (_poke("field_strength_t", (1,), np.inf), "field_strength_t: field strength must"),
    "uncertainty above 1": (
        lambda f: f.create_dataset("seg_uncertainty", data=np.array([0.1, np.nan, 1.5, 0.0])),
        "seg_uncertainty: values outside [0, 1] (NaN: not measured) (first at slice 2)",
    ),
    "images group": (
        lambda f: (f.__delitem__("images"), f.create_group("images")),
        "images: is a group",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_file_dataset_problem_and_leave_file(good_file: Path, case: str) -> None:
    mutate, message = REFUSALS[case]
    with h5py.File(good_file, "r+") as f:
        mutate(f)
    before = digest(good_file)
    for reader in (read_echo_stack, inspect_echo_stack):
        with pytest.raises(EchoStackError) as err:
            reader(good_file)
        assert str(err.value).startswith(f"{good_file}: ")
        assert message in str(err.value)
    assert digest(good_file) == before


def test_refuses_non_hdf5_truncated_and_missing(tmp_path: Path, good_file: Path) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5 at all")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good_file.read_bytes()[: good_file.stat().st_size // 2])
    for path, message in [
        (text, "not a readable HDF5 file"),
        (truncated, "truncated"),
        (tmp_path / "absent.h5", "file not found"),
        (tmp_path, "is a folder"),
    ]:
        with pytest.raises(EchoStackError, match=message) as err:
            inspect_echo_stack(path)
        assert str(path) in str(err.value)


def test_writer_refuses_mismatched_shapes(tmp_path: Path) -> None:
    stack = make_stack()
    stack.subject_id = stack.subject_id[:3]
    with pytest.raises(EchoStackError, match=r"<memory>: subject_id: shape \(3,\)"):
        write_echo_stack(tmp_path / "x.h5", stack)
    assert not list(tmp_path.iterdir())


def test_slice_source_is_written_one_slice_at_a_time(tmp_path: Path) -> None:
    stack = make_stack()
    images = stack.images.copy()
    asked: list[int] = []

    def read_slice(i: int) -> np.ndarray:
        asked.append(i)
        return images[i]

    stack.images = SliceSource(images.shape, read_slice)
    ticks: list[int] = []
    write_echo_stack(tmp_path / "lazy.h5", stack, progress=ticks.append)
    assert asked == list(range(N)) and ticks == [1] * N
    np.testing.assert_array_equal(read_echo_stack(tmp_path / "lazy.h5").images, images)
    assert inspect_echo_stack(tmp_path / "lazy.h5").field_strength_t[2] == 3.0


@pytest.mark.parametrize("failure", ["bad value", "reader raises"])
def test_failing_slice_source_leaves_no_file(tmp_path: Path, failure: str) -> None:
    stack = make_stack()
    images = stack.images.copy()

    def read_slice(i: int) -> np.ndarray:
        if i == N - 1:
            if failure == "reader raises":
                raise EchoStackError("scan.dcm", None, "cannot read pixel data")
            return np.full(images.shape[1:], -1.0, np.float32)
        return images[i]

    stack.images = SliceSource(images.shape, read_slice)
    message = "cannot read pixel data" if failure == "reader raises" else "negative values"
    with pytest.raises(EchoStackError, match=message):
        write_echo_stack(tmp_path / "lazy.h5", stack)
    assert list(tmp_path.iterdir()) == []
