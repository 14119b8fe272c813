"""Settings of T2* quantification; their values live in ``conf/t2star/default.yaml``.

The dataclasses below are the schema: :func:`load_t2star_config` merges a YAML file and dotted
overrides onto them with OmegaConf (:func:`cmrseg.conf.load_structured`), so an unknown, missing
or mistyped key is refused by name, and each class checks its own value ranges.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cmrseg.conf import CONF_DIR, load_structured
from cmrseg.t2star.fitting import FitOptions

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "QcOptions",
    "RegionOptions",
    "T2StarConfig",
    "load_t2star_config",
]

#: The project's documented defaults (the Hydra config group ``t2star``).
DEFAULT_CONFIG_PATH = CONF_DIR / "t2star" / "default.yaml"

#: Keys that no longer exist, with what replaced them.
_RETIRED = {
    "region.core_erosion_px": "replaced by region.core_erosion_mm "
    "(a distance in mm: 3.0 is 2 px at 1.4 mm pixels)",
}


@dataclass
class RegionOptions:
    """How a region's T2* is estimated.

    Attributes:
        estimator: ``mean_signal`` (fit the region's mean signal per echo: the paper's method)
            or ``median_pixel`` (median of the pixel-wise fits in the region).
        wall: ``full`` (the whole myocardium of the region) or ``core`` (eroded away from its
            borders along the phase-encoding axis, see :func:`~cmrseg.t2star.wall_core_mask`).
        core_erosion_mm: Erosion of ``core`` in mm from each border, converted per slice to
            pixels along the phase-encoding axis (:func:`~cmrseg.t2star.core_erosion_px`).
        global_lines: Phase-encoding lines the global region uses: ``all``, or ``off_cavity``
            (when the whole wall reads ``ok`` at or above ``floor_truncation_below_ms``, only
            the wall on lines that cross no LV blood pool pixel, whose motion ghosts lengthen
            the wall's T2*: :func:`~cmrseg.t2star.off_cavity_lines_mask`; the whole wall when
            the axis is unknown, fewer than ``global_lines_min_pixels`` remain or their row is
            not ``ok``). Sectors always use every line.
        global_lines_min_pixels: Fewest wall pixels ``off_cavity`` needs.
        min_pixels: Regions with fewer pixels are ``too_few_pixels``; ``median_pixel`` regions
            with fewer usable pixel fits (a value, or censored at a bound) are ``fit_failed``.
        min_usable_share: ``median_pixel`` regions where a smaller share of the pixels has a
            usable fit are ``fit_failed`` (their median would describe a minority).
        rv_insertion_fallback: When ``rv_insertion`` is NaN: ``image`` finds it from the RV
            blood pool beside the septum (:func:`~cmrseg.t2star.estimate_rv_insertion_from_image`;
            ``no_reference_point`` below ``rv_insertion_min_confidence``),
            ``standard_orientation`` assumes it at ``standard_rv_angle_deg``
            (:func:`~cmrseg.t2star.estimate_rv_insertion`), ``none`` reports
            ``no_reference_point``. The sector rows say which in ``qc_reasons``.
        rv_insertion_min_confidence: Least confidence of the image estimate.
        standard_rv_angle_deg: Direction of the insertion point assumed by
            ``standard_orientation``.
        septal_width_deg: Angular width of the full-thickness mid-septal ROI.
        floor_truncation_below_ms: ``median_pixel`` regions whose first estimate (the censored
            median, or the decay between the first two echoes when faster) is below this are
            refitted on their leading echoes above the wall's own late-echo floor
            (:func:`~cmrseg.t2star.floor_truncation`); 0 never.
        floor_after_t2star: Echoes later than ``TE1 + floor_after_t2star x T2*`` measure that
            floor (the myocardial signal there is below exp(-floor_after_t2star) of the first
            echo); at least two are needed, else no refit.
        floor_factor: Leading echoes whose median signal over the region exceeds this multiple
            of the floor are kept (at least two).
        floor_factor_two_echoes: When only two echoes are kept, the second must exceed this
            multiple of the floor (else the region is ``below_range``): a two-echo fit has
            nothing to test it against, and a second echo near the floor reads the floor as decay.
        cavity_blur_correction: A global row read off the cavity's lines (``global_lines:
            off_cavity``, a wall that is not short) becomes the geometric mean of that value and
            the whole core's, read on images corrected for the blood's blur along the
            phase-encoding axis (:func:`~cmrseg.t2star.deblurred_wall`), when the slice's
            ghosts allow it (``cavity_max_ghost_ratio``).
        cavity_max_ghost_ratio: The correction is used only when the ghost power on the
            cavity's lines is below this share of the wall's power there
            (:func:`~cmrseg.t2star.cavity_ghost_ratio`).
    """

    estimator: str
    wall: str
    core_erosion_mm: float
    global_lines: str
    global_lines_min_pixels: int
    min_pixels: int
    min_usable_share: float
    rv_insertion_fallback: str
    rv_insertion_min_confidence: float
    standard_rv_angle_deg: float
    septal_width_deg: float
    floor_truncation_below_ms: float
    floor_after_t2star: float
    floor_factor: float
    floor_factor_two_echoes: float
    cavity_blur_correction: bool
    cavity_max_ghost_ratio: float

    def __post_init__(self) -> None:
        choices = {
            "estimator": ("mean_signal", "median_pixel"),
            "wall": ("full", "core"),
            "global_lines": ("all", "off_cavity"),
            "rv_insertion_fallback": ("image", "standard_orientation", "none"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                value = getattr(self, name)
                raise ValueError(f"region.{name} must be one of {allowed}, got {value!r}")
        for name in ("min_pixels", "global_lines_min_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"region.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.min_usable_share <= 1:
            raise ValueError(
                f"region.min_usable_share must be in [0, 1], got {self.min_usable_share}"
            )
        for name in (
            "floor_truncation_below_ms",
            "floor_after_t2star",
            "floor_factor",
            "floor_factor_two_echoes",
            "cavity_max_ghost_ratio",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"region.{name} must be finite and >= 0, got {value}")
        if not (math.isfinite(self.core_erosion_mm) and self.core_erosion_mm >= 0):
            raise ValueError(
                f"region.core_erosion_mm must be finite and >= 0, got {self.core_erosion_mm}"
            )


@dataclass
class QcOptions:
    """When a row says ``qc=review`` (a person should look); the reasons go in ``qc_reasons``.

    Attributes:
        min_r2: Median R^2 of the region's fits below this.
        max_failed_share: Share of the region's pixels without a usable fit above this.
        max_censored_share: Share of the usable pixel fits censored at a bound above this.
        min_pixels: Fewer pixels in the region than this.
        max_ci_relative_width: Width of the 95% CI over the value above this.
        max_seg_uncertainty: Segmentation uncertainty of the slice (the share of myocardium
            pixels on which four rotated passes of the network disagree; given to
            :func:`~cmrseg.t2star.quantify_stack` by ``cmrseg-predict``) above this.
        min_fit_echoes: A value refitted on fewer leading echoes than this (the floor
            truncation of a short T2*) rests on the few echoes above the late-echo floor;
            0 = never a reason.
    """

    min_r2: float
    max_failed_share: float
    max_censored_share: float
    min_pixels: int
    max_ci_relative_width: float
    max_seg_uncertainty: float
    min_fit_echoes: int


@dataclass
class T2StarConfig:
    """Everything that decides a T2* result.

    Attributes:
        fit: Signal model, bounds and acceptance of one curve fit.
        noise_sigma: Noise SD per coil channel (image units) or ``None`` to estimate it per
            slice from the background (models ``truncated`` and ``noise_corrected``).
        noise_fallback_model: Model fitted when the noise cannot be estimated (no air, a
            zero-filled or masked background): ``mono_offset`` (its constant absorbs the floor),
            ``mono`` or ``none`` (no value: status ``no_noise_estimate``). Rows name the model
            in ``method`` and the reason in ``qc_reasons``.
        region: Region estimator and ROI.
        qc: Thresholds of the per-row quality flag.
    """

    fit: FitOptions
    noise_sigma: float | None
    noise_fallback_model: str
    region: RegionOptions
    qc: QcOptions

    def __post_init__(self) -> None:
        if self.noise_sigma is not None and self.noise_sigma < 0:
            raise ValueError(f"noise_sigma must be >= 0 or null, got {self.noise_sigma}")
        allowed = ("mono_offset", "mono", "none")
        if self.noise_fallback_model not in allowed:
            raise ValueError(
                f"noise_fallback_model must be one of {allowed}, got {self.noise_fallback_model!r}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> T2StarConfig:
        """Build from a nested mapping (e.g. the ``t2star`` group of a composed Hydra config).

        Raises:
            cmrseg.conf.ConfigError: A key is unknown, missing, mistyped or out of range.
        """
        return load_structured(cls, [values], name="t2star config", retired=_RETIRED)


def load_t2star_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> T2StarConfig:
    """Read a T2* config YAML (default: :data:`DEFAULT_CONFIG_PATH`).

    Args:
        path: YAML file with every key of :class:`T2StarConfig`.
        overrides: Dotted overrides, e.g. ``["fit.model=mono", "noise_sigma=null"]``.

    Returns:
        The validated config.

    Raises:
        cmrseg.conf.ConfigError: The file is unreadable, or a key is unknown, missing,
            mistyped or out of range (the message names the file and the key).
    """
    source = DEFAULT_CONFIG_PATH if path is None else path
    return load_structured(T2StarConfig, [source], overrides, retired=_RETIRED)
