"""Sizes written by people: ``65536``, ``512K``, ``1M``, ``1MiB``.

Its own module, free of pydantic, so the command line's parser (and with it
``supervise --help``) can use it without importing the configuration models.
"""

from __future__ import annotations

import re

__all__ = ["parse_size"]

_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)(i?[bB])?\s*$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """Parse ``1048576``, ``512K``, ``1M`` or ``1MiB`` into bytes.

    Raises:
        ValueError: not a size, with an example of one.
    """
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 65536, 512K, 1M)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]
