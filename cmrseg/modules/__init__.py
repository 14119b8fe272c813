"""LightningModules: loss, optimizer, scheduler and metrics around a plain network."""

from cmrseg.modules.losses import DiceCELoss, SoftDiceLoss
from cmrseg.modules.segmentation import EchoFusion, SegmentationModule
from cmrseg.modules.transfer import (
    TransferReport,
    copy_matching_weights,
    load_checkpoint,
    load_net_state_dict,
)

__all__ = [
    "DiceCELoss",
    "EchoFusion",
    "SegmentationModule",
    "SoftDiceLoss",
    "TransferReport",
    "copy_matching_weights",
    "load_checkpoint",
    "load_net_state_dict",
]
