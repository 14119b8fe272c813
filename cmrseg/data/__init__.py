"""Echo-stack HDF5 data: format I/O, subject splits, the dataset and the datamodule.

The format and split code need only numpy and h5py; the torch-based dataset and datamodule
are imported on first use, so command-line tools that only read files start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from cmrseg.data.echo_stack import (
    EchoStack,
    EchoStackError,
    EchoStackFile,
    EchoStackInfo,
    SliceSource,
    inspect_echo_stack,
    read_echo_stack,
    write_echo_stack,
)
from cmrseg.data.splits import SubjectSplit, load_split, make_subject_split, save_split

_LAZY = {
    "EchoStackDataModule": "cmrseg.data.datamodule",
    "EchoStackDataset": "cmrseg.data.dataset",
}

__all__ = [
    "EchoStack",
    "EchoStackDataModule",
    "EchoStackDataset",
    "EchoStackError",
    "EchoStackFile",
    "EchoStackInfo",
    "SliceSource",
    "SubjectSplit",
    "inspect_echo_stack",
    "load_split",
    "make_subject_split",
    "read_echo_stack",
    "save_split",
    "write_echo_stack",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
