"""Plain PyTorch segmentation networks and the scores-to-labels step they share."""

from cmrseg.models.ensemble import ProbabilityMean
from cmrseg.models.martini_unet import MartiniUNet
from cmrseg.models.monai_unet import MonaiUNet
from cmrseg.models.postprocess import logits_to_labels
from cmrseg.models.unet import UNet

__all__ = ["MartiniUNet", "MonaiUNet", "ProbabilityMean", "UNet", "logits_to_labels"]
