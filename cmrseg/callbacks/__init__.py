"""Lightning callbacks: T2* agreement, per-slice run records, the last epoch's checkpoint."""

from cmrseg.callbacks.checkpoint import LastEpochCheckpoint
from cmrseg.callbacks.run_record import RunRecordCallback
from cmrseg.callbacks.t2star import T2StarCallback

__all__ = ["LastEpochCheckpoint", "RunRecordCallback", "T2StarCallback"]
