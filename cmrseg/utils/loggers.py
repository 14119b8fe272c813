"""Experiment loggers that never stop a training run."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from cmrseg.core.atomic import atomic_path

__all__ = ["WANDB_ID_FILE", "wandb_logger"]

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_run_id.txt"


def wandb_logger(
    *,
    save_dir: str,
    project: str,
    name: str,
    group: str,
    tags: Sequence[str],
    job_type: str,
    log_model: bool,
    mode: str,
) -> WandbLogger | None:
    """Start a W&B run that resumes with its run folder, or return ``None`` if W&B fails.

    ``WANDB_MODE`` from the environment wins over ``mode`` (``offline`` by default in the
    config). The run id is kept in ``save_dir/wandb_run_id.txt``: a run restarted in the same
    folder (``ckpt_path=last``) continues the same W&B run (``resume="allow"``).

    Args:
        save_dir: The run folder.
        project: W&B project.
        name: Run name.
        group: Run group (empty for none).
        tags: Run tags.
        job_type: W&B job type (empty for none).
        log_model: Upload checkpoints as W&B artifacts.
        mode: ``offline``, ``online`` or ``disabled`` unless ``WANDB_MODE`` is set.

    Returns:
        The logger with its run started, or ``None`` (with a warning) when W&B cannot start.
    """
    mode = os.environ.get("WANDB_MODE") or mode
    id_file = Path(save_dir) / WANDB_ID_FILE
    try:
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        logger = WandbLogger(
            save_dir=save_dir,
            project=project,
            name=name,
            group=group or None,
            tags=list(tags),
            job_type=job_type or None,
            log_model=log_model,
            id=run_id,
            resume="allow",
            mode=mode,
        )
        logger.experiment  # noqa: B018 - start the run now so that a failure is caught here
    except Exception as err:  # W&B must never stop training; anything it raises is logged
        log.warning("W&B logging disabled: %s: %s", type(err).__name__, err)
        return None
    _write_run_id(id_file, run_id)
    return logger


@rank_zero_only
def _write_run_id(id_file: Path, run_id: str) -> None:
    if not id_file.is_file():
        with atomic_path(id_file) as tmp:
            tmp.write_text(run_id + "\n")
