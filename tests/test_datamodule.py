import gc
import logging
from pathlib import Path

import albumentations as A  # noqa: N812
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning import LightningModule, Trainer

from cmrseg.conf import CONF_DIR
from cmrseg.core.errors import InputError
from cmrseg.data.datamodule import EchoStackDataModule, collate_samples
from cmrseg.data.echo_stack import EchoStack, EchoStackError, write_echo_stack
from cmrseg.data.transforms import RandomRotate90SameShape, augment, normalize, seed_transform
from cmrseg.utils.instantiate import instantiate_datamodule

N_SUBJECTS, N_ECHOES, HEIGHT, WIDTH = 12, 4, 24, 32
LOCATIONS = ["base", "mid", "apex"]


def _labels(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """LV rings with random centers and the anterior RV insertion point on each."""
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    labels = np.zeros((n, HEIGHT, WIDTH), np.uint8)
    rv = np.zeros((n, 2), np.float32)
    for i in range(n):
        r0, c0 = rng.uniform(10, 14), rng.uniform(13, 19)
        radius = np.hypot(rows - r0, cols - c0)
        labels[i][radius < 7] = 2
        labels[i][radius < 4] = 1
        theta = np.radians(120.0)
        rv[i] = (r0 - 6.5 * np.sin(theta), c0 + 6.5 * np.cos(theta))
    return labels, rv


def _write(path: Path, *, labels: bool = True, image_fn=None, n_subjects: int = N_SUBJECTS):
    """Write a cohort; ``image_fn(labels [N, H, W]) -> images [N, E, H, W]`` replaces noise."""
    rng = np.random.default_rng(0)
    n = 3 * n_subjects
    lab, rv = _labels(n, rng)
    if image_fn is None:
        images = rng.uniform(0, 100, (n, N_ECHOES, HEIGHT, WIDTH)).astype(np.float32)
    else:
        images = image_fn(lab)
    stack = EchoStack(
        images=images,
        te_ms=np.tile(np.linspace(3.0, 20.0, N_ECHOES, dtype=np.float32), (n, 1)),
        subject_id=[f"P{i // 3:02d}" for i in range(n)],
        slice_location=LOCATIONS * n_subjects,
        pixel_spacing_mm=np.tile(np.float32([1.5, 1.25]), (n, 1)),
        labels=lab if labels else None,
        rv_insertion=rv,
    )
    write_echo_stack(path, stack)
    return stack


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, EchoStack]:
    path = tmp_path_factory.mktemp("data") / "cohort.h5"
    return path, _write(path)


def _datamodule(path: Path, *overrides: str) -> EchoStackDataModule:
    """The real conf/data/echo_stack.yaml with overrides; no workers unless asked."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            overrides=["+data=echo_stack", f"data.path={path}", "data.num_workers=0", *overrides]
        )
    return instantiate(cfg.data)


def _slice_subjects(dm: EchoStackDataModule, split: str) -> set[str]:
    return {dm.info.subject_id[i] for i in dm.split_indices(split)}


def test_splits_never_share_a_subject(cohort):
    path, stack = cohort
    dm = _datamodule(path)
    parts = [_slice_subjects(dm, s) for s in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    indices = np.concatenate([dm.split_indices(s) for s in ("train", "val", "test")])
    np.testing.assert_array_equal(np.sort(indices), np.arange(len(stack.subject_id)))
    assert [len(p) for p in parts] == [10, 1, 1]


def test_folds_partition_subjects(cohort):
    path, _ = cohort
    tests = []
    for fold in range(4):
        dm = _datamodule(path, "data.num_folds=4", f"data.fold={fold}")
        parts = [_slice_subjects(dm, s) for s in ("train", "val", "test")]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        tests.append(parts[2])
    assert set().union(*tests) == {f"P{i:02d}" for i in range(N_SUBJECTS)}
    assert sum(len(t) for t in tests) == N_SUBJECTS


def test_split_file_round_trip_and_mismatch(cohort, tmp_path, caplog):
    path, _ = cohort
    split_file = tmp_path / "run" / "split.json"
    first = _datamodule(path, f"data.split_file={split_file}")
    first.setup("fit")
    assert split_file.exists()
    with caplog.at_level(logging.WARNING):
        again = _datamodule(path, f"data.split_file={split_file}", "data.split_seed=999")
        assert again.split == first.split
    assert "split_seed" not in caplog.text and "seed=2025 (config: 999)" in caplog.text
    copy = tmp_path / "copy.json"
    first.save_split(copy)
    assert copy.read_text() == split_file.read_text()

    other = tmp_path / "other.h5"
    _write(other, n_subjects=N_SUBJECTS + 1)
    with pytest.raises(InputError, match=r"split does not match the subjects .*P12"):
        _datamodule(other, f"data.split_file={split_file}").setup("fit")


def test_test_subjects_all_tests_every_slice_and_leaves_the_split_file_alone(cohort, tmp_path):
    path, stack = cohort
    split_file = tmp_path / "split.json"
    split_file.write_text("not a split of this file")
    dm = _datamodule(path, f"data.split_file={split_file}", "data.test_subjects=all")
    dm.setup("test")
    np.testing.assert_array_equal(dm.split_indices("test"), np.arange(len(stack.subject_id)))
    assert dm.split.train == dm.split.val == ()
    assert (dm.split.num_folds, dm.split.fold) == (None, None)
    assert len(dm.dataset("test")) == len(stack.subject_id)
    assert split_file.read_text() == "not a split of this file"
    for stage in ("fit", "validate"):
        with pytest.raises(InputError, match=rf"test_subjects=all: .* none is left to {stage}"):
            dm.setup(stage)


def test_missing_file_and_missing_path(tmp_path):
    with pytest.raises(EchoStackError, match=r"nothere\.h5: file not found"):
        _datamodule(tmp_path / "nothere.h5").setup("fit")
    dm = _datamodule(tmp_path / "x.h5", "data.path=null")
    with pytest.raises(InputError, match=r"data\.path"):
        dm.setup("fit")


def test_echoes_as_samples_items(cohort):
    """Training samples are single echoes; validation, test and predict samples whole slices."""
    path, stack = cohort
    dm = _datamodule(path, "data.echoes=[0,2]", "data.batch_size=5", "data/augmentation=none")
    dm.setup("fit")
    assert dm.in_channels == 1
    train = dm.dataset("train")
    assert len(train) == 2 * len(dm.split_indices("train"))
    item = train[3]
    assert item["image"].shape == (1, HEIGHT, WIDTH) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (HEIGHT, WIDTH) and item["mask"].dtype == torch.uint8
    assert int(item["sample_id"]) == int(item["slice_index"]) * N_ECHOES + int(item["echo_index"])
    i, echo = int(item["slice_index"]), int(item["echo_index"])
    assert echo in (0, 2)
    np.testing.assert_allclose(
        item["image"][0], normalize(stack.images[i, echo][None], "mvn")[0], atol=1e-5
    )
    np.testing.assert_array_equal(item["mask"], stack.labels[i])
    ids = [int(train[k]["sample_id"]) for k in range(len(train))]
    assert len(set(ids)) == len(ids)

    batch = next(iter(dm.val_dataloader()))
    n_val = len(dm.split_indices("val"))
    assert batch["image"].shape == (min(n_val, 5), 2, HEIGHT, WIDTH)
    assert batch["echo_index"].tolist() == [-1] * min(n_val, 5)
    np.testing.assert_array_equal(batch["sample_id"], batch["slice_index"])
    assert batch["pixel_spacing_mm"].dtype == torch.float32
    np.testing.assert_allclose(batch["pixel_spacing_mm"][0], [1.5, 1.25])
    assert len(dm.dataset("val")) == n_val
    i = int(batch["slice_index"][0])
    for channel, echo in enumerate((0, 2)):  # mvn of one echo alone = mvn_per_channel
        raw = stack.images[i, echo][None]
        np.testing.assert_allclose(batch["image"][0, channel], normalize(raw, "mvn")[0], atol=1e-5)
    np.testing.assert_array_equal(batch["mask"][0], stack.labels[i])


@pytest.mark.parametrize(("echoes", "channels"), [("null", N_ECHOES), ("[1,3]", 2)])
def test_echoes_as_channels_items(cohort, echoes, channels):
    path, _ = cohort
    dm = _datamodule(path, "data.input_mode=echoes_as_channels", f"data.echoes={echoes}")
    assert dm.in_channels == channels
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (3, channels, HEIGHT, WIDTH)
    assert batch["echo_index"].tolist() == [-1, -1, -1]
    np.testing.assert_array_equal(batch["sample_id"], batch["slice_index"])
    assert batch["slice_index"].tolist() == dm.split_indices("test").tolist()


def test_bad_echoes_are_refused(cohort):
    path, _ = cohort
    with pytest.raises(InputError, match=r"data.echoes: \[4\] outside \[0, 4\)"):
        _datamodule(path, "data.echoes=[0,4]").setup("fit")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.sharing_strategy=shm", r"data.sharing_strategy: 'shm' is not one of"),
        ("data.input_mode=bogus", r"data.input_mode: 'bogus' is not one of"),
        ("data.test_subjects=every", r"data.test_subjects: 'every' is not one of"),
    ],
)
def test_bad_settings_are_refused_unwrapped(cohort, override, message):
    """The entry points' datamodule factory re-raises the refusal, not Hydra's wrapper."""
    path, _ = cohort
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(overrides=["+data=echo_stack", f"data.path={path}", override])
    with pytest.raises(InputError, match=message):
        instantiate_datamodule(cfg.data)


def test_mvn_statistics(cohort):
    path, stack = cohort
    ds_args = ("data.input_mode=echoes_as_channels", "data.echoes=null")
    joint = _datamodule(path, *ds_args, "data.normalization=mvn")
    joint.setup("validate")
    image = joint.dataset("val")[0]["image"].double()
    assert abs(image.mean()) < 1e-5 and abs(image.std(unbiased=False) - 1) < 1e-4
    per = _datamodule(path, *ds_args, "data.normalization=mvn_per_channel")
    per.setup("validate")
    image = per.dataset("val")[0]["image"].double()
    assert torch.all(image.mean(dim=(1, 2)).abs() < 1e-5)
    assert torch.all((image.std(dim=(1, 2), unbiased=False) - 1).abs() < 1e-4)
    raw = _datamodule(path, *ds_args, "data.normalization=none")
    raw.setup("validate")
    item = raw.dataset("val")[0]
    np.testing.assert_array_equal(item["image"], stack.images[int(item["slice_index"])])
    assert np.all(normalize(np.full((2, 4, 4), 3.0, np.float32), "mvn") == 0)


def test_mvn_keeps_echo_decay_but_per_channel_does_not():
    decay = np.stack([np.full((8, 8), v, np.float32) for v in (4.0, 2.0, 1.0)])
    decay[:, 0, 0] = 0
    joint = normalize(decay, "mvn")
    assert joint[0, 1, 1] > joint[1, 1, 1] > joint[2, 1, 1]
    per = normalize(decay, "mvn_per_channel")
    np.testing.assert_allclose(per[0], per[2], atol=1e-5)


def _geometric():
    return A.Compose(
        [
            RandomRotate90SameShape(p=0.75),
            A.Affine(translate_px=(-4, 4), interpolation=0, p=1.0),
            A.Affine(rotate=(-180, 180), interpolation=0, p=0.5),
            A.ElasticTransform(alpha=30, sigma=3, interpolation=0, p=0.5),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
        ]
    )


def test_augmentation_moves_all_channels_with_the_mask(tmp_path):
    def coded(labels):  # echo channel c holds (c + 1) * label
        scale = np.arange(1, N_ECHOES + 1, dtype=np.float32)[None, :, None, None]
        return labels[:, None].astype(np.float32) * scale

    path = tmp_path / "coded.h5"
    stack = _write(path, image_fn=coded)
    dm = _datamodule(
        path, "data.input_mode=echoes_as_channels", "data.echoes=null", "data.normalization=none"
    )
    dm.augmentation = _geometric()
    dm.setup("fit")
    train = dm.dataset("train")
    changed = 0
    for batch in dm.train_dataloader():
        mask = batch["mask"].float()
        for c in range(N_ECHOES):
            torch.testing.assert_close(batch["image"][:, c], mask * (c + 1), rtol=1e-6, atol=1e-5)
        original = torch.from_numpy(stack.labels[batch["slice_index"].numpy()]).long()
        changed += int((batch["mask"] != original).flatten(1).any(1).sum())
    assert changed > len(train) // 2


def test_rotate90_keeps_shape_and_moves_pixels_exactly():
    image = np.arange(6 * 8, dtype=np.float32).reshape(6, 8, 1)
    rot = RandomRotate90SameShape(p=1.0)
    assert rot.apply(image, turns=2).shape == image.shape
    np.testing.assert_array_equal(rot.apply(image, turns=2), image[::-1, ::-1])
    quarter = rot.apply(image, turns=1)[..., 0]
    assert quarter.shape == (6, 8)
    np.testing.assert_array_equal(quarter[:, 1:7], np.rot90(image[..., 0])[1:7])
    assert np.all(quarter[:, [0, 7]] == 0)
    mask = np.arange(48, dtype=np.uint8).reshape(6, 8)
    np.testing.assert_array_equal(rot.apply_to_mask(mask, turns=1)[:, 1:7], np.rot90(mask)[1:7])


def test_augment_works_in_unit_range_and_restores_units():
    seen = {}

    def spy(image, mask):
        seen["max"] = float(image.max())
        return {"image": image, "mask": mask}

    image = np.random.default_rng(0).uniform(0, 500, (3, 8, 6)).astype(np.float32)
    out, _ = augment(spy, image, np.zeros((8, 6), np.uint8))
    assert seen["max"] == pytest.approx(1.0)
    np.testing.assert_allclose(out, image, rtol=1e-6)
    with pytest.raises(ValueError, match="changed the image shape"):
        augment(A.Compose([A.Transpose(p=1.0)]), image, None)


def test_seed_transform_gives_independent_draws():
    # albumentations.Compose(seed=...) seeds both flips alike: they always fire together.
    pipeline = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)])
    image = np.arange(4, dtype=np.float32).reshape(2, 2, 1)

    def corners(seed):
        seed_transform(pipeline, seed)
        return [float(pipeline(image=image)["image"][0, 0, 0]) for _ in range(40)]

    assert set(corners(0)) == {0.0, 1.0, 2.0, 3.0}
    assert corners(0) == corners(0) != corners(1)


@pytest.mark.parametrize("preset", ["paper", "nnunet", "none"])
def test_presets_run_on_multi_echo_data(cohort, preset):
    path, _ = cohort
    dm = _datamodule(
        path,
        f"data/augmentation={preset}",
        "data.input_mode=echoes_as_channels",
        "data.echoes=null",
        "data.seed=0",
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, N_ECHOES, HEIGHT, WIDTH)
    assert torch.isfinite(batch["image"]).all()
    assert set(batch["mask"].unique().tolist()) <= {0, 1, 2}


def test_training_order_and_augmentation_are_seeded(cohort):
    path, _ = cohort
    batches = []
    for _ in range(2):
        dm = _datamodule(path, "data.seed=3")
        dm.setup("fit")
        batches.append(next(iter(dm.train_dataloader())))
    torch.testing.assert_close(batches[0]["image"], batches[1]["image"])
    torch.testing.assert_close(batches[0]["sample_id"], batches[1]["sample_id"])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers(cohort, context):
    path, _ = cohort
    dm = _datamodule(
        path, "data.num_workers=2", f"data.multiprocessing_context={context}", "data.seed=1"
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.persistent_workers
    expected = sorted(int(s["sample_id"]) for s in dm.dataset("train"))
    for _ in range(2):
        assert sorted(torch.cat([b["sample_id"] for b in loader]).tolist()) == expected
    del loader
    gc.collect()  # shut the persistent workers down inside this test


def test_workers_draw_different_augmentations(tmp_path):
    path = tmp_path / "flat.h5"
    _write(path, image_fn=lambda lab: np.full((len(lab), N_ECHOES, HEIGHT, WIDTH), 50, np.float32))
    dm = _datamodule(
        path,
        "data.num_workers=2",
        "data.multiprocessing_context=fork",
        "data.batch_size=1",
        "data.normalization=none",
    )
    dm.augmentation = A.Compose([A.GaussNoise(std_range=(0.2, 0.2), p=1.0)])
    dm.setup("fit")
    loader = dm.train_dataloader()
    noise = torch.cat([b["image"].flatten(1) for b in loader])
    assert len(torch.unique(noise, dim=0)) == len(noise)  # a forked stream would repeat
    del loader
    gc.collect()


def test_target_codings(cohort):
    path, stack = cohort
    expected = {"binary": (2, [1]), "three_class": (3, [2]), "aha16": (17, list(range(1, 17)))}
    for target, (n_classes, myo) in expected.items():
        dm = _datamodule(path, f"data.target={target}")
        assert (dm.num_classes, dm.myocardium_classes) == (n_classes, myo)
        dm.setup("validate")
        val = dm.dataset("val")
        for k in range(0, len(val), 3):
            item = val[k]
            i = int(item["slice_index"])
            mask = item["mask"].numpy()
            myocardium = stack.labels[i] == 2
            assert np.array_equal(np.isin(mask, myo), myocardium)
            if target == "three_class":
                np.testing.assert_array_equal(mask, stack.labels[i])
            if target == "aha16":
                first = {"base": 1, "mid": 7, "apex": 13}[stack.slice_location[i]]
                count = 4 if stack.slice_location[i] == "apex" else 6
                assert set(np.unique(mask[myocardium])) == set(range(first, first + count))


def test_aha16_needs_rv_insertion(tmp_path, cohort):
    _, stack = cohort
    path = tmp_path / "norv.h5"
    stack_nan = EchoStack(**{**stack.present(), "rv_insertion": stack.rv_insertion.copy()})
    stack_nan.rv_insertion[:] = np.nan
    write_echo_stack(path, stack_nan)
    with pytest.raises(InputError, match=r"rv_insertion: unknown \(NaN\) at slice \d+"):
        _datamodule(path, "data.target=aha16").setup("fit")


def test_predict_without_labels(cohort, tmp_path):
    path, _ = cohort
    unlabelled = tmp_path / "unlabelled.h5"
    _write(unlabelled, labels=False, n_subjects=2)
    dm = _datamodule(path, f"data.predict_path={unlabelled}", "data.batch_size=4")
    dm.setup("predict")
    batches = list(dm.predict_dataloader())
    assert all("mask" not in b for b in batches)
    slices = torch.cat([b["slice_index"] for b in batches]).tolist()
    assert slices == list(range(6))  # one sample per slice
    np.testing.assert_array_equal(dm.split_indices("predict"), np.arange(6))
    with pytest.raises(InputError, match="labels: dataset is missing"):
        _datamodule(unlabelled).setup("fit")


class _Tiny(LightningModule):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.net = torch.nn.Conv2d(in_channels, num_classes, 1)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.net(batch["image"]), batch["mask"].long())

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.training_step(batch, batch_idx))

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self.training_step(batch, batch_idx))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_fast_dev_run_with_trainer(cohort):
    path, _ = cohort
    dm = _datamodule(path, "data.input_mode=echoes_as_channels", "data.target=aha16")
    model = _Tiny(dm.in_channels, dm.num_classes)
    trainer = Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)


def test_epoch_sampler_depends_on_seed_and_epoch_only():
    from cmrseg.data.datamodule import EpochSampler

    straight = EpochSampler(20, seed=7)
    epochs = [list(straight) for _ in range(3)]  # no set_epoch: consecutive epochs
    assert epochs[0] != epochs[1] != epochs[2]
    assert sorted(i for i, _ in epochs[1]) == list(range(20))
    resumed = EpochSampler(20, seed=7)
    resumed.set_epoch(2)
    assert list(resumed) == epochs[2]
    other = EpochSampler(20, seed=8)
    assert list(other) != epochs[0]


def test_collate_samples_matches_default_collate_in_one_buffer():
    g = torch.Generator().manual_seed(0)
    samples = [
        {
            "image": torch.randn(1, 6, 5, generator=g),
            "mask": torch.randint(0, 3, (6, 5), generator=g, dtype=torch.uint8),
            "sample_id": torch.tensor(i, dtype=torch.int64),
            "pixel_spacing_mm": torch.tensor([1.4, 1.5]),
        }
        for i in range(3)
    ]
    batch = collate_samples(samples)
    expected = torch.utils.data.default_collate(samples)
    assert batch.keys() == expected.keys()
    for key, value in expected.items():
        assert batch[key].dtype == value.dtype and batch[key].is_contiguous()
        torch.testing.assert_close(batch[key], value, rtol=0, atol=0)
    storages = {t.untyped_storage().data_ptr() for t in batch.values()}
    assert len(storages) == 1  # one shared-memory file per batch between processes
