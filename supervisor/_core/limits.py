"""The bounds every number of the configuration is held to.

A value past them passes nothing useful on (a delay of 10**32 seconds, an
infinite retention) and fails deep in the running code instead: trio's
deadlines, SQLite's integers and ``range`` all refuse such numbers. So
they are refused where they are read, with the bound in the message.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_COUNT",
    "MAX_FACTOR",
    "MAX_NESTING",
    "MAX_SECONDS",
    "BackoffDelay",
    "BackoffFactor",
    "BackoffSettings",
    "Count",
    "Jitter",
    "Seconds",
]

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

BackoffDelay = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
"""A backoff's ``initial`` or ``cap``: positive seconds."""
BackoffFactor = Annotated[float, Field(ge=1, le=MAX_FACTOR)]
"""A backoff's growth per attempt: a delay never shrinks."""
Jitter: TypeAlias = Literal["full", "equal", "none"]


class BackoffSettings(BaseModel):
    """``initial``, ``factor``, ``cap`` and ``jitter`` of an exponential backoff.

    The one place their bounds and the ``cap >= initial`` rule are written:
    restarts (``BackoffConfig``) and delivery retries (``RetryConfig``) derive
    from it and only change the defaults, by redeclaring a field with the
    same annotated type (``initial: BackoffDelay = 0.5``).
    """

    # inf and nan are never a usable number of seconds.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)

    initial: BackoffDelay = 1.0
    factor: BackoffFactor = 2.0
    cap: BackoffDelay = 60.0
    jitter: Jitter = "equal"

    @model_validator(mode="after")
    def _cap_not_below_initial(self) -> BackoffSettings:
        if self.cap < self.initial:
            raise ValueError(f"cap ({self.cap}) must not be below initial ({self.initial})")
        return self
