"""Config files: ``check-config``, one-line errors naming the key, environment overrides."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, SUPERVISE, child, clean_env, supervise

from supervisor._config import load_config
from supervisor._core.errors import ConfigError


def toml_list(argv: list[str]) -> str:
    """A command line as a TOML array (a JSON string is a TOML basic string)."""
    return "[" + ", ".join(json.dumps(arg) for arg in argv) + "]"


def write(tmp_path: Path, text: str, name: str = "supervise.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def supervise_with_env(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m supervisor ARGS`` to completion with extra environment variables."""
    return subprocess.run(
        [*SUPERVISE, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        cwd=ROOT,
        env={**clean_env(), **env},
        check=False,
    )


LOOP = '[programs.loop]\ncommand = "true"\n'

# (file contents, the problem reported after "FILE: ")
BAD_CONFIGS = {
    "restart": (
        LOOP + 'restart = "sometimes"\n',
        "programs.loop.restart: must be one of no, on-failure, always",
    ),
    "unknown": (LOOP + 'restat = "no"\n', "programs.loop.restat: unknown setting"),
    "unknown-nested": (
        LOOP + "backoff = { intial = 2 }\n",
        "programs.loop.backoff.intial: unknown setting",
    ),
    "cap": (
        LOOP + "backoff = { initial = 10, cap = 5 }\n",
        "programs.loop.backoff: cap (5.0) must not be below initial (10.0)",
    ),
    "toml": (
        '[programs.loop]\ncommand = = "true"\n',
        "invalid TOML: Invalid value (at line 2, column 11)",
    ),
    "signal-name": (
        LOOP + 'stop_signal = "FOO"\n',
        "programs.loop.stop_signal: not a signal name: 'FOO'",
    ),
    "signal-number": (
        LOOP + "stop_signal = 999\n",
        "programs.loop.stop_signal: not a signal number: 999",
    ),
    "missing-command": (
        '[programs.loop]\nrestart = "no"\n',
        "programs.loop.command: required",
    ),
    "unsplittable": (
        "[programs.loop]\ncommand = 'echo \"unterminated'\n",
        "programs.loop.command: cannot split command: No closing quotation",
    ),
    "empty-program-name": (
        '[programs.loop]\ncommand = [""]\n',
        "programs.loop.command: the program name is empty",
    ),
    "negative": (
        LOOP + "start_seconds = -1\n",
        "programs.loop.start_seconds: input should be greater than or equal to 0",
    ),
    "size": (
        LOOP + 'max_frame_bytes = "lots"\n',
        "programs.loop.max_frame_bytes: not a size: 'lots' (use e.g. 65536, 512K, 1M)",
    ),
    "program-name": (
        '[programs."bad name"]\ncommand = "true"\n',
        "programs: program name 'bad name' must start with a letter or digit "
        "and use only letters, digits, '_', '.' and '-'",
    ),
    "no-programs": ('instance = "x"\n', "programs: required"),
    "empty-programs": ("[programs]\n", "programs: needs at least 1 entry"),
}


# -- check-config ----------------------------------------------------------


def test_check_config_ok(tmp_path: Path) -> None:
    """A valid file is reported ok with its programs, in file order, and exit 0."""
    path = write(
        tmp_path,
        '[programs.web]\ncommand = "python -m http.server"\n'
        '[programs.loop]\ncommand = ["sh", "-c", "exit 0"]\nrestart = "always"\n'
        'stop_signal = "INT"\nbackoff = { initial = 0.5, jitter = "none" }\n',
    )
    result = supervise("check-config", str(path))
    assert result.returncode == 0
    assert result.stdout == f"{path}: ok (2 programs: web, loop)\n".encode()
    assert result.stderr == b""


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_check_config_error_is_one_line(tmp_path: Path, case: str) -> None:
    """Each kind of mistake gives exactly ``supervise: FILE: key: problem`` and exit 2."""
    text, problem = BAD_CONFIGS[case]
    path = write(tmp_path, text)
    result = supervise("check-config", str(path))
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr == f"supervise: {path}: {problem}\n".encode()


@pytest.mark.parametrize(
    ("name", "problem"),
    [("missing.toml", "No such file or directory"), ("", "Is a directory")],
)
def test_check_config_unreadable_file(tmp_path: Path, name: str, problem: str) -> None:
    """A file that cannot be read is named with the system's reason, exit 2."""
    path = str(tmp_path / name) if name else str(tmp_path)
    result = supervise("check-config", path)
    assert result.returncode == 2
    assert result.stderr == f"supervise: {path}: cannot read: {problem}\n".encode()


def test_check_config_needs_a_file() -> None:
    """check-config without a file is a usage error."""
    result = supervise("check-config")
    assert result.returncode == 2
    assert b"FILE" in result.stderr


def test_check_config_refuses_two_programs_with_one_name(tmp_path: Path) -> None:
    """Two programs may not share a ``name``: their events and output could not be told apart."""
    path = write(
        tmp_path,
        '[programs.a]\ncommand = "true"\nname = "same"\n'
        '[programs.b]\ncommand = "true"\nname = "same"\n',
    )
    result = supervise("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"supervise: {path}: programs".encode())
    assert result.stderr.count(b"\n") == 1


# -- running a bad config --------------------------------------------------


def test_bad_config_starts_nothing(tmp_path: Path) -> None:
    """``supervise --config`` on a bad file exits 2 with the same line, and no program runs."""
    marker = tmp_path / "started"
    path = write(
        tmp_path,
        f"[programs.good]\ncommand = {toml_list(['touch', str(marker)])}\n"
        '[programs.bad]\ncommand = "true"\nrestart = "sometimes"\n',
    )
    expected = f"supervise: {path}: programs.bad.restart: must be one of no, on-failure, always\n"
    checked = supervise("check-config", str(path))
    result = supervise("--config", str(path))
    assert checked.stderr == result.stderr == expected.encode()
    assert result.returncode == 2
    assert result.stdout == b""
    assert not marker.exists()


@pytest.mark.parametrize(
    "extra",
    [["--", "true"], ["true"], ["--restart", "always"], ["--no-pty"], ["--max-failures", "3"]],
)
def test_config_with_command_or_program_flags_is_usage_error(
    tmp_path: Path, extra: list[str]
) -> None:
    """``--config`` with a COMMAND or a one-program flag is refused with exit 2."""
    marker = tmp_path / "started"
    path = write(tmp_path, f"[programs.a]\ncommand = {toml_list(['touch', str(marker)])}\n")
    result = supervise("--config", str(path), *extra)
    assert result.returncode == 2
    assert b"--config runs the file's programs: give no COMMAND or program flags" in (result.stderr)
    assert not marker.exists()


# -- environment overrides -------------------------------------------------


def test_env_override_replaces_file_values(tmp_path: Path) -> None:
    """SUPERVISE_PROGRAMS__NAME__KEY overrides the file; values are read as TOML."""
    path = write(
        tmp_path,
        '[programs.loop]\ncommand = "true"\nrestart = "no"\nstart_seconds = 3\n'
        "backoff = { initial = 2 }\n",
    )
    environ = {
        "SUPERVISE_PROGRAMS__LOOP__RESTART": "always",
        "SUPERVISE_PROGRAMS__LOOP__START_SECONDS": "0.25",
        "SUPERVISE_PROGRAMS__LOOP__BACKOFF__CAP": "7",
        "SUPERVISE_PROGRAMS__LOOP__PTY": "false",
        "SUPERVISE_PROGRAMS__LOOP__COMMAND": '["echo", "two words"]',
        "SUPERVISE_PROGRAMS__LOOP__STOP_SIGNAL": "INT",
        "OTHER_PROGRAMS__LOOP__RESTART": "no",
    }
    program = load_config(path, environ).programs["loop"]
    assert program.restart == "always"
    assert program.start_seconds == 0.25
    assert program.backoff.initial == 2  # kept from the file
    assert program.backoff.cap == 7
    assert program.pty is False
    assert program.command == ("echo", "two words")
    assert program.stop_signal == 2


def test_env_override_plain_string_and_case(tmp_path: Path) -> None:
    """A value that is not TOML is a string; names match the file's keys case-insensitively."""
    path = write(tmp_path, '[programs.Loop]\ncommand = "true"\n')
    config = load_config(path, {"SUPERVISE_PROGRAMS__LOOP__COMMAND": "echo hi there"})
    assert list(config.programs) == ["Loop"]
    assert config.programs["Loop"].command == ("echo", "hi", "there")
    assert config.programs["Loop"].name == "Loop"


def test_env_override_can_add_a_program(tmp_path: Path) -> None:
    """An override naming a program the file lacks adds it, with file defaults."""
    path = write(tmp_path, LOOP)
    config = load_config(path, {"SUPERVISE_PROGRAMS__EXTRA__COMMAND": "sleep 1"})
    assert list(config.programs) == ["loop", "extra"]
    assert config.programs["extra"].command == ("sleep", "1")
    assert config.programs["extra"].restart == "on-failure"


def test_env_override_is_validated(tmp_path: Path) -> None:
    """A bad overriding value is reported with the dotted key, like a bad file value."""
    path = write(tmp_path, LOOP)
    with pytest.raises(ConfigError) as info:
        load_config(path, {"SUPERVISE_PROGRAMS__LOOP__BACKOFF__FACTOR": "0.5"})
    assert str(info.value) == (
        f"{path}: programs.loop.backoff.factor: input should be greater than or equal to 1"
    )


def test_env_override_ignored_without_environ_entry(tmp_path: Path) -> None:
    """The injected environment is the only one read: an empty mapping changes nothing."""
    path = write(tmp_path, LOOP + 'restart = "no"\n')
    assert load_config(path, {}).programs["loop"].restart == "no"


def test_env_override_through_cli_is_checked(tmp_path: Path) -> None:
    """A bad override in the real environment fails check-config and a run alike."""
    path = write(tmp_path, LOOP)
    env = {"SUPERVISE_PROGRAMS__LOOP__RESTART": "sometimes"}
    expected = f"supervise: {path}: programs.loop.restart: must be one of no, on-failure, always\n"
    for args in (["check-config", str(path)], ["--config", str(path)]):
        result = supervise_with_env(*args, env=env)
        assert result.returncode == 2
        assert result.stderr == expected.encode()


def test_env_override_command_through_cli(tmp_path: Path) -> None:
    """The program that runs is the overriding command, not the file's."""
    path = write(
        tmp_path,
        f"[programs.loop]\ncommand = {toml_list(child('restart_lines', 'from-file', '1'))}\n"
        'restart = "no"\n',
    )
    env = {"SUPERVISE_PROGRAMS__LOOP__COMMAND": toml_list(child("restart_lines", "from-env", "2"))}
    result = supervise_with_env("--config", str(path), env=env)
    assert result.returncode == 0
    assert result.stdout == b"loop | from-env 1\nloop | from-env 2\n"


def test_env_override_policy_through_cli(tmp_path: Path) -> None:
    """Nested overrides change how a real run is supervised: here it gives up sooner."""
    counter = tmp_path / "runs"
    path = write(
        tmp_path,
        f"[programs.loop]\ncommand = {toml_list(child('restart_runs', str(counter), '0:3'))}\n",
    )
    env = {
        "SUPERVISE_PROGRAMS__LOOP__GIVE_UP__MAX_FAILURES": "2",
        "SUPERVISE_PROGRAMS__LOOP__BACKOFF__INITIAL": "0.05",
        "SUPERVISE_PROGRAMS__LOOP__START_SECONDS": "5",
    }
    result = supervise_with_env("--config", str(path), env=env)
    assert result.returncode == 1
    assert result.stderr == b"supervise: loop: FATAL: gave up after 2 failed starts within 300s\n"
    assert counter.read_text() == "2"


@pytest.mark.parametrize("name", ["supervise.toml", "tmux-notify.toml", "telegram/supervise.toml"])
def test_example_configs_are_valid(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The configs in examples/ pass check-config, sinks and Telegram settings included."""
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:TEST")
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "987654321")
    result = supervise("check-config", f"examples/{name}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"examples/{name}: ok (".encode())


def test_check_config_builds_the_sinks(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[programs.a]\ncommand = "true"\n[[routes]]\nname = "x"\n'
        'sink = { type = "command", command = "no-such-command-xyz --flag" }\n'
    )
    result = supervise("check-config", str(path))
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.startswith(f"supervise: {path}: routes.x.sink: ")
    assert "no-such-command-xyz" in err
    assert err.count("\n") == 1


def test_telegram_needs_a_token_and_a_chat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.delenv("TELEGRAM_CHAT_ID", raising=False)
    path = tmp_path / "s.toml"
    path.write_text('[programs.a]\ncommand = "true"\n[telegram]\nallowed_users = ["@alice"]\n')
    result = supervise("check-config", str(path))
    assert result.stderr.decode() == (
        f"supervise: {path}: telegram.token: not set (put the bot token in $TELEGRAM_BOT_TOKEN)\n"
    )
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:SECRET")
    result = supervise("check-config", str(path))
    assert "telegram.chat_id: not set" in result.stderr.decode()
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "42")
    path.write_text('[programs.a]\ncommand = "true"\n[telegram]\nallowed_users = ["alice"]\n')
    result = supervise("check-config", str(path))
    assert result.returncode == 2
    assert "'alice' is neither a user id nor an @username" in result.stderr.decode()
    assert b"SECRET" not in result.stderr
