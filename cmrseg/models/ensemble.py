"""An ensemble of segmentation networks: the mean of their class probabilities."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ProbabilityMean"]


class ProbabilityMean(nn.Module):
    """Several networks of one task as one: the mean of their softmax probabilities.

    The output is the logarithm of that mean, so that a softmax of it (what the segmentation
    module applies) is the mean itself, and an arg-max of it the arg-max of the mean. Built by
    ``cmrseg-ensemble`` from trained checkpoints (:func:`cmrseg.inference.ensemble_checkpoint`).

    Args:
        nets: Two or more networks with the same input channels, myocardium classes and
            number of output classes.

    Raises:
        ValueError: Fewer than two networks, or networks that differ in input channels or
            myocardium classes (another number of output classes fails at the first pass).
    """

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(nets) < 2:
            raise ValueError(f"an ensemble needs two or more networks, got {len(nets)}")
        first = nets[0]
        for key in ("in_channels", "myocardium_classes"):
            values = [str(getattr(net, key, None)) for net in nets]
            if len(set(values)) != 1:
                raise ValueError(f"the ensemble's networks differ in {key}: {values}")
        self.nets = nn.ModuleList(nets)
        self.in_channels = int(first.in_channels)
        self.myocardium_classes = tuple(int(c) for c in first.myocardium_classes)
        self.size_divisor = math.lcm(*(int(getattr(net, "size_divisor", 1)) for net in nets))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Log of the mean class probability ``[B, K, H, W]`` of images ``[B, C, H, W]``."""
        mean = torch.stack([net(images).softmax(dim=1) for net in self.nets]).mean(dim=0)
        return mean.clamp_min(torch.finfo(mean.dtype).tiny).log()
