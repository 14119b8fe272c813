"""The numpy-only core under every other layer: label coding, LV geometry, errors, atomic writes.

Nothing here imports torch, scipy or any other part of cmrseg (except this package itself).
"""

from cmrseg.core.atomic import atomic_dir, atomic_path, fsync_tree
from cmrseg.core.errors import InputError
from cmrseg.core.geometry import (
    N_SECTORS,
    aha_segment_map,
    estimate_rv_insertion,
    lv_centroid,
    sector_map,
    septal_roi_mask,
)
from cmrseg.core.labels import BACKGROUND, BLOOD_POOL, LABEL_VALUES, MYOCARDIUM

__all__ = [
    "BACKGROUND",
    "BLOOD_POOL",
    "LABEL_VALUES",
    "MYOCARDIUM",
    "N_SECTORS",
    "InputError",
    "aha_segment_map",
    "atomic_dir",
    "atomic_path",
    "estimate_rv_insertion",
    "fsync_tree",
    "lv_centroid",
    "sector_map",
    "septal_roi_mask",
]
