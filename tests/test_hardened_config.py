"""Configuration and command lines that used to end in a traceback: each is one line, exit 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import supervise

from supervisor._config import load_config
from supervisor._core.errors import ConfigError, FilterError
from supervisor._core.filter import compile_filter

PROGRAM = '[programs.x]\ncommand = "true"\n'


def _one_line_error(result: subprocess.CompletedProcess[bytes], *expected: str) -> None:
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    for text in expected:
        assert text in err, err


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            PROGRAM + "give_up.max_failures = 100000000000000000000000000000000\n",
            "programs.x.give_up.max_failures: must be at most 1000000",
        ),
        (
            PROGRAM + "backoff = { initial = inf, cap = inf }\n",
            "programs.x.backoff.initial: must be a finite number",
        ),
        (PROGRAM + "stop_timeout = 1e300\n", "programs.x.stop_timeout: must be at most"),
        (
            PROGRAM + '[[routes]]\nname = "r"\nsink = { type = "file", path = "x" }\n'
            "retry = { initial = inf }\n",
            "retry.initial: must be a finite number",
        ),
        (PROGRAM + "[journal]\nmax_age = inf\n", "journal.max_age: must be a finite number"),
        ('instance = "a\\u0000b"\n' + PROGRAM, "instance:"),
        (PROGRAM + "x = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than 50"),
        (
            PROGRAM + "x = " + "{a = " * 100_000 + "1" + "}" * 100_000 + "\n",
            "nested deeper than 50",
        ),
        (
            PROGRAM + '[[routes]]\nname = "r"\nsink = { type = "file", path = "x" }\n'
            "filter = '" + "(" * 50_000 + "seq" + ")" * 50_000 + "'\n",
            "routes.1 (r).filter",
        ),
    ],
)
def test_check_config_and_run_refuse(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    _one_line_error(supervise("check-config", str(path)), "bad.toml", expected)
    _one_line_error(supervise("--config", str(path)), "bad.toml", expected)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'[programs.x]\ncommand = "\xff"\n')
    _one_line_error(supervise("check-config", str(path)), "bad.toml: not UTF-8")


def test_env_override_nested_too_deep(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(PROGRAM)
    deep = "[" * 60_000 + "]" * 60_000
    with pytest.raises(ConfigError, match="nested deeper than 50"):
        load_config(path, {"SUPERVISE_PROGRAMS__X__ENV": deep})


def test_brackets_inside_strings_are_not_nesting(tmp_path: Path) -> None:
    """Only real arrays and tables count: a string full of brackets is just text."""
    path = tmp_path / "ok.toml"
    text = "[" * 200 + "{" * 200
    path.write_text(
        f'[programs.x]\ncommand = ["echo", \'{text}\']\n# {text}\nenv = {{ A = """{text}""" }}\n'
    )
    config = load_config(path, {"SUPERVISE_PROGRAMS__X__ENV__B": f"'{text}'"})
    program = config.programs["x"]
    assert list(program.command) == ["echo", text]
    assert program.env == {"A": text, "b": text}


def test_table_headers_nested_too_deep(tmp_path: Path) -> None:
    """Depth counts tables made by dotted headers too, not only brackets."""
    path = tmp_path / "deep.toml"
    path.write_text(PROGRAM + "[" + ".".join(["t"] * 60) + "]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"deep\.toml: arrays or tables nested deeper than 50"):
        load_config(path, {})


@pytest.mark.parametrize(
    "source",
    [
        "(" * 50_000 + "seq" + ")" * 50_000,
        "not " * 50_000 + "seq",
        "seq in " + "[" * 50_000 + "]" * 50_000,
        "(" * 101 + "seq" + ")" * 101,
        "not " * 101 + "seq",
    ],
)
def test_filter_limits(source: str) -> None:
    with pytest.raises(FilterError, match=r"longer than|deeper than 100"):
        compile_filter(source)


def test_filter_within_limits_compiles() -> None:
    compile_filter("(" * 100 + "seq" + ")" * 100)
    compile_filter("not " * 100 + "seq")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--max-failures", "99999999999999999999999"], "--max-failures: must be at most"),
        (["--stop-timeout", "inf"], "--stop-timeout: must be a finite number"),
        (["--backoff-initial", "nan"], "must be a finite number"),
        (["--route", ",,,=file:x"], "bad route"),
        (["--route", "[=file:x"], "not an event-name glob"),
        (["--name", ""], "--name: must not be empty"),
        (["--journal", ""], "--journal: must not be empty"),
    ],
)
def test_meaningless_flags_refused(flags: list[str], expected: str) -> None:
    _one_line_error(supervise(*flags, "--", "true"), expected)


def test_journal_header_without_tables(tmp_path: Path) -> None:
    import sqlite3

    from supervisor._routing.journal import _APPLICATION_ID

    path = tmp_path / "j.db"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
    connection.execute("PRAGMA user_version = 1")
    connection.commit()
    connection.close()
    _one_line_error(supervise("events", "--journal", str(path)), "j.db: is a damaged journal")
    _one_line_error(supervise("--journal", str(path), "--", "true"), "j.db: is a damaged journal")
