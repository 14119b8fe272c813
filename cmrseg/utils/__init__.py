"""Small utilities shared by the data, CLI and callback code."""

from cmrseg.utils.atomic import atomic_path
from cmrseg.utils.errors import InputError

__all__ = ["InputError", "atomic_path"]
