"""From class scores to echo-stack labels, the same way for every network.

A network maps images ``[B, C, H, W]`` to per-class scores ``[B, K, H, W]`` (logits,
probabilities or one-hot; only the arg-max matters unless a threshold is given) and says which
of its ``K`` classes are myocardium. :func:`logits_to_labels` turns those scores into the
echo-stack label coding (:mod:`cmrseg.core.labels`: 0 background, 1 LV blood pool, 2 LV
myocardium):

1. arg-max over classes; myocardium = the pixels whose class is in ``myocardium_classes``
   (so 16 AHA sectors merge into one myocardium); or, given a ``myocardium_threshold``, the
   pixels whose summed probability over ``myocardium_classes`` reaches it (the scores must then
   be probabilities): a stricter threshold trades sensitivity for precision;
2. optionally keep only the largest 8-connected myocardium component (drops spurious islands);
3. blood pool = the holes of the myocardium (background 4-connected, not reaching the image
   border), i.e. ``binary_fill_holes(myocardium) & ~myocardium``; an open ring has no pool.

Steps 2-3 run on the CPU with scipy, one slice at a time (a few ms per 192 x 256 slice).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from cmrseg.core.labels import BLOOD_POOL, MYOCARDIUM

__all__ = ["logits_to_labels"]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    components, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if n <= 1:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def logits_to_labels(
    logits: torch.Tensor,
    myocardium_classes: Sequence[int],
    *,
    keep_largest_component: bool,
    myocardium_threshold: float | None = None,
) -> torch.Tensor:
    """Turn class scores into labels 0 background, 1 blood pool, 2 myocardium.

    Args:
        logits: Class scores ``[B, K, H, W]``; class probabilities when
            ``myocardium_threshold`` is given.
        myocardium_classes: Classes in ``0..K-1`` that are myocardium.
        keep_largest_component: Keep only the largest 8-connected myocardium component.
        myocardium_threshold: ``None``: the arg-max decides; else myocardium where the summed
            probability of ``myocardium_classes`` is at least this (in ``(0, 1)``).

    Returns:
        uint8 labels ``[B, H, W]`` on the device of ``logits``.

    Raises:
        ValueError: On a wrong shape, a class outside ``0..K-1`` or a threshold outside
            ``(0, 1)``.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be [B, K, H, W], got shape {tuple(logits.shape)}")
    n_classes = logits.shape[1]
    myo_classes = torch.as_tensor(list(myocardium_classes), dtype=torch.long, device=logits.device)
    if myo_classes.numel() == 0 or bool(((myo_classes < 0) | (myo_classes >= n_classes)).any()):
        raise ValueError(
            f"myocardium_classes must be non-empty classes in 0..{n_classes - 1}, "
            f"got {list(myocardium_classes)}"
        )
    if myocardium_threshold is None:
        myocardium = torch.isin(logits.argmax(dim=1), myo_classes).cpu().numpy()
    elif 0 < myocardium_threshold < 1:
        myo_probability = logits.index_select(1, myo_classes).sum(dim=1)
        myocardium = (myo_probability >= myocardium_threshold).cpu().numpy()
    else:
        raise ValueError(f"myocardium_threshold must be in (0, 1), got {myocardium_threshold}")
    labels = np.zeros(myocardium.shape, dtype=np.uint8)
    for i, myo in enumerate(myocardium):
        if keep_largest_component:
            myo = _largest_component(myo)
        labels[i][ndimage.binary_fill_holes(myo)] = BLOOD_POOL
        labels[i][myo] = MYOCARDIUM
    return torch.from_numpy(labels).to(logits.device)
