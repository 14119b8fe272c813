"""Settings of T2* quantification; their values live in ``conf/t2star/default.yaml``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from cmrseg.t2star.fitting import FitOptions

__all__ = ["DEFAULT_CONFIG_PATH", "RegionOptions", "T2StarConfig", "load_t2star_config"]

#: The project's documented defaults (the Hydra config group ``t2star``).
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "conf" / "t2star" / "default.yaml"

Estimator = Literal["mean_signal", "median_pixel"]
WallRoi = Literal["full", "core"]


@dataclass(frozen=True)
class RegionOptions:
    """How a region's T2* is estimated.

    Attributes:
        estimator: ``mean_signal`` (fit the region's mean signal per echo: the paper's method)
            or ``median_pixel`` (median of the pixel-wise fits in the region).
        wall: ``full`` (the whole myocardium of the region) or ``core`` (eroded away from its
            borders along the phase-encoding axis, see :func:`~cmrseg.t2star.wall_core_mask`).
        core_erosion_mm: Erosion of ``core`` in mm from each border, converted per slice to
            pixels along the phase-encoding axis (:func:`~cmrseg.t2star.core_erosion_px`).
        min_pixels: Regions with fewer pixels are ``too_few_pixels``.
        rv_insertion_fallback: When ``rv_insertion`` is NaN: ``standard_orientation`` estimates
            it (:func:`~cmrseg.t2star.estimate_rv_insertion`, logged), ``none`` reports
            ``no_reference_point``.
        standard_rv_angle_deg: Direction of the insertion point assumed by that estimate.
        septal_width_deg: Angular width of the full-thickness mid-septal ROI.
    """

    estimator: Estimator
    wall: WallRoi
    core_erosion_mm: float
    min_pixels: int
    rv_insertion_fallback: Literal["standard_orientation", "none"]
    standard_rv_angle_deg: float
    septal_width_deg: float

    def __post_init__(self) -> None:
        choices = {
            "estimator": ("mean_signal", "median_pixel"),
            "wall": ("full", "core"),
            "rv_insertion_fallback": ("standard_orientation", "none"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                value = getattr(self, name)
                raise ValueError(f"region.{name} must be one of {allowed}, got {value!r}")
        if self.min_pixels < 1:
            raise ValueError(f"region.min_pixels must be >= 1, got {self.min_pixels}")
        if not (math.isfinite(self.core_erosion_mm) and self.core_erosion_mm >= 0):
            raise ValueError(
                f"region.core_erosion_mm must be finite and >= 0, got {self.core_erosion_mm}"
            )


@dataclass(frozen=True)
class T2StarConfig:
    """Everything that decides a T2* result.

    Attributes:
        fit: Signal model, bounds and acceptance of one curve fit.
        noise_sigma: Noise SD per coil channel (image units) or ``None`` to estimate it per
            slice from the background (models ``truncated`` and ``noise_corrected``).
        region: Region estimator and ROI.
    """

    fit: FitOptions
    noise_sigma: float | None
    region: RegionOptions

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> T2StarConfig:
        """Build from a nested mapping (a loaded YAML file or an OmegaConf container)."""
        expected = {f.name for f in fields(cls)}
        unknown = set(values) - expected - {"_target_"}
        missing = expected - set(values)
        if unknown or missing:
            raise ValueError(
                f"t2star config: unknown keys {sorted(unknown)}, missing {sorted(missing)}"
            )
        fit = dict(values["fit"])
        fit["t2star_bounds_ms"] = tuple(fit["t2star_bounds_ms"])
        region = dict(values["region"])
        if "core_erosion_px" in region:
            raise ValueError(
                "region.core_erosion_px was replaced by region.core_erosion_mm "
                "(a distance in mm: 3.0 is 2 px at 1.4 mm pixels)"
            )
        sigma = values["noise_sigma"]
        return cls(
            fit=FitOptions(**fit),
            noise_sigma=None if sigma is None else float(sigma),
            region=RegionOptions(**region),
        )


def load_t2star_config(
    path: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None
) -> T2StarConfig:
    """Read a T2* config YAML (default: :data:`DEFAULT_CONFIG_PATH`).

    Args:
        path: YAML file with the keys of :class:`T2StarConfig`.
        overrides: Dotted keys replacing values, e.g. ``{"fit.model": "mono"}``.

    Returns:
        The validated config.
    """
    import yaml

    source = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    with open(source, encoding="utf-8") as handle:
        values = yaml.safe_load(handle)
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        if leaf not in node:
            raise ValueError(f"t2star config: unknown key {dotted!r}")
        node[leaf] = value
    return T2StarConfig.from_dict(values)
