"""TmuxSink against a real tmux server, and its command templates as pure functions.

Each tmux test gets its own server on a unique ``-L`` socket in a private
``TMUX_TMPDIR``, with ``TMUX`` removed from the environment, and kills it in
teardown, so no test can reach the developer's own tmux.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shlex
import shutil
import struct
import subprocess
import tempfile
import termios
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.tmux import (
    MAX_COMMAND_BYTES,
    CommandTemplate,
    TmuxSink,
    TmuxTarget,
    placeholder_values,
    terminal_safe,
)
from supervisor import ConfigError, SinkError
from supervisor._core.events import Event
from supervisor._core.messages import parse_message
from supervisor.testing import wait_until

TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")

T = TypeVar("T")


def child(event: str, seq: int = 1, **data: Any) -> Event:
    """An event as a child would send it."""
    message = parse_message({"type": "ipc", "event": event, "data": data})
    return Event(seq, "loopwork", 1_795_236_690_950, "child", message)


COMPLETE = child(
    "task_complete", taskId="FEAT-001", title="Implement user authentication", duration=110
)


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 15) -> T:
    """Poll ``check`` until it returns something truthy, failing after ``timeout``."""
    result = await wait_until(check, timeout=timeout, interval=0.02)
    assert result is not None
    return result


@dataclass
class TmuxServer:
    """A private tmux server for one test."""

    socket_name: str
    tmpdir: Path

    async def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        assert TMUX is not None
        return await trio.run_process(
            [TMUX, "-L", self.socket_name, "-f", os.devnull, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=check,
        )

    async def new_session(self, name: str, cwd: Path | None = None) -> None:
        """A detached session whose pane runs ``sh``."""
        where = ["-c", str(cwd)] if cwd is not None else []
        await self.run("new-session", "-d", "-s", name, "-x", "120", "-y", "40", *where, "sh")

    async def option(self, session: str, name: str) -> str | None:
        result = await self.run("show-options", "-v", "-t", f"={session}:", name, check=False)
        return result.stdout.decode().removesuffix("\n") if result.returncode == 0 else None

    async def client_of(self, session: str) -> str | None:
        """The name of a client attached to ``session``, if any."""
        result = await self.run(
            "list-clients", "-t", f"={session}", "-F", "#{client_name}", check=False
        )
        return result.stdout.decode().strip() or None

    def sink(self, target: str = "mgr", action: Any = "notify", **options: Any) -> TmuxSink:
        return TmuxSink(target, action, socket_name=self.socket_name, **options)


@pytest.fixture
def tmux_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No ``TMUX`` in the environment, and a private directory for sockets."""
    tmpdir = Path(tempfile.mkdtemp(prefix="tmx"))  # short: socket paths are limited
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("TMUX_PANE", raising=False)
    monkeypatch.setenv("TMUX_TMPDIR", str(tmpdir))
    yield tmpdir
    shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture
async def server(tmux_env: Path) -> AsyncIterator[TmuxServer]:
    """A tmux server name of its own; whatever the test starts on it is killed after."""
    tmux = TmuxServer(f"ipcsup-{uuid.uuid4().hex[:12]}", tmux_env)
    try:
        yield tmux
    finally:
        with trio.CancelScope(shield=True):
            await tmux.run("kill-server", check=False)
            for socket in tmux_env.glob(f"tmux-*/{tmux.socket_name}"):
                socket.unlink(missing_ok=True)


# -- notify ------------------------------------------------------------------------


@needs_tmux
async def test_notify_sets_the_option_without_any_client(server: TmuxServer) -> None:
    """With nobody attached, notify still records the summary for the status line."""
    await server.new_session("mgr")
    sink = server.sink()
    assert sink.name == "tmux:mgr:notify"
    with trio.fail_after(15):
        await sink.send(COMPLETE)
    assert await server.option("mgr", "@ipc_last") == (
        "✅ FEAT-001 Implement user authentication (1m50s)"
    )
    assert await server.option("mgr", "@ipc_last_event") == "task_complete"
    await sink.aclose()


@needs_tmux
async def test_notify_text_cannot_run_tmux_formats(server: TmuxServer, tmp_path: Path) -> None:
    """``#(...)`` in event text is stored doubled and runs nothing; a final ';' survives."""
    await server.new_session("mgr")
    marker = tmp_path / "pwned"
    title = f"#(touch {marker}) #{{session_name}} #[fg=red] ends;"
    with trio.fail_after(15):
        await server.sink().send(child("task_start", taskId="T-1", title=title))
    stored = await server.option("mgr", "@ipc_last")
    assert stored == "▶️ T-1 " + title.replace("#", "##")
    # What a status line showing #{@ipc_last} draws: each ## is one #.
    shown = await server.run("display-message", "-p", "-t", "=mgr:", "#{@ipc_last}")
    assert shown.stdout.decode().strip() == stored
    assert not marker.exists()


@needs_tmux
async def test_notify_shows_only_on_clients_of_the_session(server: TmuxServer) -> None:
    """An attached client of the target session sees the message; one of another does not."""
    await server.new_session("mgr")
    await server.new_session("other")
    async with attached(server, "mgr") as mine, attached(server, "other") as theirs:
        with trio.fail_after(20):
            await server.sink().send(COMPLETE)
            await mine.read_until(b"Implement user authentication")
            # A message sent to the other client afterwards marks how far to
            # read it: the summary must not be in what came before.
            await server.run("display-message", "-c", theirs.name, "--", "MARKER")
            seen = await theirs.read_until(b"MARKER")
    assert b"Implement user authentication" not in seen


@dataclass
class Client:
    """A ``tmux attach`` running on a pty, whose screen output the test reads."""

    name: str
    stream: trio.lowlevel.FdStream
    seen: bytes = b""

    async def read_until(self, needle: bytes) -> bytes:
        while needle not in self.seen:
            data = await self.stream.receive_some()
            assert data, f"client {self.name} closed before {needle!r}"
            self.seen += data
        return self.seen


@asynccontextmanager
async def attached(server: TmuxServer, session: str) -> AsyncIterator[Client]:
    """A client attached to ``session`` on a pty of its own; detached and reaped after."""
    assert TMUX is not None
    master, slave = pty.openpty()
    stream = trio.lowlevel.FdStream(master)  # owns and closes master
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        try:
            process = await trio.lowlevel.open_process(
                [TMUX, "-L", server.socket_name, "attach", "-t", f"={session}"],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env={**os.environ, "TERM": "xterm"},
                start_new_session=True,
            )
        finally:
            os.close(slave)
        try:
            yield Client(await eventually(lambda: server.client_of(session)), stream)
        finally:
            with trio.CancelScope(shield=True):
                process.terminate()
                await process.wait()
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


# -- command -------------------------------------------------------------------------


def _append_title(output: Path) -> str:
    return f"printf '%s\\n' {{title}} >> {shlex.quote(str(output))}"


@needs_tmux
async def test_command_types_the_rendered_line_into_the_pane(
    server: TmuxServer, tmp_path: Path
) -> None:
    """The template runs in the pane's shell with the event's values in place."""
    await server.new_session("mgr", cwd=tmp_path)
    output = tmp_path / "titles.txt"
    sink = server.sink("mgr:0.0", "command", command=_append_title(output))
    with trio.fail_after(20):
        await sink.send(child("task_start", taskId="T-1", title="Implement login"))
        assert await eventually(lambda: _read(output)) == "Implement login\n"


@needs_tmux
async def test_hostile_values_arrive_as_literal_text(server: TmuxServer, tmp_path: Path) -> None:
    """Shell syntax, tmux syntax and terminal keys in a title run nothing."""
    await server.new_session("mgr", cwd=tmp_path)
    (tmp_path / "x").mkdir()
    marker = tmp_path / "pwned"
    output = tmp_path / "titles.txt"
    title = (
        f"$(touch {marker}); rm -rf x `touch {marker}` 'a\"b' \\ && #{{pane_id}} #(touch {marker})"
        f"\x03touch {marker}\x15\tend;"
    )
    sink = server.sink("mgr", "command", command=_append_title(output))
    with trio.fail_after(20):
        await sink.send(child("task_start", taskId="T-1", title=title))
        written = await eventually(lambda: _read(output))
    assert written == terminal_safe(title) + "\n"
    assert not marker.exists()
    assert (tmp_path / "x").is_dir()


@needs_tmux
async def test_raw_json_is_typed_intact_when_allowed(server: TmuxServer, tmp_path: Path) -> None:
    """With allow_raw_command, {raw} hands the whole event JSON to the command."""
    await server.new_session("mgr", cwd=tmp_path)
    output = tmp_path / "raw.jsonl"
    command = f"printf '%s\\n' {{raw}} >> {shlex.quote(str(output))}"
    sink = server.sink("mgr", "command", command=command, allow_raw_command=True)
    event = child("task_failed", taskId="T-2", title='it\'s "quoted"', error="line 1\nline 2")
    with trio.fail_after(20):
        await sink.send(event)
        written = await eventually(lambda: _read(output))
    assert json.loads(written) == json.loads(event.to_json())


async def _read(path: Path) -> str | None:
    await trio.lowlevel.checkpoint()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return text if text.endswith("\n") else None


# -- data -------------------------------------------------------------------------


@needs_tmux
async def test_data_appends_event_lines(server: TmuxServer, tmp_path: Path) -> None:
    """Each event becomes one JSON line in the session's file, named in @ipc_data_file."""
    await server.new_session("mgr")
    sink = server.sink("mgr", "data", data_dir=tmp_path / "state")
    events = [child("task_start", seq=1, taskId="A"), child("task_failed", seq=2, taskId="A")]
    with trio.fail_after(15):
        for event in events:
            await sink.send(event)
    path = tmp_path / "state" / "mgr.jsonl"
    assert path.read_bytes() == b"".join(event.to_json() + b"\n" for event in events)
    assert await server.option("mgr", "@ipc_data_file") == str(path)


# -- failures ---------------------------------------------------------------------


@needs_tmux
async def test_missing_session_is_retryable_then_delivered(
    server: TmuxServer, tmp_path: Path
) -> None:
    """Until its session exists the sink fails retryably; then the retry succeeds.

    ``mgr2`` exists throughout: tmux would match plain ``mgr`` to it as a
    prefix, so this also checks that the session is matched exactly.
    """
    await server.new_session("mgr2")
    for action in ("notify", "data", "command"):
        options: dict[str, Any] = {"data_dir": tmp_path} if action == "data" else {}
        if action == "command":
            options["command"] = "true"
        with trio.fail_after(15), pytest.raises(SinkError) as caught:
            await server.sink("mgr", action, **options).send(COMPLETE)
        assert caught.value.retryable
        assert "session" in caught.value.problem
        assert "\n" not in str(caught.value)
    assert not (tmp_path / "mgr.jsonl").exists()
    assert await server.option("mgr2", "@ipc_last") is None

    await server.new_session("mgr")
    with trio.fail_after(15):
        await server.sink().send(COMPLETE)
    assert await server.option("mgr", "@ipc_last") == (
        "✅ FEAT-001 Implement user authentication (1m50s)"
    )


@needs_tmux
@pytest.mark.parametrize("action", ["notify", "command", "data"])
async def test_no_server_is_retryable(server: TmuxServer, tmp_path: Path, action: str) -> None:
    """Before any tmux server runs on the socket, every action fails retryably."""
    options: dict[str, Any] = {"command": "true"} if action == "command" else {}
    sink = server.sink("mgr", action, data_dir=tmp_path, **options)
    with trio.fail_after(15), pytest.raises(SinkError) as caught:
        await sink.send(COMPLETE)
    assert caught.value.retryable
    assert caught.value.sink == f"tmux:mgr:{action}"
    assert "no server running" in caught.value.problem or "error connecting" in caught.value.problem
    assert list(tmp_path.iterdir()) == []


@needs_tmux
async def test_callers_tmux_variable_is_ignored_with_a_socket(
    server: TmuxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TMUX variable pointing elsewhere does not redirect a sink given a socket name."""
    await server.new_session("mgr")
    monkeypatch.setenv("TMUX", "/nonexistent/tmux-socket,1,0")
    with trio.fail_after(15):
        await server.sink().send(COMPLETE)
    assert await server.option("mgr", "@ipc_last_event") == "task_complete"


def _fake_tmux(tmp_path: Path, body: str) -> str:
    script = tmp_path / "tmux"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


async def test_a_slow_tmux_is_a_retryable_timeout(tmp_path: Path) -> None:
    """A tmux that does not answer in time is killed and reported as retryable."""
    sink = TmuxSink("mgr", tmux=_fake_tmux(tmp_path, "exec sleep 60"), timeout=0.2)
    with trio.fail_after(15), pytest.raises(SinkError, match="did not answer") as caught:
        await sink.send(COMPLETE)
    assert caught.value.retryable


async def test_a_refused_command_is_not_retryable(tmp_path: Path) -> None:
    """An error other than a missing target will not go away by retrying."""
    fake = _fake_tmux(tmp_path, "echo 'unknown command: set-option' >&2; exit 1")
    with trio.fail_after(15), pytest.raises(SinkError) as caught:
        await TmuxSink("mgr", tmux=fake).send(COMPLETE)
    assert not caught.value.retryable
    assert caught.value.problem == "unknown command: set-option"


async def test_an_overlong_command_line_is_not_typed(tmp_path: Path) -> None:
    """A line a terminal would cut short is refused, not typed in part."""
    called = tmp_path / "called"
    fake = _fake_tmux(tmp_path, f"touch {shlex.quote(str(called))}")
    sink = TmuxSink("mgr", "command", command="echo {title}", tmux=fake)
    with trio.fail_after(15), pytest.raises(SinkError, match="4000") as caught:
        await sink.send(child("task_start", taskId="T-1", title="é" * MAX_COMMAND_BYTES))
    assert not caught.value.retryable
    assert not called.exists()
    with trio.fail_after(15):
        await sink.send(child("task_start", taskId="T-1", title="é" * 1000))
    assert called.exists()


# -- configuration ------------------------------------------------------------------


@pytest.mark.parametrize("target", ["", "a:b:c", "mgr:1.2.3", "mgr.1", "-mgr", "a\nb", "=:1"])
def test_bad_targets_are_config_errors(target: str) -> None:
    """A target that cannot name a tmux pane is refused when the sink is built."""
    with pytest.raises(ConfigError, match="target"):
        TmuxSink(target)


@pytest.mark.parametrize(
    ("target", "session", "pane"),
    [
        ("mgr", "=mgr", "=mgr:"),
        ("mgr:2", "=mgr", "=mgr:2"),
        ("mgr:editor.1", "=mgr", "=mgr:editor.1"),
        ("=mgr:.1", "=mgr", "=mgr:.1"),
        ("$3:1", "$3", "$3:1"),
    ],
)
def test_targets_match_sessions_exactly(target: str, session: str, pane: str) -> None:
    """Session names get tmux's exact-match prefix; ids stay as they are."""
    parsed = TmuxTarget.parse(target)
    assert parsed.session_target == session
    assert parsed.pane_target == pane


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"action": "command"}, "command"),
        ({"action": "notify", "command": "true"}, "command"),
        ({"action": "command", "command": "cat {raw}"}, "command"),
        ({"socket_name": "a", "socket_path": "/tmp/b"}, "socket_name"),
        ({"option": "ipc_last"}, "option"),
        ({"tmux": "no-such-tmux-program"}, "tmux"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_settings_are_config_errors(options: dict[str, Any], where: str) -> None:
    """Settings that could never work are refused when the sink is built."""
    with pytest.raises(ConfigError) as caught:
        TmuxSink("mgr", **options)
    assert caught.value.where == where


def test_raw_is_refused_without_allow_raw_command() -> None:
    """{raw} types the whole event, so it needs an explicit opt-in."""
    with pytest.raises(ConfigError, match=r"\{raw\}.*allow_raw_command"):
        TmuxSink("mgr", "command", command="handle {raw}")
    assert CommandTemplate.parse("handle {raw}", allow_raw=True).names == {"raw"}


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("echo {nope}", r"unknown placeholder \{nope\}"),
        ("echo {data}", r"unknown placeholder \{data\}"),
        ("echo {data.a[0]}", "unknown placeholder"),
        ('echo "{title}"', "inside quotes"),
        ("echo '{title}'", "inside quotes"),
        ("echo ${title}", r"after '\\' or '\$'"),
        ("echo \\{title}", r"after '\\' or '\$'"),
        ("echo `echo {title}`", "backticks"),
        ('echo "$(echo "{title}")"', "command substitution in double quotes"),
        ('echo "`date`" {title}', "command substitution in double quotes"),
        ("echo 'open", "ends inside quotes"),
        ("echo {title!r}", "bare"),
        ("echo {title:>9}", "bare"),
        ("echo {", "literal braces"),
        ("echo {title}\necho", "one line"),
        ("   ", "empty"),
    ],
)
def test_bad_templates_are_config_errors(template: str, problem: str) -> None:
    """Templates whose values could escape their quotes are refused up front."""
    with pytest.raises(ConfigError, match=problem):
        CommandTemplate.parse(template)


@pytest.mark.parametrize(
    "template",
    [
        "echo \\${title}",
        "echo \\\\{title}",
        "echo $(echo {title}) `date` {title}",
        "echo \"$HOME\" '$(x)' --id={task_id}{title}",
        'echo "$(date)"',
        "echo ${{var:-x}} {{a,b}} {title}",
    ],
)
def test_good_templates_are_accepted(template: str) -> None:
    """Placeholders outside quotes are fine, wherever a word may continue."""
    CommandTemplate.parse(template)


def test_template_values_come_from_the_event() -> None:
    """Each placeholder reads the event's JSON form; a missing value is ''."""
    template = CommandTemplate.parse(
        "run {event} {program} {seq} {task_id} {title} {data.iteration} {data.nope} "
        "{{literal}} --id={message_id} {summary}"
    )
    event = child("task_start", seq=7, taskId="T-1", title="Two words", iteration=3)
    line = template.render(placeholder_values(event, template.names))
    assert shlex.split(line) == [
        "run",
        "task_start",
        "loopwork",
        "7",
        "T-1",
        "Two words",
        "3",
        "",
        "{literal}",
        f"--id={event.message_id}",
        "▶️ T-1 Two words",
    ]


# -- the quoting promise, for any values -----------------------------------------------

NAMES = ("title", "task_id", "data.note")
LITERAL = st.text("abcXYZ019_./=,+-:@%", min_size=1, max_size=6)
PART = LITERAL | st.sampled_from(NAMES).map(lambda name: "{" + name + "}")
WORDS = st.lists(st.lists(PART, min_size=1, max_size=3).map("".join), min_size=1, max_size=5)
VALUES = st.fixed_dictionaries(
    {name: st.text(st.characters(exclude_categories=())) for name in NAMES}
)


def _expected(words: list[str], values: dict[str, str]) -> list[str]:
    """The words a shell must see: the template's, with each value as plain text."""
    expected = []
    for word in words:
        for name in NAMES:
            word = word.replace("{" + name + "}", "\0" + name + "\0")
        pieces = word.split("\0")
        expected.append(
            "".join(terminal_safe(values[p]) if i % 2 else p for i, p in enumerate(pieces))
        )
    return expected


@given(words=WORDS, values=VALUES)
def test_values_never_add_shell_words_or_operators(
    words: list[str], values: dict[str, str]
) -> None:
    """Split like a shell, the rendered line is exactly the template's words."""
    line = CommandTemplate.parse(" ".join(words)).render(values)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    assert list(lexer) == _expected(words, values)
    assert terminal_safe(line) == line


@settings(max_examples=40, deadline=None)
@given(words=WORDS, values=VALUES)
def test_a_real_shell_sees_exactly_the_values(words: list[str], values: dict[str, str]) -> None:
    """``sh`` itself, given the rendered line, passes each word through unchanged."""
    line = CommandTemplate.parse("printf '%s\\0' " + " ".join(words)).render(values)
    result = subprocess.run(["sh", "-c", line], capture_output=True, check=True, timeout=30)
    assert result.stdout.decode().split("\0")[:-1] == _expected(words, values)


# -- through supervise ---------------------------------------------------------------


@needs_tmux
async def test_supervise_notifies_a_session_that_appears_later(
    server: TmuxServer, tmp_path: Path
) -> None:
    """A route to a session that does not exist yet is retried until it appears;
    the session that exists is told at once."""
    from conftest import ROOT, SUPERVISE, clean_env
    from conftest import child as child_command

    await server.new_session("mgr")
    config = tmp_path / "s.toml"
    routes = "".join(
        f"""
[[routes]]
name = "{session}"
events = ["task_failed"]
ttl = 60
retry = {{ initial = 0.05, cap = 0.2 }}
sink = {{ type = "tmux", target = "{session}", socket_name = "{server.socket_name}" }}
"""
        for session in ("mgr", "late")
    )
    config.write_text(
        f"""
drain_timeout = 30
[journal]
enabled = false
[programs.loop]
command = {json.dumps(child_command("frames", "2", "task_failed"))}
pty = false
restart = "no"
{routes}"""
    )
    process = await trio.lowlevel.open_process(
        [*SUPERVISE, "--config", str(config)],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    stderr = b""
    try:
        expected = "❌ T-1 task 1"
        assert await eventually(lambda: _option_is(server, "mgr", expected)) == expected
        assert await server.option("late", "@ipc_last") is None  # no such session yet
        # supervise's own line: the route to "late" has tried and failed once.
        refused = b"route late: tmux:late:notify: can't find session"
        with trio.fail_after(15):
            while refused not in stderr:
                chunk = await process.stderr.receive_some()
                assert chunk, stderr
                stderr += chunk
        await server.new_session("late")
        assert await eventually(lambda: _option_is(server, "late", expected)) == expected
        with trio.fail_after(30):
            async for chunk in process.stderr:
                stderr += chunk
            status = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stderr.aclose()
    assert status == 0, stderr
    assert refused in stderr


async def _option_is(server: TmuxServer, session: str, value: str) -> str | None:
    found = await server.option(session, "@ipc_last")
    return found if found == value else None
