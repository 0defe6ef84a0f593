"""ts-ipc's kept tmux control-mode connection, against a real tmux server."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import eventually
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor._ipc import tmux
from supervisor._ipc.control_mode import ControlConnection

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def plain_tmux(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["tmux", "-f", os.devnull, *args], capture_output=True, timeout=10)


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A private tmux server with one session, ``work``; killed at the end."""
    sockets = tmp_path_factory.mktemp("tmux")
    saved = {name: os.environ.get(name) for name in ("TMUX", "TMUX_PANE", "TMUX_TMPDIR")}
    os.environ.pop("TMUX", None)
    os.environ.pop("TMUX_PANE", None)
    os.environ["TMUX_TMPDIR"] = str(sockets)
    try:
        assert plain_tmux("new-session", "-d", "-s", "work", "sh").returncode == 0
        yield
    finally:
        plain_tmux("kill-server")
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# Text tmux's command parser would act on if it were not quoted: quotes,
# separators, variables, home, comments, braces, formats, backslashes.
hostile = st.text(
    alphabet=st.sampled_from(list("ab '\"\\;$~#{}%é漢\t`()|&*?[]!=")), min_size=0, max_size=30
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=hostile)
def test_any_single_line_text_reaches_tmux_as_one_argument(server: None, text: str) -> None:
    with ControlConnection(tmux.tmux_command) as connection:
        answer = connection.run(["set-option", "-g", "@probe", tmux.argument(text)])
        assert answer == (True, b"")
    shown = plain_tmux("show-options", "-gv", "@probe")
    assert shown.stdout.decode().removesuffix("\n") == text


def test_requests_are_paired_with_their_answers(server: None) -> None:
    with tmux.kept_connection():
        combined = tmux.run_tmux(
            "display-message", "-p", "one", ";", "display-message", "-p", "two"
        )
        assert (combined.returncode, combined.stdout) == (0, b"one\ntwo\n")
        failed = tmux.run_tmux(
            "display-message", "-p", "first", ";", "set-option", "-t", "=nope:", "@x", "1", ";",
            "display-message", "-p", "never",
        )  # fmt: skip
        assert failed.returncode == 1
        assert b"no such session" in failed.stderr
        assert tmux.run_tmux("display-message", "-p", "after").stdout == b"after\n"
        with pytest.raises(tmux.NoSessionError, match="session 'nope'"):
            tmux.pane_of("nope")


def test_a_line_break_goes_by_process_and_a_lost_client_is_replaced(server: None) -> None:
    with tmux.kept_connection() as connection:
        assert connection.run(["set-option", "-g", "@x", "two\nlines"]) is None
        assert tmux.run_tmux("set-option", "-g", "@x", "two\nlines").returncode == 0
        assert plain_tmux("show-options", "-gv", "@x").stdout == b"two\nlines\n"
        assert tmux.run_tmux("display-message", "-p", "up").stdout == b"up\n"
        plain_tmux("detach-client", "-s", "work")  # ends every client of it: ours
        # tmux lists a detached client until its process has gone.
        eventually(lambda: plain_tmux("list-clients").stdout == b"")
        assert tmux.run_tmux("display-message", "-p", "again").stdout == b"again\n"


def test_its_own_client_is_not_a_person_to_notify(server: None) -> None:
    with tmux.kept_connection():
        tmux.run_tmux("display-message", "-p", "attach")
        listed = plain_tmux("list-clients", "-F", "#{client_control_mode}")
        assert listed.stdout == b"1\n"
        assert tmux.clients_of("work") == []
        sessions, clients = tmux.sessions_and_clients()
        assert (sessions, clients) == ({"work"}, {})
        assert tmux.notify("work", "hello", "ci") == 0
    assert plain_tmux("show-options", "-t", "=work:", "-v", "@ipc_last").stdout == b"hello\n"
    assert plain_tmux("list-clients").stdout == b""  # closed with the block


def test_no_session_means_one_process_per_request(tmp_path: Path) -> None:
    saved = os.environ.get("TMUX_TMPDIR")
    os.environ["TMUX_TMPDIR"] = str(tmp_path)
    try:
        with tmux.kept_connection() as connection:
            assert connection.run(["display-message", "-p", "x"]) is None
            with pytest.raises(tmux.NoSessionError):
                tmux.pane_of("anything")
    finally:
        if saved is None:
            os.environ.pop("TMUX_TMPDIR", None)
        else:
            os.environ["TMUX_TMPDIR"] = saved
