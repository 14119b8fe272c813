"""The one inference path: checkpoint -> module and data settings -> datamodule -> predictions.

``cmrseg-train`` stores the run's model and data config in every checkpoint
(:class:`StoreRunConfig`), so ``cmrseg-eval``, ``cmrseg-predict`` and the benchmarks rebuild the
network and its preprocessing from the checkpoint alone (:func:`load_module_from_checkpoint`),
and a checkpoint cannot be paired with the wrong architecture or preprocessing by mistake. The
stored keys are checked against the code that builds them: a setting that no longer exists is
refused by name, with the way to convert the checkpoint.

Evaluation and prediction are per slice (one sample per slice, echoes as channels, fused by the
module's ``echo_fusion``), as the datamodule serves every split but ``train``.

Input that does not depend on one acquisition: the checkpoint also stores the training data's
echo times and pixel spacing (``acquisition``: medians over the training slices). A file with
other echo times (another count, other times) is given to the network with each pixel's decay
resampled to the training echo times (log-linear; :mod:`cmrseg.data.resample`), and refused
with what the model needs where its echoes cannot reach them; a slice of another pixel spacing is
resampled to the training spacing and its class probabilities back (bilinear, as nnU-Net does);
any matrix is padded to the network's size divisor and cropped back. Checkpoints written before
this was stored read files as before (echo indices, no resampling). The step outputs
``{"labels": uint8 [B, H, W], "slice_index": int64 [B]}`` of the module are put in slice order
by :func:`slice_labels` (used by :func:`predict_slices` and the T2* callback); with
``seg_uncertainty`` on, the steps add ``"seg_uncertainty": float32 [B]`` (the disagreement of
four rotated passes about the myocardium), which :func:`predict_slices` returns per slice.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.errors import InstantiationException
from lightning import Callback, LightningModule, Trainer
from omegaconf import DictConfig, OmegaConf

from cmrseg.core.errors import InputError
from cmrseg.data.datamodule import EchoStackDataModule
from cmrseg.data.dataset import resolve_echoes
from cmrseg.modules.transfer import load_checkpoint

__all__ = [
    "ENSEMBLE_KEY",
    "INFERENCE_SETTINGS",
    "RUN_CONFIG_KEY",
    "TRAIN_COHORT_KEY",
    "StoreRunConfig",
    "checkpoint_train_cohort",
    "ensemble_checkpoint",
    "inference_datamodule",
    "inference_overrides",
    "load_module_from_checkpoint",
    "method_name",
    "predict_slices",
    "predict_stack",
    "slice_labels",
    "slice_uncertainty",
]

log = logging.getLogger(__name__)

RUN_CONFIG_KEY = "cmrseg_config"
# {"file", "fingerprint"} of the data a checkpoint was trained on (external evaluations differ)
TRAIN_COHORT_KEY = "cmrseg_train_cohort"
# the members of an ensemble checkpoint (cmrseg-ensemble): file names and training runs
ENSEMBLE_KEY = "cmrseg_ensemble"
# module settings that only training reads: the members of an ensemble may differ in them
_TRAINING_ONLY = (
    "optimizer",
    "scheduler",
    "scheduler_interval",
    "loss",
    "init_from",
    "init_patterns",
    "freeze_patterns",
    "train_patch_size",
)
# data settings that decide how a file is read into the network (the others pick subjects or
# feed the loader: the members of an ensemble may differ in them, e.g. in the fold)
_DATA_READING = ("input_mode", "echoes", "target", "normalization", "te_ms")
# the method names of the networks in run records and reports (a classical module has its own)
_NET_METHODS = {"UNet": "unet", "MartiniUNet": "martini_unet", "MonaiUNet": "monai_unet"}
# module and datamodule arguments added after checkpoints were first written, with the behaviour
# they had then
_ADDED_MODULE_ARGS = {
    "cmrseg.modules.SegmentationModule": {
        "test_time_augmentation": "none",
        "seg_uncertainty": "none",
        "myocardium_decision": "argmax",
    }
}
_ADDED_DATA_ARGS = {"sharing_strategy": None, "te_ms": None, "test_subjects": "split"}
# module arguments that cmrseg-eval and cmrseg-predict may change (conf/eval.yaml, predict.yaml)
INFERENCE_SETTINGS = (
    "echo_fusion",
    "test_time_augmentation",
    "seg_uncertainty",
    "myocardium_decision",
)


def inference_overrides(cfg: DictConfig) -> dict[str, Any]:
    """The inference settings of an eval or predict config (``None``: the checkpoint's value)."""
    return {key: cfg.get(key) for key in INFERENCE_SETTINGS}


class StoreRunConfig(Callback):
    """Write ``{"model": ..., "data": ..., "acquisition": ...}`` into every checkpoint.

    ``model`` and ``data`` are the run's config nodes (resolved, plain containers);
    ``acquisition`` holds ``te_ms`` (the training echoes' median echo times, ms) and
    ``pixel_spacing_mm`` (median row and column spacing) over the training slices, when the
    trainer's datamodule is an :class:`EchoStackDataModule`.

    The training file's name and fingerprint go in too (:data:`TRAIN_COHORT_KEY`, with the
    run's seed and held-out fold), so that an evaluation on another file is recorded as
    external and the models of a multirun's folds stay apart.

    Args:
        config: The run's composed config; its ``model`` and ``data`` nodes are stored.
    """

    def __init__(self, config: DictConfig) -> None:
        self.config = {
            key: OmegaConf.to_container(config[key], resolve=True) for key in ("model", "data")
        }
        self.seed = config.get("seed")
        self._acquisition: dict[str, list[float]] | None = None

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Add the run config (and the training acquisition and cohort) to the checkpoint dict."""
        datamodule = getattr(trainer, "datamodule", None)
        if self._acquisition is None and isinstance(datamodule, EchoStackDataModule):
            info = datamodule.info
            train = datamodule.split_indices("train")
            echoes = list(resolve_echoes(datamodule.echoes, info))
            self._acquisition = {
                "te_ms": np.median(info.te_ms[np.ix_(train, echoes)], axis=0).tolist(),
                "pixel_spacing_mm": np.median(info.pixel_spacing_mm[train], axis=0).tolist(),
            }
        stored = dict(self.config)
        if self._acquisition is not None:
            stored["acquisition"] = self._acquisition
        checkpoint[RUN_CONFIG_KEY] = stored
        if isinstance(datamodule, EchoStackDataModule) and datamodule.path is not None:
            split = datamodule.split
            checkpoint[TRAIN_COHORT_KEY] = {
                "file": split.source,
                "fingerprint": split.fingerprint,
                "seed": self.seed,
                "fold": split.fold,
            }


def checkpoint_train_cohort(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The training run of a checkpoint: ``{"file", "fingerprint", "seed", "fold"}``.

    ``None`` when not stored; older checkpoints lack ``seed`` and ``fold``.
    """
    cohort = load_checkpoint(path).get(TRAIN_COHORT_KEY)
    return dict(cohort) if isinstance(cohort, Mapping) else None


def method_name(module: LightningModule) -> str:
    """The method a module runs, as run records and reports name it.

    A classical segmenter's ``method`` (``gac``, ``region_growing``), else the network's:
    ``unet``, ``martini_unet``, ``monai_unet`` (another network: its class name in lower case);
    an ensemble is its first member's with ``_ensemble`` (``unet_ensemble``).
    """
    method = module.hparams.get("method")
    if isinstance(method, str):
        return method
    net = getattr(module, "net", None)
    members = getattr(net, "nets", None)
    named = members[0] if members is not None else net
    name = type(named).__name__ if named is not None else type(module).__name__
    method = _NET_METHODS.get(name, name.lower())
    return method if members is None else f"{method}_ensemble"


def _load_run_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A ``cmrseg-train`` checkpoint (:func:`load_checkpoint`) with its run config and weights.

    Raises:
        InputError: Unreadable, or not written by ``cmrseg-train``.
    """
    ckpt = load_checkpoint(path)
    if RUN_CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise InputError(f"{path}: not a cmrseg-train checkpoint (no stored run config)")
    return ckpt


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    """The dotted key of the first difference between two nested configs."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}")
    return where.lstrip(".") or "(the whole value)"


def ensemble_checkpoint(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any]:
    """One checkpoint whose network averages the class probabilities of the checkpoints' networks.

    The members must be ``cmrseg-train`` checkpoints of networks that read and label data alike:
    the same module settings apart from those only training reads (:data:`_TRAINING_ONLY`), the
    same network inputs and classes, the same data settings that read a file
    (:data:`_DATA_READING`) and the same stored acquisition; they may differ in training (seed,
    fold, epochs, even the training file). The result loads like any checkpoint
    (:func:`load_module_from_checkpoint`), its network a :class:`~cmrseg.models.ProbabilityMean`;
    it keeps the members' file names and training runs under :data:`ENSEMBLE_KEY`, and their
    training run (:data:`TRAIN_COHORT_KEY`) where they share one file (seed and fold where they
    share those too).

    Args:
        paths: Two or more checkpoint files.

    Returns:
        The checkpoint to save with ``torch.save``.

    Raises:
        InputError: Fewer than two files, a file that is not a network's ``cmrseg-train``
            checkpoint (or is an ensemble already), or members that differ (the first
            differing setting is named).
    """
    if len(paths) < 2:
        raise InputError(f"an ensemble needs two or more checkpoints, got {len(paths)}")
    ckpts = [_load_run_checkpoint(path) for path in paths]
    for path, ckpt in zip(paths, ckpts, strict=True):
        if ENSEMBLE_KEY in ckpt:
            raise InputError(f"{path}: an ensemble already; give its members instead")
        if "net" not in ckpt[RUN_CONFIG_KEY]["model"]:
            raise InputError(f"{path}: not a network's checkpoint; only networks make an ensemble")

    def compared(ckpt: Mapping[str, Any]) -> dict[str, Any]:
        stored = ckpt[RUN_CONFIG_KEY]
        model = {k: v for k, v in stored["model"].items() if k not in (*_TRAINING_ONLY, "net")}
        net = stored["model"]["net"]
        return {
            "model": model,
            "net": {k: net.get(k) for k in ("in_channels", "num_classes", "myocardium_classes")},
            "data": {k: stored["data"].get(k) for k in _DATA_READING},
            "acquisition": stored.get("acquisition"),
        }

    first = compared(ckpts[0])
    for path, ckpt in zip(paths[1:], ckpts[1:], strict=True):
        other = compared(ckpt)
        if other != first:
            key = _first_difference(first, other)
            raise InputError(
                f"{path}: {key} differs from {paths[0]}; an ensemble's members must read "
                "and label the data alike"
            )
    state: dict[str, torch.Tensor] = {}
    for i, ckpt in enumerate(ckpts):
        for key, value in ckpt["state_dict"].items():
            if key.startswith("net."):
                state[f"net.nets.{i}.{key[4:]}"] = value
            elif i == 0:
                state[key] = value
    stored = ckpts[0][RUN_CONFIG_KEY]
    nets = [ckpt[RUN_CONFIG_KEY]["model"]["net"] for ckpt in ckpts]
    ensemble: dict[str, Any] = {
        RUN_CONFIG_KEY: {
            **stored,
            "model": {
                **stored["model"],
                "net": {"_target_": "cmrseg.models.ProbabilityMean", "nets": nets},
            },
        },
        "state_dict": state,
        ENSEMBLE_KEY: [
            {"file": Path(path).name, "train_cohort": ckpt.get(TRAIN_COHORT_KEY)}
            for path, ckpt in zip(paths, ckpts, strict=True)
        ],
    }
    cohorts = [ckpt.get(TRAIN_COHORT_KEY) for ckpt in ckpts]
    shared = all(isinstance(c, Mapping) for c in cohorts) and (
        len({c.get("fingerprint") for c in cohorts}) == 1
    )
    if shared:
        ensemble[TRAIN_COHORT_KEY] = {
            **cohorts[0],
            **{
                key: cohorts[0].get(key) if len({c.get(key) for c in cohorts}) == 1 else None
                for key in ("seed", "fold")
            },
        }
    return ensemble


def _check_stored(node: Any, keys: tuple[str, ...], path: str | os.PathLike[str]) -> None:
    """Refuse stored settings that the current code does not take (or lacks), by name.

    Every mapping with a ``_target_`` is checked against the signature of its target.
    """
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check_stored(item, (*keys, str(i)), path)
        return
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        _check_stored(value, (*keys, key), path)
    target = node.get("_target_")
    if target is None:
        return
    where = ".".join(keys)
    convert = (
        f"to convert the checkpoint, edit ckpt[{RUN_CONFIG_KEY!r}]"
        + "".join(f"[{k!r}]" for k in keys)
        + " (torch.load(..., weights_only=True), then torch.save), or train it again"
    )
    try:
        params = inspect.signature(hydra.utils.get_object(target)).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        raise InputError(
            f"{path}: stored {where}._target_ {target} no longer exists; {convert}"
        ) from None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in node if not str(k).startswith("_") and k not in params]
    if unknown:
        raise InputError(
            f"{path}: stored setting {where}.{unknown[0]} is not an argument of {target} any "
            f"more (removed or renamed); {convert}"
        )
    if not node.get("_partial_", False):
        required = (
            name
            for name, p in params.items()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
        missing = [name for name in required if name not in node]
        if missing:
            raise InputError(
                f"{path}: stored {where} lacks {missing[0]}, which {target} now needs; {convert}"
            )


def load_module_from_checkpoint(
    path: str | os.PathLike[str], model_overrides: Mapping[str, Any]
) -> tuple[LightningModule, DictConfig]:
    """Rebuild the trained module of a ``cmrseg-train`` checkpoint with its weights.

    Args:
        path: The ``.ckpt`` file.
        model_overrides: Module arguments to change (e.g. ``{"echo_fusion": "first"}``);
            ``None`` values are ignored, and so (with a log line) are arguments the stored
            module does not take (e.g. ``seg_uncertainty`` of a classical method).
            Pretrained-weight copying (``init_from``) is off.

    Returns:
        The module with the checkpoint's weights (eval mode), and the data config of the
        training run (augmentation removed). With a stored ``acquisition`` the data config's
        ``te_ms`` are the training echo times and the module's ``input_spacing_mm`` the
        training pixel spacing (see the module docstring).

    Raises:
        InputError: Missing or unreadable file, not a cmrseg checkpoint, a stored setting that
            no longer exists (or a new one without a value for old checkpoints), or weights
            that do not fit the stored network.
    """
    ckpt = _load_run_checkpoint(path)
    stored = ckpt[RUN_CONFIG_KEY]
    added = _ADDED_MODULE_ARGS.get(stored["model"].get("_target_"), {})
    model = {**added, **stored["model"]}
    if "init_from" in model:  # a network: no copying of pretrained weights at inference
        model["init_from"] = None
    model |= _applicable(model.get("_target_"), model_overrides)
    data = {**_ADDED_DATA_ARGS, **stored["data"], "augmentation": None}
    acquisition = stored.get("acquisition")
    if acquisition is not None:
        data["te_ms"] = [float(t) for t in acquisition["te_ms"]]
    _check_stored(model, ("model",), path)
    _check_stored(data, ("data",), path)
    model_cfg = OmegaConf.create(model)
    try:
        module = hydra.utils.instantiate(model_cfg)
    except InstantiationException as err:
        raise InputError(f"{path}: the stored model does not build: {err.__cause__}") from None
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise InputError(
            f"{path}: weights do not fit the stored model {_built(model_cfg)}: "
            f"{' '.join(first[:2])}"
        ) from None
    if acquisition is not None and hasattr(module, "input_spacing_mm"):
        module.input_spacing_mm = tuple(float(v) for v in acquisition["pixel_spacing_mm"])
    log.info("Loaded %s (%s)", path, _built(model_cfg))
    return module.eval(), OmegaConf.create(data)


def _applicable(target: str | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The set overrides that the module ``target`` takes; the others are logged and dropped."""
    chosen = {k: v for k, v in overrides.items() if v is not None}
    try:
        params = inspect.signature(hydra.utils.get_object(str(target))).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return chosen  # refused by name in _check_stored
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return chosen
    skipped = [k for k in chosen if k not in params]
    for key in skipped:
        log.info("%s does not take %s; %s=%s ignored", target, key, key, chosen[key])
    return {k: v for k, v in chosen.items() if k not in skipped}


def _built(model_cfg: DictConfig) -> str:
    """What a stored model config builds: its network's class, or the module's."""
    return model_cfg.net._target_ if "net" in model_cfg else model_cfg._target_


def inference_datamodule(
    data_cfg: DictConfig,
    overrides: Mapping[str, Any] | None = None,
    *,
    predict_path: str | os.PathLike[str] | None = None,
) -> EchoStackDataModule:
    """The datamodule of a checkpoint's data settings, for evaluation or prediction.

    Args:
        data_cfg: The stored data config (from :func:`load_module_from_checkpoint`).
        overrides: Data settings to change (e.g. ``path``, ``batch_size``); ``None`` values
            keep the stored ones.
        predict_path: Predict on every slice of this file (labels optional) instead of
            evaluating the splits of ``path``.
    """
    settings = OmegaConf.to_container(data_cfg, resolve=True)
    settings |= {k: v for k, v in (overrides or {}).items() if v is not None}
    if predict_path is not None:
        settings |= {"path": None, "split_file": None, "predict_path": str(predict_path)}
    target = hydra.utils.get_class(settings.pop("_target_"))
    if not issubclass(target, EchoStackDataModule):
        raise InputError(f"data._target_: {target.__name__} is not an EchoStackDataModule")
    return target(**{k: v for k, v in settings.items() if not str(k).startswith("_")})


def slice_labels(outputs: Iterable[Mapping[str, torch.Tensor]]) -> dict[int, np.ndarray]:
    """Labels uint8 ``[H, W]`` by slice index from step outputs ``{"labels", "slice_index"}``.

    A slice seen twice (DDP pads its last batches with repeats) keeps its first labels.
    """
    out: dict[int, np.ndarray] = {}
    for batch in outputs:
        labels = batch["labels"].cpu().numpy().astype(np.uint8)
        for i, slice_labels_ in zip(batch["slice_index"].tolist(), labels, strict=True):
            out.setdefault(int(i), slice_labels_)
    return out


def slice_uncertainty(outputs: Iterable[Mapping[str, torch.Tensor]]) -> dict[int, float]:
    """Segmentation uncertainty by slice index from step outputs that carry ``seg_uncertainty``.

    Batches without it (``seg_uncertainty: none``) add nothing; a slice seen twice keeps its
    first value, as in :func:`slice_labels`.
    """
    out: dict[int, float] = {}
    for batch in outputs:
        if "seg_uncertainty" in batch:
            values = batch["seg_uncertainty"].float().cpu().tolist()
            for i, value in zip(batch["slice_index"].tolist(), values, strict=True):
                out.setdefault(int(i), value)
    return out


def predict_stack(
    module: LightningModule, datamodule: EchoStackDataModule, trainer: Trainer | None = None
) -> np.ndarray:
    """Segment every slice of the datamodule's predict file: ``labels_pred`` uint8 ``[N, H, W]``.

    :func:`predict_slices` without the segmentation uncertainty.
    """
    return predict_slices(module, datamodule, trainer)[0]


def predict_slices(
    module: LightningModule, datamodule: EchoStackDataModule, trainer: Trainer | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Segment every slice of the datamodule's predict file.

    Args:
        module: A module whose ``predict_step`` returns ``{"labels", "slice_index"}`` and,
            optionally, ``"seg_uncertainty"`` (``SegmentationModule(seg_uncertainty="rot90")``).
        datamodule: The data (:func:`inference_datamodule` with ``predict_path``).
        trainer: Runs the prediction (device, precision); ``None``: one device, no logger.

    Returns:
        ``labels_pred`` uint8 ``[N, H, W]`` and the segmentation uncertainty float32 ``[N]``
        (the rotations' myocardium disagreement; NaN where the module does not measure it), in
        slice order.

    Raises:
        InputError: The trainer runs more than one process, or the file's slices give another
            number of echo channels than the network takes (a checkpoint without stored echo
            times, on a file with other echoes).
    """
    datamodule.setup("predict")
    net_channels = getattr(module, "in_channels", None)
    data_channels = datamodule.dataset("predict").in_channels
    if net_channels not in (None, 1, data_channels):
        raise InputError(
            f"{datamodule.predict_info.path}: the model takes {net_channels} echoes as channels "
            f"(echo times {datamodule.te_ms or 'not stored in its checkpoint'}), "
            f"the file gives {data_channels}"
        )
    if trainer is None:
        trainer = Trainer(
            devices=1, logger=False, enable_checkpointing=False, enable_model_summary=False
        )
    if trainer.world_size != 1:
        raise InputError("prediction runs in one process; use trainer=default or trainer=gpu")
    outputs = trainer.predict(module, datamodule=datamodule)
    labels = slice_labels(outputs)
    n_slices = datamodule.predict_info.n_slices
    if sorted(labels) != list(range(n_slices)):
        raise RuntimeError(f"prediction covers slices {sorted(labels)}, expected {n_slices}")
    uncertainty = np.full(n_slices, np.nan, np.float32)
    for i, value in slice_uncertainty(outputs).items():
        uncertainty[i] = value
    return np.stack([labels[i] for i in range(n_slices)]), uncertainty
