"""Plain PyTorch segmentation networks and the predict interface shared by all segmenters."""

from cmrseg.models.martini_unet import MartiniUNet
from cmrseg.models.monai_unet import MonaiUNet
from cmrseg.models.predict import Segmenter, logits_to_labels, predict_labels
from cmrseg.models.unet import UNet

__all__ = ["MartiniUNet", "MonaiUNet", "Segmenter", "UNet", "logits_to_labels", "predict_labels"]
