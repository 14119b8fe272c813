"""cmrseg: cardiac MRI myocardial segmentation and T2* iron-overload assessment."""

__version__ = "0.1.0"

__all__ = ["__version__"]
