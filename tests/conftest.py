"""Shared fixtures: tiny ring-phantom echo stacks and the real conf/ composed and shrunk."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from cmrseg.conf import CONF_DIR
from cmrseg.data.echo_stack import EchoStack, write_echo_stack

TINY_SIZE = 32  # H = W of the tiny phantom; multiple of the tiny U-Net's size divisor (4)


def ring_phantom(
    n_subjects: int, *, seed: int, size: int = TINY_SIZE, n_echoes: int = 4, labels: bool = True
) -> EchoStack:
    """A cohort of 2 slices per subject: a bright blood pool inside a darker decaying ring.

    Args:
        n_subjects: Subjects (``S000``...).
        seed: Random seed of positions, radii, T2* and noise.
        size: Image height and width in pixels.
        n_echoes: Echoes, TE from 2 ms in steps of 2.5 ms.
        labels: Whether to store ``labels``.
    """
    rng = np.random.default_rng(seed)
    n = 2 * n_subjects
    te_ms = (2.0 + 2.5 * np.arange(n_echoes, dtype=np.float32))[None].repeat(n, 0)
    rows, cols = np.mgrid[:size, :size].astype(np.float32)
    images = np.empty((n, n_echoes, size, size), np.float32)
    label_maps = np.zeros((n, size, size), np.uint8)
    rv_insertion = np.empty((n, 2), np.float32)
    for i in range(n):
        center = size / 2 + rng.uniform(-3, 3, size=2)
        radius = np.hypot(rows - center[0], cols - center[1])
        inner = rng.uniform(0.15, 0.2) * size
        outer = inner + rng.uniform(0.08, 0.12) * size
        pool, myo = radius < inner, (radius >= inner) & (radius < outer)
        label_maps[i][pool], label_maps[i][myo] = 1, 2
        rv_insertion[i] = center + outer * np.array([-0.7, -0.7])  # up and left of the LV
        t2star_ms = np.where(pool, 40.0, np.where(myo, rng.uniform(8, 30), 15.0))
        s0 = np.where(pool, 1.0, np.where(myo, 0.45, 0.25))
        decay = s0[None] * np.exp(-te_ms[i][:, None, None] / t2star_ms[None])
        images[i] = np.abs(decay + rng.normal(0, 0.03, decay.shape)) * 1000
    return EchoStack(
        images=images,
        te_ms=te_ms,
        subject_id=[f"S{i // 2:03d}" for i in range(n)],
        slice_location=["base", "mid"] * n_subjects,
        pixel_spacing_mm=np.full((n, 2), 1.5, np.float32),
        labels=label_maps if labels else None,
        rv_insertion=rv_insertion,
    )


@pytest.fixture(scope="session")
def tiny_stack_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 subjects x 2 slices of 32 x 32 px, 4 echoes, with labels."""
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    write_echo_stack(path, ring_phantom(10, seed=0))
    return path


def shrink(cfg: DictConfig, output_dir: Path, data_path: Path) -> DictConfig:
    """Make a composed train config tiny: 3-level 4..16-channel network, 1 epoch, CPU, no logger.

    A classical segmenter's config (no ``net``) keeps its method settings.
    """
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
        cfg.extras.print_config = False
        cfg.data.path = str(data_path)
        cfg.data.num_workers = 0
        cfg.data.batch_size = 4
        cfg.data.val_fraction = 0.2
        cfg.data.test_fraction = 0.2
        if "net" not in cfg.model:  # a classical segmenter: nothing to shrink
            pass
        elif "channels" in cfg.model.net:  # MONAI's UNet
            cfg.model.net.channels = [4, 8, 16]
            cfg.model.net.strides = [2, 2]
        else:
            cfg.model.net.n_stages = 3
            cfg.model.net.features_per_stage = [4, 8, 16]
        cfg.trainer.max_epochs = 1
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_model_summary = False
        cfg.logger = None
        for name in ("progress_bar", "lr_monitor"):
            if cfg.get("callbacks"):
                cfg.callbacks.pop(name, None)
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path, tiny_stack_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose ``conf/<config_name>`` with overrides, shrink it and set it as Hydra's config."""

    def _make(
        overrides: Sequence[str] = (), config_name: str = "train.yaml", *, do_shrink: bool = True
    ) -> DictConfig:
        cfg = compose_config(config_name, overrides)
        if do_shrink:
            shrink(cfg, tmp_path, tiny_stack_path)
        HydraConfig().set_config(cfg)
        return cfg

    yield _make
    GlobalHydra.instance().clear()


def compose_config(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``conf/<config_name>`` with Hydra's own config (no shrinking)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_stack_path: Path) -> Path:
    """Folder of a 2-epoch training run of the tiny U-Net (``checkpoints/last.ckpt``)."""
    from cmrseg.cli.train import train

    run_dir = tmp_path_factory.mktemp("run")
    cfg = shrink(compose_config("train.yaml"), run_dir, tiny_stack_path)
    with open_dict(cfg):
        cfg.trainer.max_epochs = 2
        cfg.test = False
    HydraConfig().set_config(cfg)
    train(cfg)
    GlobalHydra.instance().clear()
    return run_dir


def execute_analysis_notebook(report_dir: Path, work_dir: Path) -> Any:
    """Run ``notebooks/analysis.ipynb`` on a ``cmrseg-report`` folder, as papermill would.

    A cell after the one tagged ``parameters`` sets ``REPORT``; any failing cell raises
    ``CellExecutionError``. Returns the executed notebook.
    """
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"
    notebook = nbformat.read(path, as_version=4)
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    parameters = nbformat.v4.new_code_cell(f"REPORT = {str(report_dir)!r}")
    notebook.cells.insert(tagged[0] + 1, parameters)
    nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(work_dir)}},
    ).execute()
    return notebook


def notebook_text(notebook: Any) -> str:
    """The text and Markdown outputs of an executed notebook's code cells."""
    return "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/markdown", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def notebook_images(notebook: Any) -> list[Any]:
    """The PNG outputs of an executed notebook."""
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
