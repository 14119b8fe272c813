"""Lightning callbacks: T2* agreement of predicted and reference masks during training."""

from cmrseg.callbacks.t2star import (
    AGREEMENT_COLUMNS,
    SUMMARY_KEYS,
    T2StarCallback,
    agreement_summary,
)

__all__ = ["AGREEMENT_COLUMNS", "SUMMARY_KEYS", "T2StarCallback", "agreement_summary"]
