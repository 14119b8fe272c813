"""Clinical grading of myocardial T2* by field strength, and the iron concentration it implies.

Cut-offs (lower T2* bound of each grade, ms):

* 1.5 T: normal >= 20, mild >= 14, moderate >= 10, severe < 10 (contract section 2; Anderson
  et al., Eur Heart J 2001; Kirk et al., Circulation 2009).
* 3 T: normal >= 12.6, moderate-or-mild >= 5.8, severe < 5.8: the 3 T column of the
  classification of myocardial iron overload in PMC8528353, Table 7
  (https://pmc.ncbi.nlm.nih.gov/articles/PMC8528353/table/t19: R2* <= 79 s^-1 normal,
  > 172 s^-1 severe, the 3 T values of the 1.5 T cut-offs 50 and 100 s^-1). That table does not
  split mild from moderate; the split here is the 1.5 T one (14 ms = 71.4 s^-1) carried to 3 T by
  the line through the table's two pairs, ``R2*(3 T) = 1.86 R2*(1.5 T) - 14 s^-1``:
  119 s^-1 = 8.4 ms.

Fields within 0.15 T of 1.5 T or 3 T (scanners report e.g. 1.494 or 2.89) use those cut-offs;
an unknown field (NaN) is graded at 1.5 T and said so by the caller; any other field has no
published cut-offs and is not graded.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "GRADE_LOWER_BOUNDS_3T_MS",
    "GRADE_LOWER_BOUNDS_MS",
    "grade_t2star",
    "grading_field_t",
    "myocardial_iron_mg_per_g",
]

#: Lower T2* bound (ms, inclusive) of each grade at 1.5 T, from normal to severe.
GRADE_LOWER_BOUNDS_MS: tuple[tuple[str, float], ...] = (
    ("normal", 20.0),
    ("mild", 14.0),
    ("moderate", 10.0),
    ("severe", 0.0),
)
#: The same at 3 T.
GRADE_LOWER_BOUNDS_3T_MS: tuple[tuple[str, float], ...] = (
    ("normal", 12.6),
    ("mild", 8.4),
    ("moderate", 5.8),
    ("severe", 0.0),
)
_CUTOFFS = {1.5: GRADE_LOWER_BOUNDS_MS, 3.0: GRADE_LOWER_BOUNDS_3T_MS}
_FIELD_TOLERANCE_T = 0.15


def grading_field_t(field_strength_t: float) -> float | None:
    """The field whose cut-offs grade a scan at ``field_strength_t`` tesla.

    Returns:
        1.5 or 3.0; 1.5 for an unknown field (NaN); ``None`` for a field without published
        cut-offs (e.g. 7 T).
    """
    if not math.isfinite(field_strength_t):
        return 1.5
    for field in _CUTOFFS:
        if abs(field_strength_t - field) <= _FIELD_TOLERANCE_T:
            return field
    return None


def grade_t2star(t2star_ms: float, field_strength_t: float = 1.5) -> str:
    """Iron-overload grade of a myocardial T2* (``normal``, ``mild``, ``moderate``, ``severe``).

    Args:
        t2star_ms: Myocardial T2* in ms.
        field_strength_t: Field of the scan in tesla (NaN: unknown, graded at 1.5 T).

    Returns:
        The grade; the empty string when ``t2star_ms`` is NaN or not positive, or the field has
        no published cut-offs.
    """
    field = grading_field_t(field_strength_t)
    if field is None or not np.isfinite(t2star_ms) or t2star_ms <= 0:
        return ""
    return next(grade for grade, low in _CUTOFFS[field] if t2star_ms >= low)


def myocardial_iron_mg_per_g(t2star_ms: np.ndarray | float) -> np.ndarray | float:
    """Myocardial iron concentration (mg/g dry weight) by Carpenter et al. 2011 (1.5 T).

    ``[Fe] = 45.0 * T2*^-1.22`` with T2* in ms; NaN where T2* is NaN or not positive.
    """
    t2 = np.asarray(t2star_ms, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        iron = np.where(t2 > 0, 45.0 * np.power(np.where(t2 > 0, t2, 1.0), -1.22), np.nan)
    return float(iron) if iron.ndim == 0 else iron
