"""The paper's 2D U-Net (Bakhshali et al. 2025, after Ronneberger et al. 2015).

Per level two (3x3 conv + norm + ReLU) blocks, 2x2 max-pooling down, 2x2 transposed convolution
up, concatenated skips, dropout at the bottleneck and a 1x1 convolution to class logits. Widths
and depth come from the config (``conf/model/``); nothing is defaulted here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cmrseg.models.unet_blocks import NormName, UNetDecoder, UNetEncoder, initialize_he

__all__ = ["UNet"]


class UNet(nn.Module):
    """The paper's U-Net: image channels in, per-class logits out.

    With ``num_classes=3`` the classes follow the echo-stack label coding (0 background,
    1 LV blood pool, 2 LV myocardium) and ``myocardium_classes=[2]``.

    Args:
        in_channels: Input channels ``C`` (echoes fed to the network).
        num_classes: Output classes, background included.
        myocardium_classes: Output classes that are myocardium (used by ``logits_to_labels``).
        n_stages: Resolution levels, the bottleneck included; ``H`` and ``W`` must be multiples
            of ``2**(n_stages - 1)``.
        features_per_stage: Channels per encoder stage (int: the same for all), e.g.
            ``[32, 64, 128, 256, 512, 512]``.
        n_conv_per_stage: Conv blocks per encoder stage (2 in the paper).
        n_conv_per_stage_decoder: Conv blocks per decoder stage (``n_stages - 1`` of them).
        norm: ``"batch"`` (paper) or ``"instance"``.
        bottleneck_dropout: Dropout probability at the bottleneck (0.5 in the paper).

    Example:
        >>> net = UNet(in_channels=1, num_classes=3, myocardium_classes=[2], n_stages=3,
        ...            features_per_stage=[8, 16, 32], n_conv_per_stage=2,
        ...            n_conv_per_stage_decoder=2, norm="batch", bottleneck_dropout=0.5)
        >>> _ = net.apply(net.initialize)
        >>> net(torch.zeros(2, 1, 32, 48)).shape
        torch.Size([2, 3, 32, 48])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        myocardium_classes: Sequence[int],
        n_stages: int,
        features_per_stage: int | Sequence[int],
        n_conv_per_stage: int | Sequence[int],
        n_conv_per_stage_decoder: int | Sequence[int],
        norm: NormName,
        bottleneck_dropout: float,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        myo = tuple(int(c) for c in myocardium_classes)
        if not myo or any(not 1 <= c < num_classes for c in myo):
            raise ValueError(
                f"myocardium_classes must be non-empty classes in 1..{num_classes - 1}, got {myo}"
            )
        self.in_channels = in_channels
        self.myocardium_classes = myo
        self.encoder = UNetEncoder(
            in_channels=in_channels,
            n_stages=n_stages,
            features_per_stage=features_per_stage,
            n_conv_per_stage=n_conv_per_stage,
            norm=norm,
            bottleneck_dropout=bottleneck_dropout,
        )
        self.decoder = UNetDecoder(
            self.encoder, num_classes=num_classes, n_conv_per_stage=n_conv_per_stage_decoder
        )

    @property
    def size_divisor(self) -> int:
        """Input height and width must be multiples of this (``2**(n_stages - 1)``)."""
        return 2 ** (self.encoder.n_stages - 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Segment a batch.

        Args:
            images: float32 ``[B, C, H, W]``; ``H`` and ``W`` multiples of :attr:`size_divisor`.

        Returns:
            Class logits ``[B, num_classes, H, W]``.

        Raises:
            ValueError: On a wrong number of dimensions or channels, or an indivisible size.
        """
        if images.ndim != 4 or images.shape[1] != self.encoder.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects images [B, {self.encoder.in_channels}, H, W], "
                f"got shape {tuple(images.shape)}"
            )
        h, w = images.shape[-2:]
        d = self.size_divisor
        if h % d or w % d:
            raise ValueError(
                f"{type(self).__name__} with {self.encoder.n_stages} stages needs H and W "
                f"divisible by {d}, got {h}x{w}; pad or crop the images (e.g. to "
                f"{-(-h // d) * d}x{-(-w // d) * d})"
            )
        return self.decoder(self.encoder(images))

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """He init for this network; the caller applies it: ``net.apply(net.initialize)``."""
        initialize_he(module)
