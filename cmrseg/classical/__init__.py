"""Classical (non-learned) LV segmenters: geodesic active contours and region growing.

Numpy, scipy and scikit-image only. Each method is ``segment(images [E, H, W], te_ms [E],
pixel_spacing_mm [2], params) -> SegmentationResult``; its parameters live in
``conf/model/<method>.yaml`` and :func:`calibrate` chooses them on labelled slices.
"""

from cmrseg.classical.base import SegmentationResult
from cmrseg.classical.calibrate import CalibrationResult, calibrate, myocardium_jaccard
from cmrseg.classical.gac import GACParams
from cmrseg.classical.methods import METHODS, Method, make_params, segment
from cmrseg.classical.region_growing import RegionGrowingParams

__all__ = [
    "METHODS",
    "CalibrationResult",
    "GACParams",
    "Method",
    "RegionGrowingParams",
    "SegmentationResult",
    "calibrate",
    "make_params",
    "myocardium_jaccard",
    "segment",
]
