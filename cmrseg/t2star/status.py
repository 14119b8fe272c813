"""Result status of a T2* fit or region: ``ok`` or the reason why no value is given."""

from __future__ import annotations

from enum import Enum

__all__ = ["Status", "status_code"]


class Status(str, Enum):
    """Why a T2* value is (or is not) given; the ``value`` is what the CSV ``status`` column holds.

    Every result that is not ``OK`` carries NaN in place of numbers, never a made-up value.
    ``OUT_OF_RANGE``: T2* at or above the upper fit bound (or a curve that does not decay);
    ``BELOW_RANGE``: T2* at or below the lower fit bound, i.e. shorter than can be measured with
    these echo times (a region with it still grades ``severe``); ``UNSUPPORTED_FIELD``: a field
    strength without published cut-offs; ``NO_NOISE_ESTIMATE``: the signal model needs a noise
    level that the slice does not give and no fallback model is configured.
    """

    OK = "ok"
    EMPTY_MASK = "empty_mask"
    TOO_FEW_PIXELS = "too_few_pixels"
    FIT_FAILED = "fit_failed"
    OUT_OF_RANGE = "out_of_range"
    NO_REFERENCE_POINT = "no_reference_point"
    BELOW_RANGE = "below_range"
    UNSUPPORTED_FIELD = "unsupported_field"
    NO_NOISE_ESTIMATE = "no_noise_estimate"


_STATUSES: tuple[Status, ...] = tuple(Status)


def status_code(status: Status) -> int:
    """Return the ``uint8`` code of ``status`` used in status maps (``Status.OK`` is 0)."""
    return _STATUSES.index(status)
