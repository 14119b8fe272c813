"""Train-loader throughput: EchoStackDataModule (HDF5, worker processes) vs arrays in memory.

All loaders run the same dataset code, configuration (conf/data/echo_stack.yaml plus
overrides) and augmentation. Baselines read slices from arrays already in memory, in the main
process (``num_workers=0``) and in ``--workers`` processes; the datamodule reads them lazily from
the HDF5 file in ``--workers`` processes. Epochs alternate between the loaders so that they share
the machine's load; the median of the steady-state epochs is reported (the first epoch, with
worker start-up, apart). Target: datamodule >= 0.8x in-memory at batch 8 with 2 workers.

    python benchmarks/bench_loader.py [--subjects 40] [--augmentation paper] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from cmrseg.conf import CONF_DIR
from cmrseg.data.datamodule import EpochSampler, collate_samples
from cmrseg.data.dataset import EchoStackDataset
from cmrseg.data.echo_stack import EchoStack, EchoStackInfo, read_echo_stack, write_echo_stack

N_ECHOES, HEIGHT, WIDTH = 8, 192, 256


def make_file(path: Path, n_subjects: int, seed: int = 0) -> None:
    """Write a realistic-size cohort: 3 slices per subject, 8 echoes, 192 x 256 px, labels."""
    rng = np.random.default_rng(seed)
    n = 3 * n_subjects
    te_ms = np.linspace(2.97, 21.68, N_ECHOES, dtype=np.float32)
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    labels = np.zeros((n, HEIGHT, WIDTH), np.uint8)
    images = np.empty((n, N_ECHOES, HEIGHT, WIDTH), np.float32)
    for i in range(n):
        r0, c0 = rng.uniform(80, 112), rng.uniform(110, 146)
        radius = np.hypot(rows - r0, cols - c0)
        labels[i][radius < 25] = 2
        labels[i][radius < 16] = 1
        t2star_ms = np.where(labels[i] == 2, rng.uniform(8, 35), 60.0)
        decay = np.exp(-te_ms[:, None, None] / t2star_ms[None])
        images[i] = 300 * decay + np.abs(rng.normal(0, 10, (N_ECHOES, HEIGHT, WIDTH)))
    stack = EchoStack(
        images=images,
        te_ms=np.tile(te_ms, (n, 1)),
        subject_id=[f"S{i // 3:04d}" for i in range(n)],
        slice_location=["base", "mid", "apex"] * n_subjects,
        pixel_spacing_mm=np.full((n, 2), 1.4, np.float32),
        labels=labels,
    )
    write_echo_stack(path, stack)


class _InMemory:
    """The baseline's slice reader: the whole file already in memory."""

    def __init__(self, stack: EchoStack, info: EchoStackInfo) -> None:
        self.info = info
        self._arrays = {"images": stack.images, "labels": stack.labels}

    def read(self, name: str, index: int, channels: Sequence[int] | None = None) -> np.ndarray:
        data = self._arrays[name][index]
        return data if channels is None else data[list(channels)]


def _epoch_samples_per_s(loader: DataLoader) -> float:
    start = time.perf_counter()
    n = sum(batch["image"].shape[0] for batch in loader)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--augmentation", default="paper", help="paper | nnunet | none")
    parser.add_argument("--input-mode", default="echoes_as_samples")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs after the first")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cohort.h5"
        make_file(path, args.subjects)
        overrides = [
            "+data=echo_stack",
            f"data.path={path}",
            f"data/augmentation={args.augmentation}",
            f"data.input_mode={args.input_mode}",
            f"data.batch_size={args.batch_size}",
            f"data.num_workers={args.workers}",
            "data.seed=0",
        ]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(overrides=overrides)
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        train = datamodule.dataset("train")
        memory = EchoStackDataset(
            _InMemory(read_echo_stack(path), datamodule.info),
            train.slice_indices,
            input_mode=train.input_mode,
            echoes=train.echoes,
            target=train.target,
            normalization=train.normalization,
            transform=instantiate(cfg.data.augmentation),
        )
        loaders = {
            "in-memory, main process": DataLoader(
                memory,
                batch_size=args.batch_size,
                sampler=EpochSampler(len(memory), 0),
                collate_fn=collate_samples,
            ),
            f"in-memory, {args.workers} workers": DataLoader(
                memory,
                batch_size=args.batch_size,
                sampler=EpochSampler(len(memory), 0),
                collate_fn=collate_samples,
                num_workers=args.workers,
                persistent_workers=args.workers > 0,
            ),
            f"datamodule (HDF5), {args.workers} workers": datamodule.train_dataloader(),
        }
        first = {name: _epoch_samples_per_s(loader) for name, loader in loaders.items()}
        rates: dict[str, list[float]] = {name: [] for name in loaders}
        for _ in range(args.epochs):
            for name, loader in loaders.items():
                rates[name].append(_epoch_samples_per_s(loader))
        file_mib = path.stat().st_size / 2**20

    print(
        f"file: {3 * args.subjects} slices x {N_ECHOES} echoes x {HEIGHT}x{WIDTH} px "
        f"({file_mib:.0f} MiB); {len(train)} train samples/epoch; "
        f"{args.input_mode}, augmentation={args.augmentation}, batch {args.batch_size}"
    )
    median = {name: float(np.median(r)) for name, r in rates.items()}
    for name, rate in median.items():
        print(f"{name:>34}: {rate:8.1f} samples/s (first epoch {first[name]:.1f})")
    names = list(median)
    print(f"ratio datamodule / in-memory main process: {median[names[2]] / median[names[0]]:.2f}")
    print(f"ratio datamodule / in-memory same workers: {median[names[2]] / median[names[1]]:.2f}")


if __name__ == "__main__":
    main()
