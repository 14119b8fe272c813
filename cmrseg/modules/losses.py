"""Segmentation losses: the paper's cross-entropy and a soft Dice + cross-entropy option."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

__all__ = ["DiceCELoss", "SoftDiceLoss"]


class SoftDiceLoss(nn.Module):
    """Batch soft Dice loss over the foreground classes (nnU-Net style, ``batch_dice``).

    ``1 - mean_k (2 sum(p_k y_k) + smooth) / (sum(p_k) + sum(y_k) + smooth)`` with softmax
    probabilities ``p`` and one-hot targets ``y``, sums over the batch and all pixels, mean over
    classes ``1..K-1`` (background excluded).

    Args:
        smooth: Added to numerator and denominator; keeps empty classes finite.
    """

    def __init__(self, smooth: float) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            logits: Class logits ``[B, K, H, W]``.
            target: Class indices int64 ``[B, H, W]``.

        Returns:
            Scalar loss.
        """
        probs = logits.float().softmax(dim=1)[:, 1:]
        onehot = (
            functional.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
        )
        dims = (0, 2, 3)
        intersection = (probs * onehot).sum(dims)
        denominator = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * intersection + self.smooth) / (denominator + self.smooth)
        return 1 - dice.mean()


class DiceCELoss(nn.Module):
    """Weighted sum ``ce_weight * CE + dice_weight * SoftDice``.

    Args:
        ce_weight: Weight of the cross-entropy term.
        dice_weight: Weight of the soft Dice term.
        smooth: See :class:`SoftDiceLoss`.
    """

    def __init__(self, ce_weight: float, dice_weight: float, smooth: float) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.ce = nn.CrossEntropyLoss()
        self.dice = SoftDiceLoss(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss from logits ``[B, K, H, W]`` and int64 targets ``[B, H, W]``."""
        return self.ce_weight * self.ce(logits, target) + self.dice_weight * self.dice(
            logits, target
        )


class ChannelTargetLoss(nn.Module):
    """Give a loss that wants targets ``[B, 1, H, W]`` (MONAI's) the class indices ``[B, H, W]``.

    Args:
        loss: The wrapped loss, called as ``loss(logits, target[:, None])``.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the wrapped loss from logits ``[B, K, H, W]`` and int64 targets ``[B, H, W]``."""
        return self.loss(logits, target.unsqueeze(1))
