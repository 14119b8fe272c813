"""Result status of a T2* fit or region: ``ok`` or the reason why no value is given."""

from __future__ import annotations

from enum import Enum

__all__ = ["Status", "status_code"]


class Status(str, Enum):
    """Why a T2* value is (or is not) given; the ``value`` is what the CSV ``status`` column holds.

    Every result that is not ``OK`` carries NaN in place of numbers, never a made-up value.
    """

    OK = "ok"
    EMPTY_MASK = "empty_mask"
    TOO_FEW_PIXELS = "too_few_pixels"
    FIT_FAILED = "fit_failed"
    OUT_OF_RANGE = "out_of_range"
    NO_REFERENCE_POINT = "no_reference_point"


_STATUSES: tuple[Status, ...] = tuple(Status)


def status_code(status: Status) -> int:
    """Return the ``uint8`` code of ``status`` used in status maps (``Status.OK`` is 0)."""
    return _STATUSES.index(status)
