"""Statistics over subjects (numpy/scipy, no torch): agreement, bootstrap intervals, paired tests.

Layer 2, used by the T2* agreement (:mod:`cmrseg.t2star.mask_agreement`), the T2* callback,
``cmrseg-eval`` and ``cmrseg-report``. Every interval resamples subjects, never slices.
"""

from cmrseg.stats.aggregate import group_means, ordinal_median
from cmrseg.stats.agreement import (
    BlandAltman,
    bland_altman,
    bland_altman_percent,
    cohen_kappa,
    icc,
    kappa_from_counts,
    weighted_bland_altman,
    weighted_icc,
    weighted_kappa,
)
from cmrseg.stats.bootstrap import (
    DEFAULT_N_BOOT,
    Interval,
    bootstrap_intervals,
    group_index,
    replicate_weights,
)
from cmrseg.stats.intervals import AGREEMENT_STATISTICS, agreement_intervals, mean_interval
from cmrseg.stats.paired import holm, wilcoxon_signed_rank

__all__ = [
    "AGREEMENT_STATISTICS",
    "DEFAULT_N_BOOT",
    "BlandAltman",
    "Interval",
    "agreement_intervals",
    "bland_altman",
    "bland_altman_percent",
    "bootstrap_intervals",
    "cohen_kappa",
    "group_index",
    "group_means",
    "holm",
    "icc",
    "kappa_from_counts",
    "mean_interval",
    "ordinal_median",
    "replicate_weights",
    "weighted_bland_altman",
    "weighted_icc",
    "weighted_kappa",
    "wilcoxon_signed_rank",
]
