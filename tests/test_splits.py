import json
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import ring_phantom

from cmrseg.core.errors import InputError
from cmrseg.data.echo_stack import EchoStackInfo, inspect_echo_stack, write_echo_stack
from cmrseg.data.splits import (
    SPLIT_NAMES,
    echo_stack_fingerprint,
    load_split,
    make_subject_split,
    save_split,
)

SUBJECTS = [f"S{i:03d}" for i in range(23)]


def _parts(split):
    return [set(split.subjects(name)) for name in SPLIT_NAMES]


def test_fixed_split_is_disjoint_complete_and_sized():
    split = make_subject_split(SUBJECTS * 3, val_fraction=0.1, test_fraction=0.1, seed=1)
    train, val, test = _parts(split)
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(SUBJECTS)
    assert (len(train), len(val), len(test)) == (19, 2, 2)


def test_fixed_split_depends_on_seed_not_on_order():
    a = make_subject_split(SUBJECTS, val_fraction=0.2, test_fraction=0.2, seed=7)
    b = make_subject_split(SUBJECTS[::-1], val_fraction=0.2, test_fraction=0.2, seed=7)
    c = make_subject_split(SUBJECTS, val_fraction=0.2, test_fraction=0.2, seed=8)
    assert a == b
    assert a.test != c.test or a.val != c.val


def test_small_fraction_still_gets_one_subject():
    split = make_subject_split(SUBJECTS[:5], val_fraction=0.01, test_fraction=0.0, seed=0)
    assert (len(split.train), len(split.val), len(split.test)) == (4, 1, 0)


@pytest.mark.parametrize("num_folds", [2, 5])
def test_folds_partition_subjects(num_folds):
    splits = [
        make_subject_split(
            SUBJECTS, val_fraction=0.1, test_fraction=0.3, seed=3, num_folds=num_folds, fold=k
        )
        for k in range(num_folds)
    ]
    tests = [set(s.test) for s in splits]
    assert set().union(*tests) == set(SUBJECTS)
    assert sum(len(t) for t in tests) == len(SUBJECTS)
    sizes = sorted(len(t) for t in tests)
    assert sizes[-1] - sizes[0] <= 1
    for split in splits:
        train, val, test = _parts(split)
        assert not (train & val or train & test or val & test)
        assert train | val | test == set(SUBJECTS)
        assert len(val) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 1.0, "test_fraction": 0.1}, "val_fraction"),
        ({"val_fraction": -0.1, "test_fraction": 0.1}, "val_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "no subjects for training"),
        ({"val_fraction": 0.1, "test_fraction": 0.1, "fold": 0}, "without data.num_folds"),
        ({"val_fraction": 0.1, "test_fraction": 0.1, "num_folds": 1, "fold": 0}, "num_folds"),
        ({"val_fraction": 0.1, "test_fraction": 0.1, "num_folds": 30, "fold": 0}, "num_folds"),
        ({"val_fraction": 0.1, "test_fraction": 0.1, "num_folds": 5, "fold": 5}, "data.fold"),
        ({"val_fraction": 0.1, "test_fraction": 0.1, "num_folds": 5}, "data.fold"),
    ],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        make_subject_split(SUBJECTS, seed=0, **kwargs)


def test_too_few_subjects_for_training():
    with pytest.raises(InputError, match="no subject left for training"):
        make_subject_split(["A", "B"], val_fraction=0.1, test_fraction=0.1, seed=0)


def test_save_load_round_trip(tmp_path: Path):
    split = make_subject_split(
        SUBJECTS,
        val_fraction=0.1,
        test_fraction=0.1,
        seed=5,
        num_folds=4,
        fold=2,
        fingerprint="ab" * 32,
        source="cohort.h5",
    )
    path = tmp_path / "run" / "split.json"
    save_split(split, path)
    assert load_split(path) == split
    doc = json.loads(path.read_text())
    assert doc["seed"] == 5 and doc["fold"] == 2 and doc["num_folds"] == 4
    assert sorted(doc["subjects"]["test"]) == sorted(split.test)
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]


def test_load_refuses_bad_files(tmp_path: Path):
    with pytest.raises(InputError, match="split file not found"):
        load_split(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not a readable JSON"):
        load_split(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputError, match="not a cmrseg split file"):
        load_split(bad)
    split = make_subject_split(SUBJECTS, val_fraction=0.1, test_fraction=0.1, seed=0)
    doc = split.to_json_dict()
    doc["subjects"]["val"].append(doc["subjects"]["test"][0])
    bad.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="val and test share subjects"):
        load_split(bad)
    del doc["seed"]
    bad.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="malformed"):
        load_split(bad)


def test_check_matches(caplog):
    split = make_subject_split(
        SUBJECTS, val_fraction=0.1, test_fraction=0.1, seed=0, fingerprint="f1"
    )
    split.check_matches(SUBJECTS, "f1", split_path="s.json", data_path="d.h5")
    with pytest.raises(InputError, match=r"s.json: split does not match the subjects of d.h5"):
        split.check_matches([*SUBJECTS[1:], "NEW"], "f1", split_path="s.json", data_path="d.h5")
    with caplog.at_level(logging.WARNING):
        split.check_matches(SUBJECTS, "f2", split_path="s.json", data_path="d.h5")
    assert "subjects match" in caplog.text


def test_slice_indices_follow_subjects():
    subject_id = ["A", "A", "B", "C", "C", "C", "D"]
    split = make_subject_split(subject_id, val_fraction=0.25, test_fraction=0.25, seed=0)
    found = np.sort(np.concatenate([split.slice_indices(subject_id, n) for n in SPLIT_NAMES]))
    np.testing.assert_array_equal(found, np.arange(len(subject_id)))
    for name in SPLIT_NAMES:
        assert {subject_id[i] for i in split.slice_indices(subject_id, name)} == set(
            split.subjects(name)
        )


def _info(subject_id, slice_location, shape=(4, 8, 16, 16)):
    n, e, h, w = shape
    return EchoStackInfo(
        path=Path("x.h5"),
        n_slices=n,
        n_echoes=e,
        height=h,
        width=w,
        datasets=frozenset({"images"}),
        subject_id=tuple(subject_id),
        slice_location=tuple(slice_location),
        te_ms=np.ones((n, e), np.float32),
        pixel_spacing_mm=np.ones((n, 2), np.float32),
    )


def test_fingerprint_tracks_slices_and_subjects():
    base = echo_stack_fingerprint(_info("AABB", ["base", "mid"] * 2))
    assert base == echo_stack_fingerprint(_info("AABB", ["base", "mid"] * 2))
    assert base != echo_stack_fingerprint(_info("ABAB", ["base", "mid"] * 2))
    assert base != echo_stack_fingerprint(_info("AABB", ["mid", "base"] * 2))
    assert base != echo_stack_fingerprint(_info("AABB", ["base", "mid"] * 2, (4, 6, 16, 16)))


def test_fingerprint_tells_cohorts_of_the_same_size_and_keys_apart(tmp_path):
    prints = []
    for seed in (0, 1):
        write_echo_stack(tmp_path / f"seed{seed}.h5", ring_phantom(3, seed=seed))
        prints.append(echo_stack_fingerprint(inspect_echo_stack(tmp_path / f"seed{seed}.h5")))
    assert prints[0] != prints[1]  # same subject keys and locations, other phantoms
    again = echo_stack_fingerprint(inspect_echo_stack(tmp_path / "seed0.h5"))
    assert again == prints[0]
