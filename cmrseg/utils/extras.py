"""Run-wide set-up and tear-down shared by the Hydra entry points."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from cmrseg.core.errors import InputError
from cmrseg.utils.run_record import (
    begin_run_record,
    end_run_record,
    read_run_record,
)

__all__ = ["extras", "metric_value", "task_wrapper"]

log = logging.getLogger(__name__)


def extras(cfg: DictConfig) -> None:
    """Apply ``cfg.extras``: warnings filter, thread count, matmul precision, config print."""
    options = cfg.get("extras")
    if not options:
        return
    if options.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if options.get("torch_num_threads"):
        torch.set_num_threads(int(options.torch_num_threads))
    if options.get("matmul_precision"):
        torch.set_float32_matmul_precision(options.matmul_precision)
    if options.get("print_config"):
        _log_config(cfg)


@rank_zero_only
def _log_config(cfg: DictConfig) -> None:
    log.info("Config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))


def task_wrapper(
    prog: str, run_task: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a task function: refused input exits 2 with one line; W&B is always closed.

    Hydra reports exceptions of the task with a traceback, so :class:`InputError` is caught
    here and turned into ``prog: error: <message>`` on stderr and ``SystemExit(2)``. The
    ``finally`` closes a W&B run so that the next job of a multirun starts clean.

    Args:
        prog: The command's name for error lines.
        run_task: ``train`` or ``eval`` for a task returning ``(metrics, objects)``: keep
            ``run.json`` in ``cfg.paths.output_dir`` (:mod:`cmrseg.utils.run_record`:
            ``running``, then ``finished`` with the metrics, or ``failed``), and with
            ``cfg.skip_finished`` return the recorded metrics of a folder whose run finished
            with the same overrides instead of running it again (an interrupted multirun
            resumes at its first unfinished job); ``None``: no record.
    """

    def decorator(task: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(task)
        def wrapped(cfg: DictConfig) -> Any:
            if not run_task:
                return _run(task, cfg, prog)
            run_dir, overrides = cfg.paths.output_dir, _job_overrides()
            if cfg.get("skip_finished"):
                try:
                    record = read_run_record(run_dir)
                except ValueError:
                    record = {}
                if record.get("status") == "finished" and record.get("overrides") == overrides:
                    log.info("%s: finished before (run.json); not run again", run_dir)
                    return dict(record.get("metrics") or {}), {}
            begin_run_record(run_dir, run_task, cfg.get("seed"), overrides)
            try:
                metrics, objects = _run(task, cfg, prog)
            except BaseException as err:
                # a refused input exits 2 (SystemExit) from its InputError: record that one
                cause = err.__cause__ if isinstance(err, SystemExit) and err.__cause__ else err
                end_run_record(run_dir, cause)
                raise
            end_run_record(run_dir, None, {k: float(v) for k, v in metrics.items()})
            return metrics, objects

        return wrapped

    return decorator


def _run(task: Callable[..., Any], cfg: DictConfig, prog: str) -> Any:
    """Run the task: refused input is one line and exit 2; close a W&B run in any case."""
    try:
        return task(cfg)
    except InputError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    finally:
        if "wandb" in sys.modules:
            import wandb

            if wandb.run is not None:
                wandb.finish()


def _job_overrides() -> list[str]:
    """The command-line overrides of this Hydra job (empty outside a Hydra run)."""
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def metric_value(metric_dict: dict[str, Any], name: str | None) -> float | None:
    """Return ``metric_dict[name]`` as a float for a sweeper (``None`` when ``name`` is unset).

    Raises:
        KeyError: ``name`` is not among the logged metrics (the message lists them).
    """
    if not name:
        return None
    if name not in metric_dict:
        raise KeyError(f"optimized_metric {name!r} was not logged; logged: {sorted(metric_dict)}")
    return float(metric_dict[name])
