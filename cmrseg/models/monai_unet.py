"""MONAI's ``UNet`` behind cmrseg's network interface: the peer a user would pick instead.

MONAI is optional (``pip install monai`` or the ``monai`` extra); it is imported when the network
is built. ``conf/model/monai_unet.yaml`` trains it as a MONAI user would (Dice + cross-entropy,
Adam); ``benchmarks/bench_peer_monai.py`` compares it with the proposed U-Net.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class MonaiUNet(nn.Module):
    """``monai.networks.nets.UNet`` (residual units) with ``in_channels``, ``myocardium_classes``.

    Args:
        in_channels: Input channels ``C``.
        num_classes: Output classes, background included.
        myocardium_classes: Output classes that are myocardium.
        channels: Features per level, e.g. ``[16, 32, 64, 128, 256]``.
        strides: Down-sampling stride between levels (``len(channels) - 1`` of them).
        num_res_units: Residual units per level (0: plain convolutions).
        dropout: Dropout probability in every unit.

    Raises:
        ImportError: MONAI is not installed (the message says how to install it).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        myocardium_classes: Sequence[int],
        channels: Sequence[int],
        strides: Sequence[int],
        num_res_units: int,
        dropout: float,
    ) -> None:
        super().__init__()
        try:
            from monai.networks.nets import UNet
        except ImportError as err:
            raise ImportError(
                "model=monai_unet needs MONAI: pip install monai (or pip install -e '.[monai]')"
            ) from err
        self.in_channels = in_channels
        self.myocardium_classes = tuple(int(c) for c in myocardium_classes)
        self.size_divisor = math.prod(int(s) for s in strides)
        self.unet = UNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=num_classes,
            channels=tuple(channels),
            strides=tuple(strides),
            num_res_units=num_res_units,
            dropout=dropout,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K, H, W]`` of images ``[B, C, H, W]`` (sides multiples of the strides)."""
        return self.unet(images)
