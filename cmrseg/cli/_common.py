"""Shared plumbing of the console entry points: logging set-up and the exit-code contract."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from cmrseg.core.errors import InputError

__all__ = ["run_cli", "setup_logging"]


def setup_logging(verbose: bool = False) -> None:
    """Send log records of level INFO (DEBUG when ``verbose``) to stderr, once."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_cli(prog: str, func: Callable[[], int | None]) -> int:
    """Run an entry point and map refused input to the contract's exit code.

    Args:
        prog: Command name used as the message prefix, e.g. ``cmrseg-t2star``.
        func: The command's body; returns an exit code or ``None`` for success.

    Returns:
        0 on success, 2 for refused input (one line on stderr, no traceback), 130 on Ctrl-C.
    """
    try:
        return int(func() or 0)
    except InputError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
