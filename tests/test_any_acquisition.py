"""Inference on files of another matrix, pixel spacing, echo count and echo times (issue 16 item 2).

A checkpoint stores its training echo times and spacing; prediction resamples the decay and the
grid to them. Equivalence is checked with a checkpoint whose network is a fixed intensity
threshold (:class:`ThresholdNet`), so that "the same labels" means something on the ring phantom.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ring_phantom
from test_eval_predict import _predict_cfg
from torch import nn

from cmrseg.cli.predict import predict
from cmrseg.core.errors import InputError
from cmrseg.data.dataset import EchoStackDataset
from cmrseg.data.echo_stack import EchoStack, EchoStackFile, inspect_echo_stack, write_echo_stack
from cmrseg.data.resample import resample_decay
from cmrseg.inference import (
    RUN_CONFIG_KEY,
    inference_datamodule,
    load_module_from_checkpoint,
    predict_stack,
)

TRAIN_TE_MS = [2.0, 4.5, 7.0]  # echoes 1-3 of the tiny run's file


class ThresholdNet(nn.Module):
    """1x1 convolution whose arg-max is background / blood pool / myocardium by intensity.

    On the mean-variance normalized first echo of :func:`rings` (background about -0.4,
    myocardium 0.5-0.9, blood pool above 3): background below 0, myocardium from 0 to 2, blood
    pool above 2. Logits ``[0, 2x - 2, x]``: myocardium beats background where ``x > 0``, blood
    pool beats myocardium where ``x > 2``.
    """

    in_channels = 1
    myocardium_classes = (2,)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([0.0, 2.0, 1.0]).view(3, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.0, -2.0, 0.0]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images)


def rings(spacing_mm: float, te_ms: list[float], size_mm: float = 48.0) -> EchoStack:
    """Noise-free rings (mono-exponential decays), geometry in mm: 3 slices of one subject."""
    n = round(size_mm / spacing_mm)
    centres = (np.arange(n) + 0.5) * spacing_mm
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    te = np.asarray(te_ms, np.float32)
    images, labels = [], []
    for k, (t2_myo, inner) in enumerate(((25.0, 8.0), (12.0, 7.0), (30.0, 6.0))):
        r = np.hypot(yy - 24.0 - k, xx - 23.0)
        pool, myo = r < inner, (r >= inner) & (r < inner + 5.0)
        t2 = np.where(pool, 40.0, np.where(myo, t2_myo, 15.0))
        s0 = np.where(pool, 1000.0, np.where(myo, 450.0, 250.0))
        images.append(s0[None] * np.exp(-te[:, None, None] / t2[None]))
        labels.append(np.where(pool, 1, np.where(myo, 2, 0)).astype(np.uint8))
    return EchoStack(
        images=np.stack(images).astype(np.float32),
        te_ms=np.tile(te, (3, 1)),
        subject_id=["S001"] * 3,
        slice_location=["base", "mid", "apex"],
        pixel_spacing_mm=np.full((3, 2), spacing_mm, np.float32),
        labels=np.stack(labels),
    )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


@pytest.fixture(scope="module")
def threshold_ckpt(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run's checkpoint with its U-Net swapped for :class:`ThresholdNet`."""
    ckpt = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    stored = ckpt[RUN_CONFIG_KEY]
    stored["model"]["net"] = {"_target_": f"{__name__}.ThresholdNet"}
    stored["model"]["echo_fusion"] = "first"
    net = ThresholdNet()
    ckpt["state_dict"] = {f"net.{k}": v for k, v in net.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "threshold.ckpt"
    torch.save(ckpt, path)
    return path


def _predict(ckpt: Path, stack: EchoStack, path: Path) -> np.ndarray:
    write_echo_stack(path, stack)
    module, data_cfg = load_module_from_checkpoint(ckpt, {})
    datamodule = inference_datamodule(data_cfg, {"num_workers": 0}, predict_path=path)
    return predict_stack(module, datamodule)


def test_checkpoint_stores_training_echo_times_and_spacing(tiny_run: Path) -> None:
    stored = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert stored[RUN_CONFIG_KEY]["acquisition"] == {
        "te_ms": TRAIN_TE_MS,
        "pixel_spacing_mm": [1.5, 1.5],
    }
    module, data_cfg = load_module_from_checkpoint(tiny_run / "checkpoints" / "last.ckpt", {})
    assert list(data_cfg.te_ms) == TRAIN_TE_MS and module.input_spacing_mm == (1.5, 1.5)


def test_decay_resampling_is_exact_for_exponentials() -> None:
    te = np.array([1.0, 2.2, 3.4, 4.6, 5.8, 7.0, 8.2])
    original, other = rings(1.5, TRAIN_TE_MS), rings(1.5, list(te))
    for i in range(3):
        got = resample_decay(other.images[i], te, np.array(TRAIN_TE_MS))
        np.testing.assert_allclose(got, original.images[i], rtol=2e-5)
    # extrapolation by up to one echo spacing beyond the last echo follows the same line
    got = resample_decay(other.images[0], te[:5], np.array([2.0, 6.5]))
    np.testing.assert_allclose(got, rings(1.5, [2.0, 6.5]).images[0], rtol=2e-5)


def test_same_labels_at_other_echo_count_and_times(threshold_ckpt: Path, tmp_path: Path) -> None:
    original = rings(1.5, TRAIN_TE_MS)
    reference = _predict(threshold_ckpt, original, tmp_path / "a.h5")
    assert _dice(reference == 2, original.labels == 2) > 0.9  # the fixed net works
    for te in ([1.0, 2.2, 3.4, 4.6, 5.8, 7.0, 8.2, 9.4], [2.0, 3.0, 4.5, 5.5, 7.0, 9.0]):
        labels = _predict(threshold_ckpt, rings(1.5, te), tmp_path / f"e{len(te)}.h5")
        assert (labels != reference).mean() < 0.002, te


def test_same_labels_at_other_spacing_and_matrix(threshold_ckpt: Path, tmp_path: Path) -> None:
    for spacing in (0.75, 1.2, 2.0):  # matrices 64, 40 and 24
        stack = rings(spacing, TRAIN_TE_MS)
        labels = _predict(threshold_ckpt, stack, tmp_path / f"s{spacing}.h5")
        assert labels.shape == stack.labels.shape
        assert _dice(labels == 2, stack.labels == 2) > 0.85
        assert _dice(labels > 0, stack.labels > 0) > 0.93
    # a larger matrix at the training spacing (zero background around) gives the same heart
    padded = rings(1.5, TRAIN_TE_MS, size_mm=63.0)  # 42 x 42, not a multiple of 4
    labels = _predict(threshold_ckpt, padded, tmp_path / "p.h5")
    assert _dice(labels == 2, padded.labels == 2) > 0.9


def test_spacing_resampling_feeds_the_net_the_training_grid(tiny_run: Path) -> None:
    module, _ = load_module_from_checkpoint(tiny_run / "checkpoints" / "last.ckpt", {})
    seen: list[tuple[int, ...]] = []
    module.net.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape)))
    images = torch.rand(2, 3, 30, 50)
    with torch.no_grad():
        labels = module.predict_labels(images, torch.tensor([[0.75, 0.75], [3.0, 1.5]]))
    assert labels.shape == (2, 30, 50)
    # 15 x 25 and 60 x 50 px at 1.5 mm, padded to the U-Net's multiple of 4; 3 echoes each
    assert seen == [(3, 1, 16, 28), (3, 1, 60, 52)]


def test_tiny_unet_predicts_any_file(tiny_run: Path, tmp_path: Path) -> None:
    """Another matrix, spacing and echo count through the real (tiny) U-Net checkpoint."""
    stack = rings(1.1, [1.2, 2.4, 3.6, 4.8, 6.0, 7.2], size_mm=50.0)
    labels = _predict(tiny_run / "checkpoints" / "last.ckpt", stack, tmp_path / "x.h5")
    assert labels.shape == (3, 45, 45) and set(np.unique(labels)) <= {0, 1, 2}


def test_file_whose_echoes_cannot_reach_the_training_ones_is_refused(
    make_cfg, tiny_run: Path, tmp_path: Path, capsys
) -> None:
    scans = tmp_path / "late_echoes.h5"
    stack = rings(1.5, [12.0, 15.0, 18.0, 21.0])
    write_echo_stack(scans, stack)
    before = scans.read_bytes()
    with pytest.raises(SystemExit) as exc:
        predict(_predict_cfg(make_cfg, tiny_run / "checkpoints" / "last.ckpt", scans, tmp_path))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"cmrseg-predict: error: {scans}: slice 0: echoes at TE 12.00-21.00 ms; the model needs "
        "echoes covering TE 2.00-7.00 ms (within one echo spacing, 3.00 ms, of the acquired ones)"
    )
    assert scans.read_bytes() == before and not (tmp_path / "out").exists()


def test_dataset_reads_stored_echoes_when_times_match(tmp_path: Path) -> None:
    path = tmp_path / "eight.h5"
    write_echo_stack(path, ring_phantom(1, seed=2, n_echoes=8))  # TE 2, 4.5, 7, ...
    info = inspect_echo_stack(path)
    kwargs = {"input_mode": "echoes_as_channels", "target": "three_class", "normalization": "none"}
    stored = EchoStackDataset(EchoStackFile(path, info), [0, 1], echoes=[0, 1, 2], **kwargs)
    by_time = EchoStackDataset(
        EchoStackFile(path, info), [0, 1], echoes=None, te_ms=TRAIN_TE_MS, **kwargs
    )
    for i in range(2):
        assert torch.equal(stored[i]["image"], by_time[i]["image"])  # no resampling at all
        assert by_time[i]["te_ms"].tolist() == TRAIN_TE_MS
    with pytest.raises(InputError, match="at least 2 echoes"):
        one = tmp_path / "one.h5"
        write_echo_stack(one, ring_phantom(1, seed=2, n_echoes=1))
        EchoStackDataset(
            EchoStackFile(one, inspect_echo_stack(one)), [0], echoes=None, te_ms=[3.0], **kwargs
        )


class ThreeEchoNet(nn.Module):
    """A network that takes three echoes as channels (weights irrelevant here)."""

    in_channels = 3
    myocardium_classes = (2,)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images)


def test_old_channels_checkpoint_refuses_another_echo_count(
    make_cfg, tiny_run: Path, tmp_path: Path, capsys
) -> None:
    """Without stored echo times a 3-channel model cannot map a 4-echo file: one line, exit 2."""
    ckpt = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    stored = ckpt[RUN_CONFIG_KEY]
    del stored["acquisition"]
    stored["model"]["net"] = {"_target_": f"{__name__}.ThreeEchoNet"}
    stored["data"] |= {"input_mode": "echoes_as_channels", "echoes": None}
    ckpt["state_dict"] = {f"net.{k}": v for k, v in ThreeEchoNet().state_dict().items()}
    old = tmp_path / "old_channels.ckpt"
    torch.save(ckpt, old)
    scans = tmp_path / "four.h5"
    write_echo_stack(scans, ring_phantom(1, seed=3, labels=False))
    with pytest.raises(SystemExit) as exc:
        predict(_predict_cfg(make_cfg, old, scans, tmp_path))
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"cmrseg-predict: error: {scans}: the model takes 3 echoes as channels (echo times not "
        "stored in its checkpoint), the file gives 4"
    )
