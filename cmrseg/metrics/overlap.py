"""torchmetrics wrappers of :mod:`cmrseg.metrics.functional`, safe under DDP.

States are per-sample lists reduced with ``"cat"``; ``compute`` drops repeated sample ids (the
padding of a distributed sampler) before averaging, so one process and several give the same
result. Each metric returns a dict, which a ``MetricCollection`` flattens: ``overlap_metrics(
"val/")`` computes ``val/jaccard``, ``val/jaccard_sd``, ..., ``val/hd95``, ``val/hd95_sd`` and
``val/hd95_n_undefined``.
"""

from __future__ import annotations

from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities import dim_zero_cat

from cmrseg.metrics.functional import (
    OVERLAP_SCORES,
    OverlapScore,
    _hd95_compute,
    _hd95_update,
    _overlap_compute,
    _overlap_update,
)

__all__ = ["PerSampleHausdorff95", "PerSampleOverlap", "overlap_metrics"]


class PerSampleOverlap(Metric):
    """One overlap score per sample (slice image), reported as mean and SD.

    Args:
        score: ``jaccard``, ``dice``, ``sensitivity``, ``specificity``, ``ppv`` or ``npv``.

    Update with binary masks ``preds``, ``target`` ``[B, H, W]`` (bool or 0/1 integers) and
    unique integer ``sample_id`` ``[B]``. ``compute`` returns ``{score: mean, score_sd: SD}``
    (float64); see :mod:`cmrseg.metrics.functional` for undefined samples.

    Example:
        >>> import torch
        >>> metric = PerSampleOverlap("dice")
        >>> metric.update(torch.ones(2, 4, 4, dtype=torch.bool),
        ...               torch.ones(2, 4, 4, dtype=torch.bool), torch.tensor([0, 1]))
        >>> {k: round(float(v), 3) for k, v in metric.compute().items()}
        {'dice': 1.0, 'dice_sd': 0.0}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, score: OverlapScore, **kwargs) -> None:
        super().__init__(**kwargs)
        if score not in OVERLAP_SCORES:
            raise ValueError(f"score must be one of {OVERLAP_SCORES}, got {score!r}")
        self.score: OverlapScore = score
        self.add_state("confusion", default=[], dist_reduce_fx="cat")
        self.add_state("sample_id", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor, sample_id: Tensor) -> None:
        """Add a batch: masks ``[B, H, W]`` and ids ``[B]``."""
        confusion, sample_id = _overlap_update(preds, target, sample_id)
        self.confusion.append(confusion)
        self.sample_id.append(sample_id)

    def compute(self) -> dict[str, Tensor]:
        """Mean and SD of the score over unique samples."""
        return _overlap_compute(
            dim_zero_cat(self.confusion), dim_zero_cat(self.sample_id), self.score
        )


class PerSampleHausdorff95(Metric):
    """Symmetric 95th-percentile Hausdorff distance per sample (mm), reported as mean and SD.

    Update with binary masks ``preds``, ``target`` ``[B, H, W]``, unique integer ``sample_id``
    ``[B]`` and ``pixel_spacing_mm`` ``[B, 2]`` (row, column). ``compute`` returns ``{hd95,
    hd95_sd, hd95_n_undefined}``: samples where either mask is empty are undefined, left out
    of mean and SD, counted and logged. Distances are computed on the CPU with scipy.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("hd95_mm", default=[], dist_reduce_fx="cat")
        self.add_state("sample_id", default=[], dist_reduce_fx="cat")

    def update(
        self, preds: Tensor, target: Tensor, sample_id: Tensor, pixel_spacing_mm: Tensor
    ) -> None:
        """Add a batch: masks ``[B, H, W]``, ids ``[B]`` and spacing ``[B, 2]`` in mm."""
        hd95_mm, sample_id = _hd95_update(preds, target, sample_id, pixel_spacing_mm)
        self.hd95_mm.append(hd95_mm)
        self.sample_id.append(sample_id)

    def compute(self) -> dict[str, Tensor]:
        """Mean, SD and number of undefined samples over unique samples."""
        return _hd95_compute(dim_zero_cat(self.hd95_mm), dim_zero_cat(self.sample_id))


def overlap_metrics(prefix: str | None = None) -> MetricCollection:
    """The evaluation metrics of Table 1 plus Dice and HD95, one collection to clone per stage.

    Update with keywords so that each metric receives what it takes::

        metrics.update(preds_myo, target_myo, sample_id=ids, pixel_spacing_mm=spacing_mm)

    and log the flattened dict at epoch end (the values are dicts, so log the computed result,
    not the metric objects)::

        self.log_dict(metrics.compute()); metrics.reset()

    Args:
        prefix: Key prefix, e.g. ``"val/"``.

    Returns:
        A collection whose ``compute`` gives ``{prefix}jaccard``, ``{prefix}jaccard_sd``, ...,
        ``{prefix}npv_sd``, ``{prefix}hd95``, ``{prefix}hd95_sd``, ``{prefix}hd95_n_undefined``.
    """
    metrics: dict[str, Metric] = {score: PerSampleOverlap(score) for score in OVERLAP_SCORES}
    metrics["hd95"] = PerSampleHausdorff95()
    return MetricCollection(metrics, prefix=prefix)
