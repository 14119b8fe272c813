"""Clinical grading of myocardial T2* and the myocardial iron concentration it implies."""

from __future__ import annotations

import numpy as np

__all__ = ["GRADE_LOWER_BOUNDS_MS", "grade_t2star", "myocardial_iron_mg_per_g"]

#: Lower T2* bound (ms, inclusive) of each grade, from normal to severe (contract section 2).
GRADE_LOWER_BOUNDS_MS: tuple[tuple[str, float], ...] = (
    ("normal", 20.0),
    ("mild", 14.0),
    ("moderate", 10.0),
    ("severe", 0.0),
)


def grade_t2star(t2star_ms: float) -> str:
    """Iron-overload grade of a myocardial T2*.

    ``normal`` (T2* >= 20 ms), ``mild`` (14 <= T2* < 20), ``moderate`` (10 <= T2* < 14),
    ``severe`` (T2* < 10); the empty string when ``t2star_ms`` is NaN or not positive.
    """
    if not np.isfinite(t2star_ms) or t2star_ms <= 0:
        return ""
    return next(grade for grade, low in GRADE_LOWER_BOUNDS_MS if t2star_ms >= low)


def myocardial_iron_mg_per_g(t2star_ms: np.ndarray | float) -> np.ndarray | float:
    """Myocardial iron concentration (mg/g dry weight) by Carpenter et al. 2011 (1.5 T).

    ``[Fe] = 45.0 * T2*^-1.22`` with T2* in ms; NaN where T2* is NaN or not positive.
    """
    t2 = np.asarray(t2star_ms, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        iron = np.where(t2 > 0, 45.0 * np.power(np.where(t2 > 0, t2, 1.0), -1.22), np.nan)
    return float(iron) if iron.ndim == 0 else iron
