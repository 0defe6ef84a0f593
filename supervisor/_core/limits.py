"""The bounds every number of the configuration is held to.

A value past them passes nothing useful on (a delay of 10**32 seconds, an
infinite retention) and fails deep in the running code instead: trio's
deadlines, SQLite's integers and ``range`` all refuse such numbers. So
they are refused where they are read, with the bound in the message.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["MAX_COUNT", "MAX_FACTOR", "MAX_NESTING", "MAX_SECONDS", "Count", "Seconds"]

MAX_SECONDS = 10 * 365 * 24 * 3600.0
"""The longest duration any setting takes (ten years): trio's clock and
SQLite's timestamps handle it, and no real delay or retention is longer."""
MAX_COUNT = 1_000_000
"""The largest count (failures, attempts, backups, entries) a setting takes."""
MAX_FACTOR = 1000.0
"""The largest growth factor of a backoff."""
MAX_NESTING = 50
"""The deepest nesting of arrays and tables in a config file or an override."""

Seconds = Annotated[float, Field(le=MAX_SECONDS)]
Count = Annotated[int, Field(le=MAX_COUNT)]
