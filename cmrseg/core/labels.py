"""The echo-stack label coding (contract section 1): the one place that says myocardium = 2."""

from __future__ import annotations

__all__ = ["BACKGROUND", "BLOOD_POOL", "LABEL_VALUES", "MYOCARDIUM"]

#: Everything outside the LV.
BACKGROUND = 0
#: LV blood pool: inside the endocardial contour.
BLOOD_POOL = 1
#: LV myocardium: between the endocardial and the epicardial contours.
MYOCARDIUM = 2
#: Every value a ``labels`` or ``labels_pred`` dataset may hold.
LABEL_VALUES: tuple[int, ...] = (BACKGROUND, BLOOD_POOL, MYOCARDIUM)
