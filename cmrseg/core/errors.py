"""The one exception type for refused user input."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """An input handed in by the user is refused.

    The message names the file (or option) and the problem; command-line entry points turn
    it into one line on stderr and exit code 2, without a traceback.
    """
