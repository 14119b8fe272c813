"""Per-sample overlap metrics (functional form and torchmetrics wrappers)."""

from cmrseg.metrics.functional import (
    OverlapScore,
    hausdorff_distance_95,
    mean_sd,
    per_sample_confusion,
    scores_from_confusion,
)
from cmrseg.metrics.overlap import PerSampleHausdorff95, PerSampleOverlap, overlap_metrics

__all__ = [
    "OverlapScore",
    "PerSampleHausdorff95",
    "PerSampleOverlap",
    "hausdorff_distance_95",
    "mean_sd",
    "overlap_metrics",
    "per_sample_confusion",
    "scores_from_confusion",
]
