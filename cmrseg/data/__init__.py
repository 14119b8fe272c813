"""Echo-stack HDF5 data: format I/O, datasets and the datamodule."""

from cmrseg.data.echo_stack import (
    EchoStack,
    EchoStackError,
    EchoStackFile,
    EchoStackInfo,
    inspect_echo_stack,
    read_echo_stack,
    write_echo_stack,
)

__all__ = [
    "EchoStack",
    "EchoStackError",
    "EchoStackFile",
    "EchoStackInfo",
    "inspect_echo_stack",
    "read_echo_stack",
    "write_echo_stack",
]
