"""Building blocks of the 2D U-Nets: a plain convolutional encoder and a decoder that mirrors it.

Layout after nnU-Net's ``PlainConvEncoder``/``UNetDecoder``: the decoder reads channel counts and
the norm layer back from the encoder, so nothing is given twice. Stage arguments may be an int,
which is spread over all stages, or one value per stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import nn

__all__ = ["NormName", "UNetDecoder", "UNetEncoder", "initialize_he", "stage_values"]

NormName = Literal["batch", "instance"]


def stage_values(value: int | Sequence[int], n_stages: int, name: str) -> list[int]:
    """Spread an int over ``n_stages`` stages or check that a sequence has one value per stage.

    Args:
        value: One value for every stage, or one per stage.
        n_stages: Number of stages.
        name: Argument name, used in the error message.

    Returns:
        One positive int per stage.

    Raises:
        ValueError: If the length does not match or a value is not positive.
    """
    values = [int(value)] * n_stages if isinstance(value, int) else [int(v) for v in value]
    if len(values) != n_stages:
        raise ValueError(f"{name} needs {n_stages} values (one per stage), got {len(values)}")
    if any(v < 1 for v in values):
        raise ValueError(f"{name} must be positive, got {values}")
    return values


def _norm_layer(norm: NormName, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"norm must be one of {get_args(NormName)}, got {norm!r}")


def _conv_stack(in_channels: int, out_channels: int, n_convs: int, norm: NormName) -> nn.Sequential:
    """``n_convs`` times (3x3 conv, padding 1, no bias) + norm + ReLU."""
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [
            nn.Conv2d(
                in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=False
            ),
            _norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class UNetEncoder(nn.Module):
    """Contracting path: per stage a conv stack, stages joined by 2x2 max-pooling.

    Args:
        in_channels: Input channels ``C`` (e.g. echoes fed to the network).
        n_stages: Number of resolution levels, the bottleneck included.
        features_per_stage: Output channels of each stage (int: the same for all).
        n_conv_per_stage: Convolutions per stage (int: the same for all).
        norm: Normalization after each convolution; ``"batch"`` converts to ``SyncBatchNorm``.
        bottleneck_dropout: Dropout probability applied to the bottleneck output (0 for none).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        n_stages: int,
        features_per_stage: int | Sequence[int],
        n_conv_per_stage: int | Sequence[int],
        norm: NormName,
        bottleneck_dropout: float,
    ) -> None:
        super().__init__()
        if n_stages < 1:
            raise ValueError(f"n_stages must be >= 1, got {n_stages}")
        if not 0.0 <= bottleneck_dropout < 1.0:
            raise ValueError(f"bottleneck_dropout must be in [0, 1), got {bottleneck_dropout}")
        features = stage_values(features_per_stage, n_stages, "features_per_stage")
        n_convs = stage_values(n_conv_per_stage, n_stages, "n_conv_per_stage")
        if norm not in get_args(NormName):
            raise ValueError(f"norm must be one of {get_args(NormName)}, got {norm!r}")
        self.in_channels = in_channels
        self.output_channels = features
        self.norm: NormName = norm
        stages = []
        for s in range(n_stages):
            convs = _conv_stack(
                in_channels if s == 0 else features[s - 1], features[s], n_convs[s], norm
            )
            stages.append(convs if s == 0 else nn.Sequential(nn.MaxPool2d(2), convs))
        self.stages = nn.ModuleList(stages)
        self.bottleneck_dropout = nn.Dropout(bottleneck_dropout)

    @property
    def n_stages(self) -> int:
        """Number of resolution levels, the bottleneck included."""
        return len(self.stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encode an image batch.

        Args:
            x: Images ``[B, C, H, W]``.

        Returns:
            The output of every stage, full resolution first; the last is the (dropped-out)
            bottleneck ``[B, F_last, H / 2**(n_stages-1), W / 2**(n_stages-1)]``.
        """
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        skips[-1] = self.bottleneck_dropout(skips[-1])
        return skips


class UNetDecoder(nn.Module):
    """Expanding path: 2x2 transposed-conv upsampling, skip concatenation, conv stack, 1x1 head.

    Channels and norm are read from ``encoder``; decoder stage ``i`` outputs the channels of
    encoder stage ``n_stages - 2 - i``.

    Args:
        encoder: The encoder whose skips this decoder consumes.
        num_classes: Output channels (class logits).
        n_conv_per_stage: Convolutions per decoder stage (``n_stages - 1`` stages).
    """

    def __init__(
        self, encoder: UNetEncoder, *, num_classes: int, n_conv_per_stage: int | Sequence[int]
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        channels = encoder.output_channels
        n_up = encoder.n_stages - 1
        n_convs = stage_values(n_conv_per_stage, n_up, "n_conv_per_stage (decoder)")
        self.upsample = nn.ModuleList()
        self.stages = nn.ModuleList()
        for i, s in enumerate(range(n_up, 0, -1)):
            self.upsample.append(nn.ConvTranspose2d(channels[s], channels[s - 1], 2, stride=2))
            self.stages.append(
                _conv_stack(2 * channels[s - 1], channels[s - 1], n_convs[i], encoder.norm)
            )
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        """Decode the encoder's stage outputs into logits ``[B, num_classes, H, W]``."""
        x = skips[-1]
        for i, (up, stage) in enumerate(zip(self.upsample, self.stages, strict=True)):
            x = stage(torch.cat((skips[-(i + 2)], up(x)), dim=1))
        return self.head(x)


def initialize_he(module: nn.Module) -> None:
    """He (Kaiming) normal init for ReLU networks; apply with ``net.apply(initialize_he)``.

    Convolution and transposed-convolution weights get ``kaiming_normal_`` (fan-in, ReLU gain)
    and zero bias; norm layers keep their defaults (weight 1, bias 0).
    """
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
