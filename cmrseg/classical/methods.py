"""The classical segmenters by name, their parameter types, and one ``segment`` for all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from cmrseg.classical import gac, region_growing
from cmrseg.classical.base import SegmentationResult

__all__ = ["METHODS", "Method", "make_params", "segment"]


@dataclass(frozen=True)
class Method:
    """One classical segmenter.

    Attributes:
        name: Its name in configs (``gac``, ``region_growing``).
        params_type: Frozen dataclass of its parameters.
        segment: ``segment(images [E, H, W], te_ms [E], pixel_spacing_mm [2], params)``.
    """

    name: str
    params_type: type
    segment: Callable[[np.ndarray, np.ndarray, np.ndarray, Any], SegmentationResult]


METHODS: dict[str, Method] = {
    "gac": Method("gac", gac.GACParams, gac.segment),
    "region_growing": Method(
        "region_growing", region_growing.RegionGrowingParams, region_growing.segment
    ),
}


def _method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name]


def make_params(method: str, values: Mapping[str, Any]) -> Any:
    """Build a method's parameters from a mapping (e.g. the ``params`` node of its config).

    Raises:
        ValueError: Unknown method, a missing or unknown key (named), or an invalid value.
    """
    params_type = _method(method).params_type
    names = {f.name for f in fields(params_type)}
    missing, unknown = sorted(names - set(values)), sorted(set(values) - names)
    if missing:
        raise ValueError(f"{method} parameters missing: {', '.join(missing)}")
    if unknown:
        raise ValueError(f"{method} parameters unknown: {', '.join(unknown)}")
    return params_type(**dict(values))


def segment(
    images: np.ndarray, te_ms: np.ndarray, pixel_spacing_mm: np.ndarray, params: Any
) -> SegmentationResult:
    """Segment one slice with the method whose parameters ``params`` are.

    Args:
        images: Magnitude ``[E, H, W]``.
        te_ms: Echo times ``[E]`` in ms.
        pixel_spacing_mm: (row, column) spacing ``[2]`` in mm.
        params: A method's parameters (:class:`~cmrseg.classical.gac.GACParams`...).

    Raises:
        ValueError: ``params`` is no method's parameters, or the arrays' shapes do not fit.
    """
    for method in METHODS.values():
        if isinstance(params, method.params_type):
            return method.segment(images, te_ms, pixel_spacing_mm, params)
    raise ValueError(f"params must be one of the methods' parameters, got {type(params).__name__}")
