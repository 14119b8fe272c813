"""Lightning training step vs a plain PyTorch loop on the same model, batch and data; inference.

Prints the time per training step of ``SegmentationModule`` under ``lightning.Trainer`` and of a
hand-written loop (same U-Net, loss, optimizer, batches), their ratio (target <= 1.1), and the
inference speed of ``SegmentationModule.predict_labels`` on whole 192 x 256 slices, on the CPU
or (``--device cuda``) one GPU in float32.

    python benchmarks/bench_train_step.py [--steps 30] [--threads 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import torch
from lightning import Callback, Trainer
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cmrseg.metrics import overlap_metrics
from cmrseg.models import UNet
from cmrseg.modules import SegmentationModule

FEATURES = [16, 32, 64, 128, 256]  # conf/experiment/demo.yaml


class _Batches(Dataset):
    def __init__(self, n: int, batch: int, size: tuple[int, int]) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, batch, 1, *size, generator=g)
        self.masks = torch.randint(0, 3, (n, batch, *size), generator=g)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "mask": self.masks[i]}


def _net() -> UNet:
    torch.manual_seed(0)
    return UNet(
        in_channels=1,
        num_classes=3,
        myocardium_classes=[2],
        n_stages=len(FEATURES),
        features_per_stage=FEATURES,
        n_conv_per_stage=2,
        n_conv_per_stage_decoder=2,
        norm="batch",
        bottleneck_dropout=0.5,
    )


def _optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


def _now(device: torch.device) -> float:
    """Wall time after the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _module(echo_fusion: str) -> SegmentationModule:
    return SegmentationModule(
        net=_net(),
        loss=nn.CrossEntropyLoss(),
        optimizer=_optimizer,
        scheduler=None,
        scheduler_interval="epoch",
        metrics=overlap_metrics(),
        echo_fusion=echo_fusion,
        test_time_augmentation="none",
        seg_uncertainty="none",
        keep_largest_component=True,
        myocardium_decision="argmax",
        init_from=None,
        init_patterns=["*"],
        freeze_patterns=[],
        channels_last=True,
        train_patch_size=None,
    )


class _StepTimer(Callback):
    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device, self.start, self.end = warmup, device, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = _now(self.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = _now(self.device)


def bench_lightning(data: _Batches, warmup: int, device: torch.device) -> float:
    module = _module("first")
    timer = _StepTimer(warmup, device)
    trainer = Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    loader = DataLoader(data, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return (timer.end - timer.start) / (len(data) - warmup)


def bench_plain(data: _Batches, warmup: int, device: torch.device) -> float:
    net = _net().to(device, memory_format=torch.channels_last)
    net.apply(net.initialize)
    net.train()
    optimizer = _optimizer(net.parameters())
    loss_fn = nn.CrossEntropyLoss()
    for i, batch in enumerate(DataLoader(data, batch_size=None, shuffle=False)):
        if i == warmup:
            start = _now(device)
        images = batch["image"].to(device).contiguous(memory_format=torch.channels_last)
        loss = loss_fn(net(images), batch["mask"].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (_now(device) - start) / (len(data) - warmup)


def bench_inference(n_slices: int, device: torch.device) -> float:
    module = _module("mean_softmax").to(device).eval()
    images = torch.randn(n_slices, 3, 192, 256)  # echoes 1-3, fused by softmax averaging
    with torch.no_grad():
        module.predict_labels(images[:2].to(device))
        start = _now(device)
        for i in range(0, n_slices, 4):
            module.predict_labels(images[i : i + 4].to(device))
    return n_slices / (_now(device) - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after 5 warm-up)")
    parser.add_argument("--batch", type=int, default=16, help="samples per batch")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warmup = 5
    data = _Batches(args.steps + warmup, args.batch, (128, 128))
    plain = bench_plain(data, warmup, device)
    lightning = bench_lightning(data, warmup, device)
    plain_again = bench_plain(data, warmup, device)  # interleaved: drift of a shared machine
    plain = min(plain, plain_again)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"U-Net {FEATURES}, batch {args.batch} x 1 x 128 x 128, {where}, {args.threads} threads")
    print(f"plain PyTorch loop : {plain * 1e3:8.1f} ms/step")
    print(f"Lightning          : {lightning * 1e3:8.1f} ms/step")
    print(f"ratio Lightning/plain: {lightning / plain:.3f} (target <= 1.1)")
    n_slices = 24 if device.type == "cpu" else 480
    rate = bench_inference(n_slices, device)
    print(f"{where} inference (3 echoes fused, 192 x 256): {rate:.1f} slices/s")


if __name__ == "__main__":
    main()
