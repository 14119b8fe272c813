"""T2* quantification of multi-echo GRE magnitude data (numpy, scipy, lmfit, skimage; no torch).

Signal models with the multi-coil noise floor, a vectorized map fitter and an lmfit reference,
myocardial regions (sectors, AHA segments, septal ROI, wall core), grading, the contract's
``t2star.csv`` and the agreement of T2* on predicted and reference masks. Settings come from
``conf/t2star/default.yaml`` (:func:`load_t2star_config`).
"""

from cmrseg.t2star.blur import (
    DEBLURRED_ROI_SUFFIX,
    cavity_ghost_ratio,
    deblurred_wall,
    phase_resolution,
)
from cmrseg.t2star.config import (
    DEFAULT_CONFIG_PATH,
    QcOptions,
    RegionOptions,
    T2StarConfig,
    load_t2star_config,
)
from cmrseg.t2star.fitting import (
    SIGNAL_MODELS,
    CurveFit,
    FitOptions,
    MapFit,
    fit_curve_lmfit,
    fit_curves,
    fit_loglinear,
    fit_map,
)
from cmrseg.t2star.grading import grade_t2star, grading_field_t, myocardial_iron_mg_per_g
from cmrseg.t2star.mask_agreement import (
    AGREEMENT_COLUMNS,
    SUMMARY_KEYS,
    ReferenceSlice,
    agreement_rows,
    agreement_summary,
    reference_slice,
)
from cmrseg.t2star.quantify import (
    REGIONS,
    PixelFits,
    RegionResult,
    SliceNoise,
    censored_median,
    floor_truncation,
    quantify_region,
    quantify_slice,
    slice_noise,
    slice_noise_sigma,
    t2star_map,
)
from cmrseg.t2star.regions import (
    OFF_CAVITY_ROI_SUFFIX,
    RvInsertionEstimate,
    core_erosion_px,
    estimate_rv_insertion_from_image,
    off_cavity_lines_mask,
    wall_core_mask,
)
from cmrseg.t2star.signal import (
    NoiseEstimate,
    NoiseEstimateError,
    estimate_noise,
    mono_exp,
    mono_exp_noise_corrected,
    mono_exp_offset,
    noise_floor_mean,
    truncation_mask,
)
from cmrseg.t2star.status import Status, status_code
from cmrseg.t2star.table import CSV_COLUMNS, quantify_stack, slice_rows, write_t2star_csv

__all__ = [
    "AGREEMENT_COLUMNS",
    "CSV_COLUMNS",
    "DEBLURRED_ROI_SUFFIX",
    "DEFAULT_CONFIG_PATH",
    "OFF_CAVITY_ROI_SUFFIX",
    "REGIONS",
    "SIGNAL_MODELS",
    "SUMMARY_KEYS",
    "CurveFit",
    "FitOptions",
    "MapFit",
    "NoiseEstimate",
    "NoiseEstimateError",
    "PixelFits",
    "QcOptions",
    "ReferenceSlice",
    "RegionOptions",
    "RegionResult",
    "RvInsertionEstimate",
    "SliceNoise",
    "Status",
    "T2StarConfig",
    "agreement_rows",
    "agreement_summary",
    "cavity_ghost_ratio",
    "censored_median",
    "core_erosion_px",
    "deblurred_wall",
    "estimate_noise",
    "estimate_rv_insertion_from_image",
    "fit_curve_lmfit",
    "fit_curves",
    "fit_loglinear",
    "fit_map",
    "floor_truncation",
    "grade_t2star",
    "grading_field_t",
    "load_t2star_config",
    "mono_exp",
    "mono_exp_noise_corrected",
    "mono_exp_offset",
    "myocardial_iron_mg_per_g",
    "noise_floor_mean",
    "off_cavity_lines_mask",
    "phase_resolution",
    "quantify_region",
    "quantify_slice",
    "quantify_stack",
    "reference_slice",
    "slice_noise",
    "slice_noise_sigma",
    "slice_rows",
    "status_code",
    "t2star_map",
    "truncation_mask",
    "wall_core_mask",
    "write_t2star_csv",
]
