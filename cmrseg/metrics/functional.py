"""Per-sample overlap and surface-distance metrics of binary masks, reported as mean and SD.

Every metric is computed per sample (one short-axis slice image) and then summarised as mean
and standard deviation over samples, as in Table 1 of Bakhshali et al. 2025. Masks are binary:
the caller maps classes to myocardium (``labels == 2``) before calling.

Per-sample scores from the confusion counts TP, FP, FN, TN of one image:

=============  ======================  =========================================
score          formula                 undefined (NaN) when
=============  ======================  =========================================
jaccard        TP / (TP + FP + FN)     prediction and target both empty
dice           2TP / (2TP + FP + FN)   prediction and target both empty
sensitivity    TP / (TP + FN)          target empty
specificity    TN / (TN + FP)          target fills the whole image
ppv            TP / (TP + FP)          prediction empty
npv            TN / (TN + FN)          prediction fills the whole image
hd95           see below, in mm        prediction or target empty
=============  ======================  =========================================

Convention for undefined scores: a ratio with a zero denominator (its numerator is then zero
too) is NaN for that sample; NaN samples are left out of the mean and SD and counted
(:func:`mean_sd` returns the count). No value is invented: an empty prediction is not rewarded
with PPV 1, it is caught by sensitivity 0 and counted as undefined PPV and HD95.

The SD is the sample standard deviation (``ddof=1``), NaN with fewer than two defined samples.

HD95 (symmetric 95th-percentile Hausdorff distance, in mm): boundary pixels of a mask are its
pixels with a 4-neighbour outside the mask (pixels on the image edge count as boundary). For
each boundary pixel of one mask take the Euclidean distance, with the sample's anisotropic
(row, column) pixel spacing, to the nearest boundary pixel of the other mask; HD95 is the larger
of the two directed 95th percentiles (linear interpolation, ``numpy.percentile``), as in MONAI's
``compute_hausdorff_distance(percentile=95)``.

Duplicated samples: a distributed sampler pads the evaluation set by repeating samples, so the
state carries a unique integer id per sample and :func:`first_occurrence` keeps the first
occurrence of each id before averaging, which makes results independent of the world size.
"""

from __future__ import annotations

import logging
from typing import Literal, get_args

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "OverlapScore",
    "first_occurrence",
    "hausdorff_distance_95",
    "mean_sd",
    "per_sample_confusion",
    "scores_from_confusion",
]

logger = logging.getLogger(__name__)

OverlapScore = Literal["jaccard", "dice", "sensitivity", "specificity", "ppv", "npv"]
OVERLAP_SCORES: tuple[str, ...] = get_args(OverlapScore)

# 4-connected erosion within each slice of a [B, H, W] stack, never across slices.
_IN_PLANE_CROSS = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_CROSS[1] = ndimage.generate_binary_structure(2, 1)


def _check_masks(preds: torch.Tensor, target: torch.Tensor) -> None:
    if preds.shape != target.shape or preds.ndim != 3:
        raise ValueError(
            "preds and target must be binary masks of one shape [B, H, W], got "
            f"{tuple(preds.shape)} and {tuple(target.shape)}"
        )
    for name, mask in (("preds", preds), ("target", target)):
        if mask.dtype == torch.bool:
            continue
        if mask.is_floating_point() or mask.is_complex():
            raise ValueError(
                f"{name} must be a bool or integer mask (threshold or arg-max first), "
                f"got dtype {mask.dtype}"
            )
        if bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError(f"{name} must hold only 0 and 1 (map classes to myocardium first)")


def _check_sample_id(sample_id: torch.Tensor, batch_size: int) -> None:
    if not isinstance(sample_id, torch.Tensor) or sample_id.shape != (batch_size,):
        shape = tuple(sample_id.shape) if isinstance(sample_id, torch.Tensor) else type(sample_id)
        raise ValueError(f"sample_id must be a tensor [B] = [{batch_size}], got {shape}")
    if sample_id.is_floating_point() or sample_id.dtype == torch.bool:
        raise ValueError(f"sample_id must hold integers, got dtype {sample_id.dtype}")


def _check_pixel_spacing(pixel_spacing_mm: torch.Tensor | None, batch_size: int) -> None:
    if pixel_spacing_mm is None:
        raise ValueError("hd95 needs pixel_spacing_mm [B, 2] (row, column spacing in mm)")
    if pixel_spacing_mm.shape != (batch_size, 2):
        raise ValueError(
            f"pixel_spacing_mm must be [B, 2] = [{batch_size}, 2], "
            f"got {tuple(pixel_spacing_mm.shape)}"
        )
    if not bool((torch.isfinite(pixel_spacing_mm) & (pixel_spacing_mm > 0)).all()):
        raise ValueError("pixel_spacing_mm must be finite and positive")


def per_sample_confusion(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Confusion counts of each sample.

    Args:
        preds: Predicted binary masks ``[B, H, W]``, bool or integer 0/1.
        target: Reference binary masks ``[B, H, W]``, bool or integer 0/1.

    Returns:
        int64 ``[B, 4]`` with columns TP, FP, FN, TN (pixel counts).

    Raises:
        ValueError: On mismatched shapes, float masks or values other than 0 and 1.
    """
    _check_masks(preds, target)
    p = preds.bool().flatten(1)
    t = target.bool().flatten(1)
    tp = (p & t).sum(1)
    fp = (p & ~t).sum(1)
    fn = (~p & t).sum(1)
    tn = p.shape[1] - tp - fp - fn
    return torch.stack((tp, fp, fn, tn), dim=1).long()


def scores_from_confusion(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample overlap scores from confusion counts.

    Args:
        confusion: Counts ``[B, 4]`` (TP, FP, FN, TN) from :func:`per_sample_confusion`.

    Returns:
        float64 ``[B]`` per score name of :data:`OverlapScore`; NaN where undefined (see the
        module docstring).
    """
    tp, fp, fn, tn = confusion.double().unbind(dim=1)

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp(min=1), torch.nan)

    return {
        "jaccard": ratio(tp, tp + fp + fn),
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
    }


def _boundaries(masks: np.ndarray) -> np.ndarray:
    """Boundary pixels (a 4-neighbour outside the mask or the image) of masks ``[B, H, W]``."""
    return masks & ~ndimage.binary_erosion(masks, structure=_IN_PLANE_CROSS, border_value=0)


def _directed_distances_mm(
    from_boundary: np.ndarray, to_boundary: np.ndarray, spacing_mm: np.ndarray
) -> np.ndarray:
    """Distance (mm) from each ``from_boundary`` pixel to the nearest ``to_boundary`` pixel."""
    distance_mm = ndimage.distance_transform_edt(~to_boundary, sampling=spacing_mm)
    return distance_mm[from_boundary]


def hausdorff_distance_95(
    preds: torch.Tensor, target: torch.Tensor, pixel_spacing_mm: torch.Tensor
) -> torch.Tensor:
    """Symmetric 95th-percentile Hausdorff distance of each sample, in mm.

    Args:
        preds: Predicted binary masks ``[B, H, W]``, bool or integer 0/1.
        target: Reference binary masks ``[B, H, W]``, bool or integer 0/1.
        pixel_spacing_mm: (row, column) pixel spacing ``[B, 2]`` in mm.

    Returns:
        float64 ``[B]`` in mm on the device of ``preds``; NaN where either mask is empty.
        Computed on the CPU with scipy.

    Raises:
        ValueError: On bad masks or spacing.
    """
    _check_masks(preds, target)
    _check_pixel_spacing(pixel_spacing_mm, preds.shape[0])
    pred_edges = _boundaries(preds.bool().cpu().numpy())
    target_edges = _boundaries(target.bool().cpu().numpy())
    spacing_mm = pixel_spacing_mm.detach().double().cpu().numpy()
    hd95_mm = np.full(preds.shape[0], np.nan)
    for i, (pe, te) in enumerate(zip(pred_edges, target_edges, strict=True)):
        if not (pe.any() and te.any()):
            continue
        # Every boundary pixel lies in the union's bounding box, so the distance transform
        # on that crop is exact and much cheaper than on the whole image.
        rows, cols = np.nonzero(pe | te)
        crop = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        pe, te = pe[crop], te[crop]
        hd95_mm[i] = max(
            np.percentile(_directed_distances_mm(pe, te, spacing_mm[i]), 95),
            np.percentile(_directed_distances_mm(te, pe, spacing_mm[i]), 95),
        )
    return torch.from_numpy(hd95_mm).to(preds.device)


def first_occurrence(sample_id: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Keep the first occurrence of every sample id (undoes distributed-sampler padding).

    Args:
        sample_id: Integer ids ``[M]``, gathered in rank order.
        values: Per-sample values ``[M, ...]`` aligned with ``sample_id``.

    Returns:
        ``values`` of the first occurrence of each id ``[U, ...]``, in order of first
        occurrence. A repeated id whose values differ from its first occurrence (ids not unique
        per sample) is logged as a warning.
    """
    if sample_id.numel() == 0:
        return values[:0]
    unique_ids, inverse = torch.unique(sample_id, return_inverse=True)
    if unique_ids.numel() == sample_id.numel():
        return values
    position = torch.arange(sample_id.numel(), device=sample_id.device)
    first = torch.full_like(unique_ids, sample_id.numel()).scatter_reduce(
        0, inverse, position, reduce="amin"
    )
    reference = values[first[inverse]]
    same = reference == values
    if values.is_floating_point():
        same |= reference.isnan() & values.isnan()
    if not bool(same.all()):
        logger.warning(
            "sample ids repeat with different values: ids must be unique per sample; "
            "keeping the first occurrence"
        )
    return values[first.sort().values]


def mean_sd(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean and sample SD (``ddof=1``) over the defined (non-NaN) samples.

    Args:
        values: Per-sample values ``[U]``; NaN marks an undefined sample.

    Returns:
        ``(mean, sd, n_undefined)``: mean is NaN without defined samples, SD with fewer than two.
    """
    defined = values[~values.isnan()]
    mean = defined.mean() if defined.numel() else values.new_tensor(torch.nan)
    sd = defined.std(correction=1) if defined.numel() > 1 else values.new_tensor(torch.nan)
    return mean, sd, int(values.numel() - defined.numel())


def _log_undefined(name: str, n_undefined: int, n_samples: int) -> None:
    rank_zero = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    if n_undefined and (rank_zero or torch.distributed.get_rank() == 0):
        logger.warning(
            "%s undefined for %d of %d samples (left out of mean and SD)",
            name,
            n_undefined,
            n_samples,
        )


def _overlap_update(
    preds: torch.Tensor, target: torch.Tensor, sample_id: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a batch and return its confusion counts ``[B, 4]`` and ids ``[B]`` (int64)."""
    confusion = per_sample_confusion(preds, target)
    _check_sample_id(sample_id, preds.shape[0])
    return confusion, sample_id.long()


def _overlap_compute(
    confusion: torch.Tensor, sample_id: torch.Tensor, score: OverlapScore
) -> dict[str, torch.Tensor]:
    """``{score: mean, score_sd: SD}`` over unique samples from gathered states."""
    values = scores_from_confusion(first_occurrence(sample_id, confusion))[score]
    mean, sd, n_undefined = mean_sd(values)
    _log_undefined(score, n_undefined, values.numel())
    return {score: mean, f"{score}_sd": sd}


def _hd95_update(
    preds: torch.Tensor,
    target: torch.Tensor,
    sample_id: torch.Tensor,
    pixel_spacing_mm: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a batch and return its HD95 ``[B]`` (mm, NaN undefined) and ids ``[B]`` (int64)."""
    _check_pixel_spacing(pixel_spacing_mm, preds.shape[0])
    _check_sample_id(sample_id, preds.shape[0])
    return hausdorff_distance_95(preds, target, pixel_spacing_mm), sample_id.long()


def _hd95_compute(hd95_mm: torch.Tensor, sample_id: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{hd95, hd95_sd, hd95_n_undefined}`` over unique samples from gathered states."""
    values = first_occurrence(sample_id, hd95_mm)
    mean, sd, n_undefined = mean_sd(values)
    _log_undefined("hd95", n_undefined, values.numel())
    return {"hd95": mean, "hd95_sd": sd, "hd95_n_undefined": values.new_tensor(n_undefined)}
