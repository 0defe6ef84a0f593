"""Property tests: the configuration, its overrides, filters and route shortcuts
accept input or refuse it with their one clean error, never another exception."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor._config import load_config
from supervisor._core.errors import ConfigError, FilterError
from supervisor._core.filter import compile_filter
from supervisor._routing.config import FileRouteConfig, parse_route_shortcut, parse_sink_spec

settings.register_profile(
    "parsers",
    max_examples=int(os.environ.get("SUPERVISE_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FUZZ = settings.get_profile("parsers")

TOMLISH = st.text(alphabet="[]{}=\"'.,#\n abc_xyz0123456789-+eE:inftrue", max_size=200)
VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "command",
        "restart",
        "stop_timeout",
        "backoff",
        "give_up",
        "env",
        "max_frame_bytes",
        "stall_timeout",
        "log",
        "answers",
        "name",
        "pty",
    ]
)


def _toml_value(value: object) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = repr(value)
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(text, text)
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _load(path: Path, environ: dict[str, str] | None = None) -> None:
    try:
        load_config(path, environ or {})
    except ConfigError as error:
        assert "\n" not in str(error)  # noqa: PT017


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fuzz-{os.getpid()}.toml"
    path.write_bytes(data)
    _load(path)


@FUZZ
@given(TOMLISH)
def test_tomlish_text(text: str) -> None:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fuzz-{os.getpid()}.toml"
    path.write_text('[programs.x]\ncommand = "true"\n' + text)
    _load(path)


@FUZZ
@given(
    st.dictionaries(KEYS, VALUE, max_size=5),
    st.dictionaries(
        st.sampled_from(
            [
                "SUPERVISE_INSTANCE",
                "SUPERVISE_PROGRAMS__X__STOP_TIMEOUT",
                "SUPERVISE_JOURNAL__MAX_AGE",
                "SUPERVISE_PROGRAMS__X__BACKOFF__CAP",
                "SUPERVISE_DRAIN_TIMEOUT",
                "SUPERVISE_PROGRAMS__X__ENV",
            ]
        ),
        TOMLISH,
        max_size=3,
    ),
)
def test_structured_program_and_overrides(
    settings_: dict[str, object], environ: dict[str, str]
) -> None:
    lines = ["[programs.x]", 'command = "true"']
    lines += [
        f"{key} = {_toml_value(value)}" for key, value in settings_.items() if key != "command"
    ]
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fuzz-{os.getpid()}.toml"
    path.write_text("\n".join(lines) + "\n")
    _load(path, environ)


FILTERISH = st.lists(
    st.sampled_from(
        [
            "(",
            ")",
            "[",
            "]",
            ",",
            " ",
            "not ",
            " and ",
            " or ",
            " in ",
            " matches ",
            "==",
            "<",
            ">=",
            "!=",
            '"a"',
            "'b'",
            "1",
            "-2.5e3",
            "true",
            "null",
            "data.x",
            "seq",
            "event",
            "\\",
        ]
    ),
    max_size=60,
).map("".join)


@FUZZ
@given(FILTERISH | st.text(max_size=100))
def test_filter_compiles_or_refuses(source: str) -> None:
    try:
        compile_filter(source)
    except FilterError as error:
        assert "\n" not in str(error)  # noqa: PT017


SHORTCUT = st.text(alphabet="=,:#[]*?_ab/tmuxfilewebhookexecredis.-", max_size=40)


@FUZZ
@given(SHORTCUT | st.text(max_size=40))
def test_route_and_notify_shortcuts(text: str) -> None:
    for parse in (parse_route_shortcut, lambda t: {"sink": parse_sink_spec(t)}):
        try:
            values = parse(text)
        except ValueError as error:  # the CLI reports it as a ConfigError
            assert "\n" not in str(error)  # noqa: PT017
            continue
        # pydantic's ValidationError (a ValueError): the CLI names the flag.
        with contextlib.suppress(ValueError):
            FileRouteConfig.model_validate({"name": "route", **values})


@pytest.mark.parametrize("source", ["seq > 04", "data.x == -01"])
def test_a_number_json_cannot_read_is_a_filter_error(source: str) -> None:
    """Found by the coverage-guided fuzzer: these raised JSONDecodeError."""
    with pytest.raises(FilterError, match=r"bad number .* at character \d+"):
        compile_filter(source)
