"""Renamed public names stay importable for a while, with a warning."""

from __future__ import annotations

import pytest

import supervisor
from supervisor._core.frames import MalformedFrame


def test_invalid_frame_is_a_deprecated_alias_of_malformed_frame() -> None:
    with pytest.warns(DeprecationWarning, match="MalformedFrame"):
        alias = supervisor.InvalidFrame
    assert alias is MalformedFrame
    assert supervisor.MalformedFrame is MalformedFrame
    assert "MalformedFrame" in supervisor.__all__


def test_every_access_of_the_old_name_warns() -> None:
    with pytest.warns(DeprecationWarning, match="InvalidFrame"):
        supervisor.InvalidFrame  # noqa: B018
    with pytest.warns(DeprecationWarning, match="InvalidFrame"):
        from supervisor import InvalidFrame  # noqa: F401
