"""Physics-based synthetic multi-echo GRE short-axis phantoms with exact ground truth."""

from cmrseg.synth.config import (
    Cohort,
    SynthConfig,
    SynthConfigError,
    load_cohort,
    load_synth_config,
)
from cmrseg.synth.phantom import SyntheticSlice, synthesize_cohort, synthesize_subject

__all__ = [
    "Cohort",
    "SynthConfig",
    "SynthConfigError",
    "SyntheticSlice",
    "load_cohort",
    "load_synth_config",
    "synthesize_cohort",
    "synthesize_subject",
]
