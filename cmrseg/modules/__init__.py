"""LightningModules: training and evaluation of networks and of the classical segmenters."""

from cmrseg.modules.classical import ClassicalSegmentationModule, ClassicalSegmenter
from cmrseg.modules.losses import ChannelTargetLoss, DiceCELoss, SoftDiceLoss
from cmrseg.modules.segmentation import EchoFusion, SegmentationModule
from cmrseg.modules.transfer import (
    TransferReport,
    copy_matching_weights,
    load_checkpoint,
    load_net_state_dict,
)

__all__ = [
    "ChannelTargetLoss",
    "ClassicalSegmentationModule",
    "ClassicalSegmenter",
    "DiceCELoss",
    "EchoFusion",
    "SegmentationModule",
    "SoftDiceLoss",
    "TransferReport",
    "copy_matching_weights",
    "load_checkpoint",
    "load_net_state_dict",
]
