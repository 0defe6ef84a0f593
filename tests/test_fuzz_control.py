"""A hostile local client against a real supervise's control socket.

One ``supervise`` runs a child for the whole module; hypothesis throws bytes,
broken lines, huge lines, pipelined junk and half-closed connections at its
control socket. The contract: every reply is one JSON line, ``{"ok": ...}``;
after each attack the next well-formed request is answered, the child still
runs with the same pid, and supervise's stderr never shows a traceback or a
failed request.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SUPERVISE, clean_env, read_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor._control.server import MAX_CONNECTIONS
from supervisor.testing import wait_until_sync

PROGRAM = "steady"
_REPLY_TIMEOUT = 10.0
# Lines a broken supervise writes when serving a request goes wrong.
_FAILURE_SIGNS = (b"Traceback", b"request failed", b"internal error", b"control request")


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    socket: Path
    stderr: Path
    pid: int


def _status(path: Path) -> list[dict[str, Any]]:
    """One ``status`` request on a fresh connection; its result."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(_REPLY_TIMEOUT)
        client.connect(str(path))
        client.sendall(b'{"cmd":"status"}\n')
        reply = _read_line(client)
    body = json.loads(reply)
    assert body["ok"] is True, body
    result: list[dict[str, Any]] = body["result"]
    return result


def _read_line(client: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = client.recv(65536)
        assert chunk, f"connection closed before a reply line: {data!r}"
        data += chunk
    return data


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    """supervise over a child that just waits, with the journal and a file route on."""
    root = Path(tempfile.mkdtemp(prefix="ipcfz"))
    env = clean_env()
    env["XDG_RUNTIME_DIR"] = str(root / "run")
    env["XDG_STATE_HOME"] = str(root / "state")
    stderr = root / "stderr"
    waiter = "import time; print('READY', flush=True); time.sleep(600)"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [
                *SUPERVISE,
                "--instance",
                "fuzz",
                "--name",
                PROGRAM,
                "--events",
                str(root / "events.jsonl"),
                "--",
                sys.executable,
                "-c",
                waiter,
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        read_until(proc, b"READY")
        path = root / "run" / "ipc-supervisor" / "fuzz.sock"

        def running() -> dict[str, Any] | None:
            try:
                (status,) = _status(path)
            except OSError:
                return None
            return status if status["state"] == "running" else None

        status = wait_until_sync(
            running, timeout=20, interval=0.05, message="supervise never reached RUNNING"
        )
        assert status is not None
        yield Running(proc, path, stderr, status["pid"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            assert stream is not None
            stream.close()
        shutil.rmtree(root, ignore_errors=True)


def _still_serving(running: Running) -> None:
    """The attack changed nothing: same child, answers, a clean stderr."""
    assert running.proc.poll() is None, "supervise exited"
    (status,) = _status(running.socket)
    assert status["state"] == "running"
    assert status["pid"] == running.pid
    err = running.stderr.read_bytes()
    for sign in _FAILURE_SIGNS:
        assert sign not in err, err.decode(errors="replace")


def _serving(running: Running) -> bool:
    """:func:`_still_serving` as a condition to wait for."""
    try:
        _still_serving(running)
    except AssertionError:
        return False
    return True


def _exchange(path: Path, chunks: list[bytes], *, half_close: bool, read: bool) -> list[bytes]:
    """Send ``chunks``; with ``read``, collect reply lines until supervise closes or goes quiet."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(_REPLY_TIMEOUT)
        client.connect(str(path))
        try:
            for chunk in chunks:
                client.sendall(chunk)
            if half_close:
                client.shutdown(socket.SHUT_WR)
        except OSError:
            return []  # supervise closed first (a request that was too long)
        if not read or not half_close:
            return []  # walk away mid-conversation
        data = b""
        try:
            while chunk := client.recv(65536):
                data += chunk
        except OSError:  # ECONNRESET after an over-long request
            pass
    return data.splitlines()


def _check_replies(lines: list[bytes]) -> None:
    for line in lines:
        body = json.loads(line)
        assert isinstance(body, dict)
        if body.get("ok") is False:
            assert isinstance(body["error"], str)
            assert "\n" not in body["error"]
            assert "internal error" not in body["error"]
        elif "ok" not in body:
            assert "seq" in body  # a tail's event line
        else:
            assert body["ok"] is True


# -- what a hostile client sends ----------------------------------------------------

_json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["approve", "deny", PROGRAM + "x", "*", "[", "task_*", "a:b", "\x00"]),
)
_json_values = st.recursive(
    _json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
# Commands that act on nothing real: never start/stop/restart the real program.
_fields = st.fixed_dictionaries(
    {
        "cmd": st.sampled_from(
            ["status", "pending", "routes", "dead", "retry", "answer", "tail", "stop", "x", ""]
        )
        | _json_values
    },
    optional={
        "program": st.sampled_from(["nobody", "", "\x00"]) | st.integers(),
        "message_id": _json_values,
        "response": _json_values,
        "raw": _json_values,
        "by": _json_values,
        "route": _json_values,
        "ids": _json_values | st.lists(st.integers(min_value=-(2**70), max_value=2**70)),
        "since": _json_values,
        "pattern": _json_values,
    },
)


def _encode(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


_request_lines = st.one_of(
    _fields.map(_encode),
    st.binary(max_size=200),
    st.integers(1, 5000).map(lambda depth: b'{"cmd":' + b"[" * depth + b"]" * depth + b"}"),
    st.integers(1, 60000).map(lambda depth: b"[" * depth),
    st.sampled_from(
        [
            b'{"cmd":"answer","message_id":"\\ud800","response":"approve"}',
            b'{"cmd":"tail","pattern":"\\udfff"}',
            b'{"cmd":"tail","since":100000000000000000000000}',
            b'{"cmd":"retry","ids":[-100000000000000000000000]}',
            b'{"cmd":"dead","route":"\\u0000"}',
            b'{"cmd":"tail","since":1e400}',
            b"\xff\xfe\xfd",
            b"NaN",
            b'"cmd"',
        ]
    ),
)


@st.composite
def attacks(draw: st.DrawFn) -> list[bytes]:
    lines = draw(st.lists(_request_lines, min_size=1, max_size=4))
    separator = draw(st.sampled_from([b"\n", b"\r\n", b"\n\n"]))
    data = separator.join(lines) + draw(st.sampled_from([b"\n", b""]))
    if draw(st.booleans()):
        data += b"x" * draw(st.integers(60000, 70000))  # over the request limit, no newline
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(chunks=attacks(), half_close=st.booleans(), read=st.booleans())
def test_hostile_client_changes_nothing(
    running: Running, chunks: list[bytes], half_close: bool, read: bool
) -> None:
    """Whatever a client sends, replies are JSON lines and supervise carries on."""
    _check_replies(_exchange(running.socket, chunks, half_close=half_close, read=read))
    _still_serving(running)


# -- what fuzzing found -------------------------------------------------------------


def _one_reply(running: Running, request: bytes) -> dict[str, Any]:
    lines = _exchange(running.socket, [request + b"\n"], half_close=True, read=True)
    assert len(lines) == 1, lines
    body: dict[str, Any] = json.loads(lines[0])
    return body


@pytest.mark.parametrize(
    ("request_line", "error"),
    [
        (b"[" * 5000, "request is not JSON: nested too deeply"),
        (
            b'{"cmd":"answer","message_id":"\\ud800","response":"approve"}',
            "request is not JSON text: a string holds a lone surrogate \\ud800",
        ),
        (
            b'{"cmd":"tail","pattern":"\\udcff"}',
            "request is not JSON text: a string holds a lone surrogate \\udcff",
        ),
        (
            b'{"cmd":"tail","since":100000000000000000000000}',
            "field 'since' must be a seq number (a 64-bit integer)",
        ),
        (
            b'{"cmd":"retry","ids":[100000000000000000000000]}',
            "field 'ids' must be a list of dead-letter ids (64-bit integers)",
        ),
    ],
)
def test_refused_requests_get_one_error_line(
    running: Running, request_line: bytes, error: str
) -> None:
    """Deep nesting, lone surrogates and numbers SQLite cannot hold are refused, not crashes."""
    assert _one_reply(running, request_line) == {"ok": False, "error": error}
    _still_serving(running)


def test_ctl_with_undecodable_argument_gets_one_line(running: Running) -> None:
    """``ctl answer`` with bytes that are not UTF-8 in its argument: refused in one line."""
    env = clean_env()
    env["XDG_RUNTIME_DIR"] = str(running.socket.parent.parent)
    result = subprocess.run(
        [*SUPERVISE, "ctl", "--instance", "fuzz", "answer", os.fsdecode(b"\xff"), "approve"],
        capture_output=True,
        timeout=30,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        b"supervise: request is not JSON text: a string holds a lone surrogate \\udcff\n"
    )
    _still_serving(running)


def test_connections_beyond_the_limit_are_refused_then_served_again(running: Running) -> None:
    """Half-open connections cannot use up supervise's file descriptors."""
    held: list[socket.socket] = []
    try:
        for _ in range(MAX_CONNECTIONS):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            held.append(client)
            client.settimeout(_REPLY_TIMEOUT)
            client.connect(str(running.socket))
            client.sendall(b'{"cmd":"sta')  # a request never finished
        # Served connections answer: the last one proves all are being read.
        held[-1].sendall(b'tus"}\n')
        assert json.loads(_read_line(held[-1]))["ok"] is True
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as extra:
            extra.settimeout(_REPLY_TIMEOUT)
            extra.connect(str(running.socket))
            assert json.loads(_read_line(extra)) == {
                "ok": False,
                "error": f"too many control connections (at most {MAX_CONNECTIONS} at once);"
                " try again later",
            }
    finally:
        for client in held:
            client.close()
    # supervise notices the closed connections as it reads them.
    with contextlib.suppress(AssertionError):
        wait_until_sync(lambda: _serving(running), timeout=_REPLY_TIMEOUT, interval=0.05)
    _still_serving(running)  # once more, to fail with what is wrong
