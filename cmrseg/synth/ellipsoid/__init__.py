"""A second, independently written phantom: ellipsoidal 3-D anatomy cut into short-axis slices.

It is a held-out family for cross-domain evaluation (``cmrseg-synth OUT.h5 --anatomy
ellipsoid``), never used for training by the recipes. It shares with the default phantom only
the echo-stack format and the label coding: anatomy, tissue values, fat model, coils, sampling
and noise are its own (README, "The synthetic cohort").
"""

from cmrseg.synth.ellipsoid.cohort import (
    ECHO_TIMES_MS,
    FIELD_STRENGTH_T,
    MATRIX,
    EllipsoidSubject,
    draw_subject,
    render_subject,
    synthesize_ellipsoid_cohort,
)

__all__ = [
    "ECHO_TIMES_MS",
    "FIELD_STRENGTH_T",
    "MATRIX",
    "EllipsoidSubject",
    "draw_subject",
    "render_subject",
    "synthesize_ellipsoid_cohort",
]
