"""Lightning callbacks: T2* agreement of predicted and reference masks during training."""

from cmrseg.callbacks.t2star import T2StarCallback

__all__ = ["T2StarCallback"]
