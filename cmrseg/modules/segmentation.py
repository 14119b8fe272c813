"""The LightningModule that trains and evaluates every cmrseg segmentation network.

After torchgeo's ``BaseTask``: the network, the loss and the metric collection are injected
(Hydra nested ``_target_``), the optimizer and scheduler are ``_partial_`` factories completed in
:meth:`SegmentationModule.configure_optimizers`, and one metric collection is cloned per stage
with keys like ``val/jaccard``.

Inference on the slices of an echo stack (validation, test, predict) segments each slice from a
batch ``image [B, C, H, W]``. When the network takes fewer channels than the batch holds (the
paper's U-Net, trained on echoes as separate one-channel samples and shown the first echoes of a
slice at evaluation), ``echo_fusion`` says how the echoes are combined:

- ``first``: segment echo 1 alone (channel 0);
- ``mean_softmax``: run the network on each echo channel separately and average the softmax
  probabilities before the arg-max.

The default is chosen on validation data (see ``conf/model/unet.yaml``).

``myocardium_decision`` says which pixels of the fused probabilities are myocardium: ``argmax``
(the most probable class), or a probability threshold in ``(0, 1)`` on the myocardium classes'
summed probability (stricter than the arg-max above 0.5: fewer false-positive rim pixels, at
some cost in sensitivity).

``test_time_augmentation`` (``none`` or ``rot90``) optionally averages the fused probabilities of
the slice rotated by 0, 90, 180 and 270 degrees (each rotated back), the geometric transforms of
the paper's training augmentation; it costs four forward passes per slice.

``seg_uncertainty`` (``none`` or ``rot90``) measures how much those four passes disagree about
the myocardium: per slice, the share of pixels labelled myocardium by any pass that not every
pass labels myocardium (``1 - |intersection| / |union|`` of the four myocardium masks; 0 when
no pass finds any). The labels stay those of ``test_time_augmentation`` (the passes are shared
when both are ``rot90``). Evaluation and prediction steps then return it as
``seg_uncertainty`` float32 ``[B]``; the T2* rows of a slice above the ``qc`` threshold say
``seg_uncertainty=<value>`` (:func:`cmrseg.t2star.quantify_stack`). On a slice resampled to
the training spacing it is measured on the resampled grid.

Pixel spacing: with :attr:`SegmentationModule.input_spacing_mm` set (the training data's, by
:func:`cmrseg.inference.load_module_from_checkpoint`), a slice whose spacing differs by more than
1% is resampled to it (bilinear, antialiased when shrinking), segmented, and its class
probabilities resampled back to the slice's grid (bilinear) before the arg-max, as nnU-Net does.
Any matrix size works: images are padded to the network's size divisor and cropped back.
"""

from __future__ import annotations

import fnmatch
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from lightning import LightningModule
from torch import nn
from torch.nn import functional
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MetricCollection

from cmrseg.core.labels import MYOCARDIUM
from cmrseg.models import logits_to_labels
from cmrseg.modules.transfer import copy_matching_weights, load_net_state_dict

__all__ = [
    "EchoFusion",
    "MyocardiumDecision",
    "SegUncertainty",
    "SegmentationModule",
    "TestTimeAugmentation",
]

log = logging.getLogger(__name__)

EchoFusion = Literal["first", "mean_softmax"]
TestTimeAugmentation = Literal["none", "rot90"]
SegUncertainty = Literal["none", "rot90"]
MyocardiumDecision = Literal["argmax"] | float
_RNG_KEY = "cmrseg_rng_states"
_SPACING_RTOL = 0.01  # spacings within 1 % are the training spacing
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


class SegmentationModule(LightningModule):
    """Train, validate, test and predict a segmentation network on echo-stack batches.

    Batches are dicts with ``image`` float32 ``[B, C, H, W]``, ``mask`` int64 ``[B, H, W]``
    (class indices of the network's target coding; absent for prediction), ``sample_id`` int64
    ``[B]`` (unique per slice) and ``pixel_spacing_mm`` float32 ``[B, 2]``.

    Args:
        net: Any network ``images [B, C, H, W] -> logits [B, K, H, W]`` (cmrseg's or another
            library's) with attributes ``in_channels`` and ``myocardium_classes``; optional
            ``size_divisor`` (inputs are padded to a multiple of it) and ``initialize`` (applied
            to every submodule).
        loss: Loss module ``(logits, mask) -> scalar``.
        optimizer: Partial optimizer, completed with the trainable parameters.
        scheduler: Partial LR scheduler, completed with the optimizer, or ``None``.
        scheduler_interval: ``epoch`` or ``step``: when the scheduler steps.
        metrics: Metric collection on binary myocardium masks; cloned for ``val/`` and
            ``test/``; ``update(preds, target, sample_id=..., pixel_spacing_mm=...)``.
        echo_fusion: How a one-channel network segments a multi-echo slice (module docstring).
        test_time_augmentation: ``none``, or ``rot90`` to average over the four 90-degree
            rotations of each slice at evaluation and prediction (module docstring).
        seg_uncertainty: ``none``, or ``rot90`` to measure the disagreement of the four
            90-degree rotations about the myocardium per slice (module docstring).
        keep_largest_component: Keep only the largest myocardium component in predictions.
        myocardium_decision: ``argmax``, or a myocardium probability threshold in ``(0, 1)``
            (module docstring).
        init_from: Checkpoint or state-dict file to copy pretrained layers from, or ``None``.
        init_patterns: ``fnmatch`` patterns of tensor names to copy from ``init_from``.
        freeze_patterns: ``fnmatch`` patterns of parameter names to freeze (e.g.
            ``["encoder.*"]``); norm layers whose parameters are all frozen also keep their
            running statistics.
        channels_last: Run the network in ``torch.channels_last`` memory format.
        train_patch_size: ``[h, w]`` patches to train on (nnU-Net style), or ``None`` for whole
            images. Each patch is centred on the sample's foreground (``mask > 0``) with a
            uniform random offset of up to a quarter of the patch; evaluation always sees
            whole slices.
    """

    monitor = "val/jaccard"
    mode = "max"

    def __init__(
        self,
        *,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., LRScheduler] | None,
        scheduler_interval: Literal["epoch", "step"],
        metrics: MetricCollection,
        echo_fusion: EchoFusion,
        test_time_augmentation: TestTimeAugmentation,
        seg_uncertainty: SegUncertainty,
        keep_largest_component: bool,
        myocardium_decision: MyocardiumDecision,
        init_from: str | None,
        init_patterns: Sequence[str],
        freeze_patterns: Sequence[str],
        channels_last: bool,
        train_patch_size: Sequence[int] | None,
    ) -> None:
        super().__init__()
        if echo_fusion not in ("first", "mean_softmax"):
            raise ValueError(f"echo_fusion must be 'first' or 'mean_softmax', got {echo_fusion!r}")
        if test_time_augmentation not in ("none", "rot90"):
            raise ValueError(
                f"test_time_augmentation must be 'none' or 'rot90', got {test_time_augmentation!r}"
            )
        if seg_uncertainty not in ("none", "rot90"):
            raise ValueError(f"seg_uncertainty must be 'none' or 'rot90', got {seg_uncertainty!r}")
        if myocardium_decision != "argmax" and not (
            isinstance(myocardium_decision, int | float) and 0 < myocardium_decision < 1
        ):
            raise ValueError(
                "myocardium_decision must be 'argmax' or a probability in (0, 1), "
                f"got {myocardium_decision!r}"
            )
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(
                f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval}"
            )
        self.save_hyperparameters(
            ignore=["net", "loss", "optimizer", "scheduler", "metrics"], logger=False
        )
        self.net = net
        self.loss_fn = loss
        self._optimizer_factory = optimizer
        self._scheduler_factory = scheduler
        self.myocardium_classes = tuple(int(c) for c in net.myocardium_classes)
        #: (row, column) mm that evaluation and prediction resample slices to; None: as stored
        self.input_spacing_mm: tuple[float, float] | None = None
        self.configure_models()
        self.configure_metrics(metrics)

    # ------------------------------------------------------------------ set-up

    def configure_models(self) -> None:
        """Initialize the network, copy pretrained layers and freeze the selected ones."""
        initialize = getattr(self.net, "initialize", None)
        if initialize is not None:
            self.net.apply(initialize)
        if self.hparams.init_from is not None:
            report = copy_matching_weights(
                self.net,
                load_net_state_dict(self.hparams.init_from),
                self.hparams.init_patterns,
            )
            log.info("Pretrained layers from %s:\n%s", self.hparams.init_from, report.table())
        frozen = 0
        for name, param in self.net.named_parameters():
            if any(fnmatch.fnmatchcase(name, p) for p in self.hparams.freeze_patterns):
                param.requires_grad_(False)
                frozen += 1
        if self.hparams.freeze_patterns and frozen == 0:
            raise ValueError(f"freeze_patterns {list(self.hparams.freeze_patterns)} match nothing")
        self._frozen_norms = [
            m
            for m in self.net.modules()
            if isinstance(m, _NORM_TYPES)
            and any(True for _ in m.parameters())
            and not any(p.requires_grad for p in m.parameters())
        ]
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)

    def configure_metrics(self, metrics: MetricCollection) -> None:
        """Clone the metric collection for validation and test."""
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def configure_optimizers(self) -> dict[str, Any]:
        """Complete the partial optimizer (trainable parameters) and scheduler."""
        params = [p for p in self.trainer.model.parameters() if p.requires_grad]
        optimizer = self._optimizer_factory(params=params)
        if self._scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self._scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.hparams.scheduler_interval,
                "monitor": self.monitor,
            },
        }

    # ------------------------------------------------------------------ forward

    @property
    def in_channels(self) -> int:
        """Input channels of the network."""
        return int(self.net.in_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Network logits ``[B, K, H, W]`` for images ``[B, C, H, W]`` of any size.

        Images are zero-padded at the bottom/right to a multiple of the network's
        ``size_divisor`` and the logits cropped back.
        """
        divisor = getattr(self.net, "size_divisor", 1)
        h, w = images.shape[-2:]
        pad_h, pad_w = -h % divisor, -w % divisor
        if pad_h or pad_w:
            images = functional.pad(images, (0, pad_w, 0, pad_h))
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = self.net(images)
        return logits[..., :h, :w] if pad_h or pad_w else logits

    def segment_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B, K, H, W]`` of slices, fusing echoes and rotations.

        Args:
            images: ``[B, C, H, W]``; ``C`` equals the network's input channels, or the
                network takes one channel and ``C`` echoes are fused (``echo_fusion``).
        """
        return self._segment(images)[0]

    def _segment(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`segment_probabilities` and the myocardium disagreement ``[B]`` of the rotations.

        The disagreement is ``None`` when ``seg_uncertainty`` is ``none``.
        """
        probs = self._fused_probabilities(images)
        tta = self.hparams.test_time_augmentation == "rot90"
        uncertain = self.hparams.seg_uncertainty == "rot90"
        if not (tta or uncertain):
            return probs, None
        passes = [probs]
        for k in (1, 2, 3):
            rotated = self._fused_probabilities(torch.rot90(images, k, dims=(-2, -1)))
            passes.append(torch.rot90(rotated, -k, dims=(-2, -1)))
        if tta:
            probs = torch.stack(passes).mean(dim=0)
        if not uncertain:
            return probs, None
        walls = torch.stack([self._labels(p) == MYOCARDIUM for p in passes])
        union = walls.any(dim=0).flatten(1).sum(dim=1)
        agreed = walls.all(dim=0).flatten(1).sum(dim=1)
        disagreement = 1 - agreed.float() / union.clamp_min(1).float()
        return probs, disagreement

    def _fused_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of slices, the echoes fused by ``echo_fusion``."""
        net_channels = self.in_channels
        channels = images.shape[1]
        if channels == net_channels:
            return self(images).softmax(dim=1)
        if net_channels != 1:
            raise ValueError(
                f"network takes {net_channels} channels, batch has {channels}; "
                "check data.input_mode / data.echoes against the checkpoint"
            )
        if self.hparams.echo_fusion == "first":
            return self(images[:, :1]).softmax(dim=1)
        b = images.shape[0]
        per_echo = self(images.reshape(b * channels, 1, *images.shape[-2:])).softmax(dim=1)
        return per_echo.reshape(b, channels, *per_echo.shape[1:]).mean(dim=1)

    def probabilities_at_spacing(
        self, images: torch.Tensor, pixel_spacing_mm: torch.Tensor | None
    ) -> torch.Tensor:
        """:meth:`segment_probabilities` of slices resampled to :attr:`input_spacing_mm`.

        Args:
            images: ``[B, C, H, W]``.
            pixel_spacing_mm: ``[B, 2]`` (row, column) spacing of each slice, or ``None``.

        Returns:
            Class probabilities ``[B, K, H, W]`` on the slices' own grids.
        """
        return self._segment_at_spacing(images, pixel_spacing_mm)[0]

    def _segment_at_spacing(
        self, images: torch.Tensor, pixel_spacing_mm: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`probabilities_at_spacing` and the disagreement ``[B]`` (or ``None``)."""
        if self.input_spacing_mm is None or pixel_spacing_mm is None:
            return self._segment(images)
        target = torch.tensor(self.input_spacing_mm, dtype=torch.float64)
        scales = pixel_spacing_mm.detach().to("cpu", torch.float64) / target
        if bool(((scales - 1).abs() <= _SPACING_RTOL).all()):
            return self._segment(images)
        h, w = images.shape[-2:]
        out, disagreements = [], []
        for image, scale in zip(images, scales, strict=True):
            size = (max(1, round(h * float(scale[0]))), max(1, round(w * float(scale[1]))))
            resized = functional.interpolate(
                image[None],
                size=size,
                mode="bilinear",
                align_corners=False,
                antialias=size[0] < h or size[1] < w,
            )
            probs, disagreement = self._segment(resized)
            out.append(functional.interpolate(probs, size=(h, w), mode="bilinear"))
            disagreements.append(disagreement)
        if disagreements[0] is None:
            return torch.cat(out), None
        return torch.cat(out), torch.cat(disagreements)

    def predict_labels(
        self, images: torch.Tensor, pixel_spacing_mm: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Echo-stack labels uint8 ``[B, H, W]`` (0 bg, 1 blood pool, 2 myocardium).

        Args:
            images: ``[B, C, H, W]``.
            pixel_spacing_mm: ``[B, 2]``, used with :attr:`input_spacing_mm` (module docstring).
        """
        return self._labels(self.probabilities_at_spacing(images, pixel_spacing_mm))

    def _labels(self, probs: torch.Tensor) -> torch.Tensor:
        decision = self.hparams.myocardium_decision
        return logits_to_labels(
            probs,
            self.myocardium_classes,
            keep_largest_component=self.hparams.keep_largest_component,
            myocardium_threshold=None if decision == "argmax" else float(decision),
        )

    # ------------------------------------------------------------------ steps

    def _foreground_patches(
        self, images: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop ``[B, C, H, W]`` images and ``[B, H, W]`` masks to ``train_patch_size``."""
        ph, pw = (int(v) for v in self.hparams.train_patch_size)
        h, w = mask.shape[-2:]
        if ph > h or pw > w:
            raise ValueError(f"train_patch_size {ph}x{pw} exceeds the images ({h}x{w})")
        jitter = (torch.rand(mask.shape[0], 2, device=mask.device) - 0.5) * 0.5
        rows = torch.arange(h, device=mask.device, dtype=torch.float32)
        cols = torch.arange(w, device=mask.device, dtype=torch.float32)
        image_patches, mask_patches = [], []
        for i in range(mask.shape[0]):
            fg = mask[i] > 0
            n_fg = fg.sum()
            if n_fg > 0:
                r_c = (fg.sum(1) * rows).sum() / n_fg
                c_c = (fg.sum(0) * cols).sum() / n_fg
            else:
                r_c, c_c = torch.tensor(h / 2), torch.tensor(w / 2)
            top = int((r_c + jitter[i, 0] * ph - ph / 2).round().clamp(0, h - ph))
            left = int((c_c + jitter[i, 1] * pw - pw / 2).round().clamp(0, w - pw))
            image_patches.append(images[i, :, top : top + ph, left : left + pw])
            mask_patches.append(mask[i, top : top + ph, left : left + pw])
        return torch.stack(image_patches), torch.stack(mask_patches)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Widen the loaders' uint8 masks (a quarter of int64's inter-process traffic) to int64."""
        if "mask" in batch:
            batch["mask"] = batch["mask"].long()
        return batch

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Loss on one batch of training samples (or patches of them); logs ``train/loss``."""
        images, mask = batch["image"], batch["mask"]
        if self.hparams.train_patch_size is not None:
            images, mask = self._foreground_patches(images, mask)
        loss = self.loss_fn(self(images), mask)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def _evaluate(
        self, batch: dict[str, Any], metrics: MetricCollection, stage: str
    ) -> dict[str, torch.Tensor]:
        probs, disagreement = self._segment_at_spacing(batch["image"], batch["pixel_spacing_mm"])
        # the configured loss of the evaluated (fused) probabilities: every loss here takes
        # logits through a softmax, and softmax(log p) = p
        loss = self.loss_fn(probs.clamp_min(1e-8).log(), batch["mask"])
        self.log(f"{stage}/loss", loss, batch_size=probs.shape[0], sync_dist=True)
        labels = self._labels(probs)
        target = torch.isin(
            batch["mask"], torch.tensor(self.myocardium_classes, device=probs.device)
        )
        metrics.update(
            labels == MYOCARDIUM,
            target,
            sample_id=batch["sample_id"],
            pixel_spacing_mm=batch["pixel_spacing_mm"],
        )
        return self._step_output(labels, batch["slice_index"], disagreement)

    @staticmethod
    def _step_output(
        labels: torch.Tensor, slice_index: torch.Tensor, disagreement: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        out = {"labels": labels, "slice_index": slice_index}
        if disagreement is not None:
            out["seg_uncertainty"] = disagreement
        return out

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Update the validation metrics with one batch of slices; return its labels.

        Returns:
            ``{"labels": uint8 [B, H, W], "slice_index": int64 [B]}`` (for callbacks, e.g.
            :class:`~cmrseg.callbacks.T2StarCallback`), with ``"seg_uncertainty": float32
            [B]`` when ``seg_uncertainty`` is ``rot90``.
        """
        return self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Update the test metrics with one batch of slices; return its labels (as validation)."""
        return self._evaluate(batch, self.test_metrics, "test")

    def _log_metrics(self, metrics: MetricCollection) -> None:
        values = {k: v for k, v in metrics.compute().items() if v.numel() == 1}
        self.log_dict({k: v.float() for k, v in values.items()})
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        """Log ``val/...`` metrics over the whole validation set."""
        self._log_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        """Log ``test/...`` metrics over the whole test set."""
        self._log_metrics(self.test_metrics)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Predicted labels: ``{"labels": uint8 [B, H, W], "slice_index": int64 [B]}``.

        With ``seg_uncertainty`` ``rot90`` also ``"seg_uncertainty": float32 [B]``.
        """
        probs, disagreement = self._segment_at_spacing(batch["image"], batch["pixel_spacing_mm"])
        return self._step_output(self._labels(probs), batch["slice_index"], disagreement)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the global RNG states so that a resumed run draws the same dropout masks."""
        np_state = np.random.get_state()
        checkpoint[_RNG_KEY] = {
            "torch": torch.get_rng_state(),
            "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the RNG states of :meth:`on_save_checkpoint` for :meth:`on_train_start`."""
        self._resumed_rng_states = checkpoint.get(_RNG_KEY)

    def on_train_start(self) -> None:
        """Restore stored RNG states after the sanity check, which draws random numbers."""
        states = getattr(self, "_resumed_rng_states", None)
        if states is None:
            return
        torch.set_rng_state(states["torch"])
        name, keys, *rest = states["numpy"]
        np.random.set_state((name, keys.numpy(), *rest))
        random.setstate(states["python"])
        self._resumed_rng_states = None

    def on_train_epoch_start(self) -> None:
        """Keep the running statistics of fully frozen norm layers fixed."""
        for module in self._frozen_norms:
            module.eval()
