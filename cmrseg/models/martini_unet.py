"""Baseline U-Net of Martini et al. 2022 that segments the myocardium directly into AHA segments.

Reference: N. Martini et al., "Fully Automated Regional Analysis of Myocardial T2* Values for
Iron Quantification Using Deep Learning", Electronics 11(17):2749, 2022,
doi:10.3390/electronics11172749.

What the publication states (abstract): a CNN with U-Net architecture segments the multi-echo
T2*-weighted images (10 echoes, three short-axis slices per patient, 210 patients with iron
overload) into the 16 sectors of the AHA model. The layer-level details were not available to us,
so this implementation assumes:

1. Input: all echoes of a slice stacked as channels, ``[B, E, H, W]`` (``in_channels = E``;
   8 echoes in the Bakhshali et al. data, 10 in Martini's). Intensity normalization is done by
   the data transforms, not here.
2. Body: the classic U-Net of Ronneberger et al. 2015 as in :class:`cmrseg.models.UNet` (two
   3x3 conv + norm + ReLU per level, 2x2 max-pooling, 2x2 transposed convolutions, concatenated
   skips, bottleneck dropout), with depth, widths and norm from the config.
3. Output: ``num_classes`` logits where class 0 is background (the blood pool included) and
   class ``k`` (1..16) is AHA segment ``k``; a basal slice can only hold 1-6, a mid slice 7-12
   and an apical slice 13-16, but the slice level is not given to the network.
4. Every non-background class is myocardium, so :func:`cmrseg.models.logits_to_labels` merges
   the sectors into one myocardium and fills its hole to get the blood pool.

Sector training targets (labels 0..16 from the myocardium mask, the RV insertion point and the
slice level) are made by the data pipeline, not by this module.
"""

from __future__ import annotations

from collections.abc import Sequence

from cmrseg.models.unet import UNet
from cmrseg.models.unet_blocks import NormName

__all__ = ["MartiniUNet"]


class MartiniUNet(UNet):
    """U-Net from all echoes to background + AHA myocardial segments (Martini et al. 2022).

    Args:
        in_channels: Number of echoes ``E`` stacked as channels.
        num_classes: Background + sectors (17 for the 16-segment AHA model).
        n_stages: Resolution levels, the bottleneck included; ``H`` and ``W`` must be multiples
            of ``2**(n_stages - 1)``.
        features_per_stage: Channels per encoder stage (int: the same for all).
        n_conv_per_stage: Conv blocks per encoder stage.
        n_conv_per_stage_decoder: Conv blocks per decoder stage (``n_stages - 1`` of them).
        norm: ``"batch"`` or ``"instance"``.
        bottleneck_dropout: Dropout probability at the bottleneck.

    Attributes:
        myocardium_classes: ``(1, ..., num_classes - 1)``: every sector is myocardium.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        n_stages: int,
        features_per_stage: int | Sequence[int],
        n_conv_per_stage: int | Sequence[int],
        n_conv_per_stage_decoder: int | Sequence[int],
        norm: NormName,
        bottleneck_dropout: float,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            num_classes=num_classes,
            myocardium_classes=range(1, num_classes),
            n_stages=n_stages,
            features_per_stage=features_per_stage,
            n_conv_per_stage=n_conv_per_stage,
            n_conv_per_stage_decoder=n_conv_per_stage_decoder,
            norm=norm,
            bottleneck_dropout=bottleneck_dropout,
        )
