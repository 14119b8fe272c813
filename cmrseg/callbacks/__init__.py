"""Lightning callbacks: T2* agreement of predicted and reference masks; per-slice run records."""

from cmrseg.callbacks.run_record import RunRecordCallback
from cmrseg.callbacks.t2star import T2StarCallback

__all__ = ["RunRecordCallback", "T2StarCallback"]
