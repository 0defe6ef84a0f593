"""Validated settings for one supervised program.

``supervise -- CMD`` builds a :class:`ProgramConfig` from its flags; SDK users
build one directly. Values are checked here, once, so the running code can
trust them and a mistake is reported as one line naming the setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._errors import ConfigError
from ._frames import DEFAULT_MAX_FRAME_BYTES

__all__ = ["ProgramConfig", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)(i?[bB])?\s*$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """Parse ``1048576``, ``512K``, ``1M`` or ``1MiB`` into bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 65536, 512K, 1M)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


class ProgramConfig(BaseModel):
    """How to run and supervise one program.

    Attributes:
        command: program and arguments.
        name: the program's name in events (default: the command's basename).
        cwd: working directory (default: supervise's).
        env: variables added to (or overriding) supervise's environment.
        pty: run under a pseudo-terminal.
        keep_frames: leave frames in the passthrough (to nest supervisors).
        max_frame_bytes: payloads above this are ``frame_invalid``/``oversize``.
        stop_timeout: seconds between the stop signal and SIGKILL.
        forward_eof: pass the end of supervise's stdin on to the child.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: tuple[str, ...] = Field(min_length=1)
    name: str = ""
    cwd: Path | None = None
    env: dict[str, str] = Field(default_factory=dict)
    pty: bool = True
    keep_frames: bool = False
    max_frame_bytes: int = Field(default=DEFAULT_MAX_FRAME_BYTES, ge=64)
    stop_timeout: float = Field(default=10.0, ge=0)
    forward_eof: bool = False

    @field_validator("command")
    @classmethod
    def _command_not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value[0]:
            raise ValueError("the program name is empty")
        return value

    @property
    def program_name(self) -> str:
        return self.name or os.path.basename(self.command[0]) or self.command[0]

    def child_env(self) -> dict[str, str] | None:
        """The child's whole environment, or None to inherit supervise's as is."""
        if not self.env:
            return None
        return {**os.environ, **self.env}

    @classmethod
    def checked(
        cls, source: str, values: Mapping[str, object], names: Mapping[str, str] | None = None
    ) -> ProgramConfig:
        """Build from untrusted values; raise ConfigError naming the bad field.

        Args:
            source: where the values came from (a file name; empty for flags).
            values: the settings, by field name.
            names: what the user calls each field there (``--stop-timeout``),
                so the error names what they typed.
        """
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "<config>"
            where = (names or {}).get(where, where)
            raise ConfigError(f"{source}: {where}" if source else where, first["msg"]) from None
