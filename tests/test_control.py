"""The control socket and ``supervise ctl``, on real sockets with real children.

Each test gets a short private runtime directory (unix socket paths must stay
under 108 bytes), runs ``serve_control`` over ``ProgramSupervisor``s in its own
trio run, and drives the blocking client ``_ctl.main`` in a worker thread.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio
from conftest import child, pid_alive

from supervisor import Event, JournalConfig, ProgramConfig, Supervisor
from supervisor._cli import ctl as _ctl
from supervisor._control.server import _MAX_REQUEST, serve_control
from supervisor._core.errors import ConfigError
from supervisor._core.events import EventStamper
from supervisor._core.messages import parse_message
from supervisor._paths import control_dir, prepare_control_dir
from supervisor._process.program import ProgramSupervisor
from supervisor._routing.hub import EventHub
from supervisor.testing import CapturingSink, new_fds, open_fds, wait_until

MESSAGE_ID = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def control(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR short enough for socket paths; the control dir inside it."""
    root = Path(tempfile.mkdtemp(prefix="ipc"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(root))
    yield root / "ipc-supervisor"
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Instance:
    path: Path
    hub: EventHub
    programs: dict[str, ProgramSupervisor]
    delivered: list[Event]
    sup: Supervisor

    def program(self) -> ProgramSupervisor:
        (program,) = self.programs.values()
        return program


@asynccontextmanager
async def running(
    control: Path, *configs: ProgramConfig, instance: str = "test", journal: Path | None = None
) -> AsyncIterator[Instance]:
    """A supervise-like run: a Supervisor with its control server.

    At the end every program is stopped and its child waited for.
    """
    capture = CapturingSink()
    sup = Supervisor(
        configs,
        outputs={config.program_name: None for config in configs},
        journal=JournalConfig(path=journal) if journal is not None else None,
        keep_alive=True,
        exit_when_settled=False,
    )
    sup.route("capture", capture, queue=100_000)
    path = control / f"{instance}.sock"
    prepare_control_dir(control)
    state = Instance(path, sup.hub, sup.programs, capture.events, sup)

    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await nursery.start(serve_control, path, sup)
        try:
            yield state
        finally:
            sup.stop()
            with trio.move_on_after(15):
                await until(lambda: all(p.pid is None for p in sup.programs.values()))
            nursery.cancel_scope.cancel()


def asker(out: Path, name: str = "asker") -> ProgramConfig:
    return ProgramConfig(command=tuple(child("control_asker", str(out))), name=name, restart="no")


async def until(predicate: Callable[[], bool]) -> None:
    """``wait_until`` with a bound for real children (starting one takes a while)."""
    await wait_until(predicate, timeout=30)


async def asked(program: ProgramSupervisor) -> int:
    """Wait until the child's question is pending; return the child's pid."""
    await until(lambda: bool(program.pending_questions()) and program.pid is not None)
    assert program.pid is not None
    return program.pid


async def ctl(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``supervise ctl ARGS`` in a thread (it blocks); return status, stdout, stderr."""
    status = await trio.to_thread.run_sync(_ctl.main, list(args), abandon_on_cancel=True)
    out, err = capfd.readouterr()
    return status, out, err


# -- status, start, stop, restart ---------------------------------------------


async def test_status_table_shows_every_program(
    control: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """status prints one aligned row per program, in config order, with - for nothing."""
    with trio.fail_after(30):
        configs = asker(tmp_path / "a", "alpha"), asker(tmp_path / "b", "beta")
        async with running(control, *configs) as run:
            pids = [await asked(p) for p in run.programs.values()]
            status, out, err = await ctl(capfd, "status")
    assert (status, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == [
        *("PROGRAM", "STATE", "PID", "UPTIME", "RESTARTS", "LAST", "EXIT", "TASKS", "PENDING")
    ]
    assert len(rows) == 2
    for row, name, pid in zip(rows, ("alpha", "beta"), pids, strict=True):
        cells = row.split()
        assert cells[:3] == [name, "running", str(pid)]
        assert cells[3].endswith("s")
        assert cells[4:] == ["0", "-", "0", "1"]
    assert header.index("PID") == rows[0].index(str(pids[0]))


async def test_stop_start_and_restart(
    control: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """stop ends the child and leaves it stopped, start runs it again, restart replaces it."""
    with trio.fail_after(30):
        async with running(control, asker(tmp_path / "out")) as run:
            program = run.program()
            first = await asked(program)

            assert await ctl(capfd, "stop", "asker") == (0, "asker: stopped\n", "")
            assert not pid_alive(first)
            assert program.status().state == "stopped"
            # A second stop changes nothing (and does not start it again).
            assert await ctl(capfd, "stop", "asker") == (0, "asker: stopped\n", "")

            status, out, err = await ctl(capfd, "start", "asker")
            assert status == 0, err
            second = program.pid
            assert second is not None
            assert second != first
            assert out == f"asker: running (pid {second})\n"

            status, _, err = await ctl(capfd, "start", "asker")
            assert (status, err) == (1, "supervise: asker is already running\n")

            status, out, _ = await ctl(capfd, "restart", "asker")
            third = program.pid
            assert status == 0
            assert third is not None
            assert third != second
            assert out == f"asker: running (pid {third})\n"
            assert not pid_alive(second)
            assert program.status().restarts == 1


async def test_unknown_program_is_named(
    control: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A program that is not supervised is refused with the list of those that are."""
    with trio.fail_after(30):
        async with running(control, asker(tmp_path / "out")):
            status, out, err = await ctl(capfd, "restart", "nope")
    assert (status, out) == (1, "")
    assert err == "supervise: no program named 'nope' (programs: asker)\n"


# -- questions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "written"),
    [(["approve"], "y"), (["deny"], "n"), (["--raw", "maybe later"], "maybe later")],
)
async def test_answer_reaches_the_child(
    control: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    answer: list[str],
    written: str,
) -> None:
    """answer writes the mapped word (deny is n) to the child's stdin, once."""
    out = tmp_path / "answer"
    with trio.fail_after(30):
        async with running(control, asker(out)) as run:
            await asked(run.program())
            status, stdout, err = await ctl(capfd, "answer", MESSAGE_ID, *answer)
            assert (status, err) == (0, "")
            assert stdout == f'answered {MESSAGE_ID}: wrote "{written}"\n'
            await until(lambda: out.exists() and out.read_text().endswith("\n"))
            status, stdout, err = await ctl(capfd, "answer", MESSAGE_ID, "approve")
    assert out.read_text() == written + "\n"
    assert (status, stdout) == (1, "")
    assert err.startswith(f"supervise: question {MESSAGE_ID}: already answered by ctl")


async def test_unknown_question_and_bad_response(
    control: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """An id nobody asked, and a word an approval does not take, are one-line errors."""
    with trio.fail_after(30):
        async with running(control, asker(tmp_path / "out")) as run:
            await asked(run.program())
            unknown = await ctl(capfd, "answer", "nope", "approve")
            invalid = await ctl(capfd, "answer", MESSAGE_ID, "sure")
            assert run.program().pending_questions()
    assert unknown == (1, "", "supervise: question nope: no such question\n")
    assert invalid[0] == 1
    assert invalid[2].startswith(f'supervise: question {MESSAGE_ID}: "sure" is not an answer')


async def test_pending_lists_the_question(
    control: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """pending shows who asks what and how to answer; nothing once it is answered.

    The child then exits, and ``ctl stop`` leaves it exited rather than starting it.
    """
    with trio.fail_after(30):
        async with running(control, asker(tmp_path / "out")) as run:
            await asked(run.program())
            status, out, _ = await ctl(capfd, "pending")
            await ctl(capfd, "answer", MESSAGE_ID, "deny")
            after = await ctl(capfd, "pending")
            # The child exits once answered; stopping it then must not start it again.
            await until(lambda: run.program().status().state == "exited")
            stopped = await ctl(capfd, "stop", "asker")
            assert run.program().pid is None
    assert status == 0
    lines = out.splitlines()
    assert lines[:5] == [
        MESSAGE_ID,
        "  asked by:  asker",
        "  kind:      approval_request (severity high)",
        "  text:      delete",
        "  choices:   approve, deny",
    ]
    # 30 s announced, answered by default 3 s before the child's own timer.
    assert lines[5].startswith("  time left: 2")
    assert lines[5].endswith("(waiting 0s)")
    assert after == (0, "no pending questions\n", "")
    assert stopped == (0, "asker: exited\n", "")


# -- tail -------------------------------------------------------------------------


async def test_tail_streams_matching_events(
    control: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """tail PROGRAM:GLOB prints the matching events as JSON lines, and ends with supervise."""
    with trio.fail_after(30):
        async with running(control, asker(tmp_path / "out")) as run:
            program = run.program()
            first = await asked(program)
            statuses: list[int] = []

            async def tail() -> None:
                argv = ["tail", "asker:process_st*"]
                status = await trio.to_thread.run_sync(_ctl.main, argv, abandon_on_cancel=True)
                statuses.append(status)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(tail)
                await until(lambda: run.hub.subscribers == 1)
                seen = len(run.delivered)
                program.request_restart("test")
                await until(lambda: any(e.event == "process_start" for e in run.delivered[seen:]))
                await run.hub.aclose()  # as when supervise stops: the tail ends
    out, err = capfd.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    assert (statuses, err) == ([0], "")
    assert {e["event"] for e in events} == {"process_state", "process_start"}
    assert all(e["program"] == "asker" for e in events)
    assert events[0]["data"] == {"from": "running", "to": "stopping", "reason": "test"}
    (start,) = (e for e in events if e["event"] == "process_start")
    assert start["data"]["pid"] not in (first, None)


async def test_tail_exits_quietly_on_control_c(control: Path, tmp_path: Path) -> None:
    """Control-C ends a real ``ctl tail`` process with status 0 and no traceback."""
    stderr = tmp_path / "stderr"
    # Control-C's usual handler, even if this test runs where SIGINT is ignored
    # (a background job), which the child would inherit.
    code = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from supervisor._cli.ctl import main; sys.exit(main(sys.argv[1:]))"
    )
    with trio.fail_after(30):
        async with running(control) as run:
            with stderr.open("wb") as err:
                process = await trio.lowlevel.open_process(
                    [sys.executable, "-c", code, "tail"], stderr=err, stdout=subprocess.DEVNULL
                )
            try:
                await until(lambda: run.hub.subscribers == 1)
                process.send_signal(signal.SIGINT)
                status = await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    assert status == 0
    assert stderr.read_bytes() == b""


async def test_hub_patterns_drops_and_close() -> None:
    """Globs pick event or program:event; a full subscriber loses events and is told how many."""
    stamp = {name: EventStamper(name).stamp for name in ("loop", "other")}

    def event(program: str, name: str) -> Event:
        message = parse_message(
            {"type": "ipc", "event": name, "data": {"taskId": "T", "message": "m"}}
        )
        return stamp[program](message, 0)

    hub = EventHub()
    stream = [event("loop", "task_start"), event("other", "task_start"), event("loop", "log")]
    with (
        hub.subscribe("loop:task_*") as loop_tasks,
        hub.subscribe("task_*") as tasks,
        hub.subscribe(None) as everything,
        hub.subscribe("*:lo?") as logs,
    ):
        await hub.send_batch(stream)
        await hub.aclose()
        assert [e async for e in loop_tasks] == stream[:1]
        assert [e async for e in tasks] == stream[:2]
        assert [e async for e in everything] == stream
        assert [e async for e in logs] == stream[2:]
    assert hub.subscribers == 0

    hub = EventHub()
    with hub.subscribe(buffer=2) as slow:
        events = [event("loop", "task_start") for _ in range(6)]
        for e in events[:5]:
            await hub.send(e)
        assert [slow.receive_nowait(), slow.receive_nowait()] == events[:2]
        await hub.send(events[5])
        marker, last = slow.receive_nowait(), slow.receive_nowait()
    assert marker.event == "events_dropped"
    assert (marker.seq, marker.source) == (0, "supervisor")
    assert marker.data.model_dump() == {
        "count": 3,
        "first_seq": events[2].seq,
        "last_seq": events[4].seq,
    }
    assert last == events[5]


# -- the socket and its directory -----------------------------------------------------


async def test_socket_is_private_and_removed_at_the_end(control: Path) -> None:
    """The directory is 0700, the socket 0600; the socket and every fd go with the server."""
    fds = open_fds()
    with trio.fail_after(30):
        async with running(control) as run:
            info = run.path.stat()
            assert stat.S_ISSOCK(info.st_mode)
            assert stat.S_IMODE(info.st_mode) == 0o600
            assert stat.S_IMODE(control.stat().st_mode) == 0o700
            async with await trio.open_unix_socket(str(run.path)) as stream:
                await stream.send_all(b'{"cmd":"status"}\n')
                assert await stream.receive_some() == b'{"ok":true,"result":[]}\n'
            # A client that stays connected does not keep the server alive.
            lingering = await trio.open_unix_socket(str(run.path))
        await lingering.aclose()
    assert not run.path.exists()
    assert new_fds(fds) == set()


@pytest.mark.parametrize("mode", [0o777, 0o720, 0o702])
def test_directory_writable_by_others_is_refused(control: Path, mode: int) -> None:
    """Someone else who could write there could swap our socket for theirs."""
    control.mkdir(parents=True)
    control.chmod(mode)
    with pytest.raises(ConfigError, match="is writable by others; refusing to use it"):
        prepare_control_dir(control)


def test_control_dir_follows_xdg() -> None:
    """XDG_RUNTIME_DIR first, then XDG_STATE_HOME, then ~/.local/state; relative paths ignored."""
    assert control_dir({"XDG_RUNTIME_DIR": "/run/user/7"}) == Path("/run/user/7/ipc-supervisor")
    assert control_dir({"XDG_RUNTIME_DIR": "rel", "XDG_STATE_HOME": "/s"}) == Path(
        "/s/ipc-supervisor"
    )
    assert control_dir({"HOME": "/home/u"}) == Path("/home/u/.local/state/ipc-supervisor")


def _stale_socket(path: Path) -> None:
    """Leave a socket file nobody listens on, as a killed supervise does."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))


async def test_stale_socket_is_reported_then_replaced(
    control: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """ctl says a dead instance is not running; a new server takes its socket over."""
    path = control / "test.sock"
    _stale_socket(path)
    with trio.fail_after(30):
        status, _, err = await ctl(capfd, "status")
        assert status == 1
        assert err == f"supervise: supervise instance 'test' is not running (stale socket {path})\n"
        async with running(control):
            assert await ctl(capfd, "status") == (0, ctl_header(), "")


def ctl_header() -> str:
    return "PROGRAM  STATE  PID  UPTIME  RESTARTS  LAST EXIT  TASKS  PENDING\n"


async def test_live_socket_refuses_a_second_server(
    control: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A second supervise with the same instance name fails and leaves the first alone."""
    with trio.fail_after(30):
        async with running(control) as run:
            with pytest.raises(ConfigError, match="another supervise instance is running there"):
                await serve_control(run.path, run.sup)
            assert await ctl(capfd, "status") == (0, ctl_header(), "")


async def test_bad_requests_get_one_line_errors(control: Path) -> None:
    """Bad requests are answered in order on the same connection, and the server carries on."""
    requests = [
        b"not json",
        b"[1]",
        b'{"cmd":"nope"}',
        b'{"cmd":"stop"}',
        b'{"cmd":"stop","program":"x"}',
        b'{"cmd":"answer","message_id":5,"response":"y"}',
        b'{"cmd":"status"}',
    ]
    with trio.fail_after(30):
        async with running(control) as run:
            stream = await trio.open_unix_socket(str(run.path))
            async with stream:
                await stream.send_all(b"\n".join(requests) + b"\n")
                data = b""
                while data.count(b"\n") < len(requests):
                    data += await stream.receive_some()
            async with await trio.open_unix_socket(str(run.path)) as oversize:
                await oversize.send_all(b"x" * (_MAX_REQUEST + 5000))
                too_long = await oversize.receive_some()
    replies = [json.loads(line) for line in data.splitlines()]
    errors = [reply.get("error") for reply in replies]
    assert errors[0].startswith("request is not JSON: ")
    assert errors[1:6] == [
        "request must be a JSON object",
        'unknown command "nope" (commands: answer, dead, info, input, pending, reopen-logs, '
        "restart, retry, routes, start, status, stop, tail)",
        "missing field 'program'",
        "no program named 'x' (programs: )",
        "field 'message_id' must be a string",
    ]
    assert replies[6] == {"ok": True, "result": []}
    assert json.loads(too_long) == {
        "ok": False,
        "error": f"request longer than {_MAX_REQUEST} bytes",
    }


# -- finding the instance ---------------------------------------------------------------


async def test_instance_discovery(control: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """None running, one, several (pick with --instance), and a stale one beside a live one."""
    with trio.fail_after(30):
        assert await ctl(capfd, "status") == (
            1,
            "",
            "supervise: no supervise instance is running\n",
        )
        async with running(control, instance="a"):
            assert await ctl(capfd, "status") == (0, ctl_header(), "")
            async with running(control, instance="b"):
                status, _, err = await ctl(capfd, "status")
                assert (status, err) == (
                    2,
                    "supervise: several supervise instances are running (a, b): "
                    "pick one with --instance\n",
                )
                assert await ctl(capfd, "--instance", "b", "status") == (0, ctl_header(), "")
                status, _, err = await ctl(capfd, "--instance", "c", "status")
                assert (status, err) == (
                    1,
                    "supervise: supervise instance 'c' is not running (instances: a, b)\n",
                )
            _stale_socket(control / "old.sock")
            assert await ctl(capfd, "status") == (0, ctl_header(), "")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing or unknown subcommand, or a path as instance name, is a usage error."""
    assert _ctl.main([]) == 2
    assert _ctl.main(["frobnicate"]) == 2
    assert _ctl.main(["--instance", "../elsewhere", "status"]) == 2
    assert _ctl.main(["--help"]) == 0
    assert "usage: supervise ctl" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0s"), (59.9, "59s"), (65, "1m05s"), (3725, "1h02m"), (90_061, "1d01h")],
)
def test_durations_are_short(seconds: float, text: str) -> None:
    """Uptimes read like 1m05s in the status table."""
    assert _ctl.format_duration(seconds) == text


def test_no_fds_leak_in_the_client(control: Path) -> None:
    """The client closes its socket even when the instance is gone."""
    _stale_socket(control / "test.sock")
    before = open_fds()
    assert _ctl.main(["status"]) == 1
    assert new_fds(before) == set()


# -- routes, dead letters, replay ------------------------------------------------------


def frames_program(count: int, name: str = "gen") -> ProgramConfig:
    return ProgramConfig(command=tuple(child("frames", str(count))), name=name, pty=False)


async def test_tail_since_replays_the_journal_then_goes_live(
    control: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """tail --since SEQ: journaled events after SEQ, then live ones, none twice or missing."""
    with trio.fail_after(30):
        async with running(control, frames_program(6), journal=tmp_path / "j.db") as run:
            await until(lambda: sum(e.event == "process_exit" for e in run.delivered) == 1)
            past = [e.seq for e in run.delivered]
            lines: list[bytes] = []

            def tail() -> None:
                with _ctl._Connection("test", run.path, timeout=None) as connection:
                    for line in connection.events("gen:*", since=2):
                        lines.append(line)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(trio.to_thread.run_sync, tail, abandon_on_cancel=True))
                await until(lambda: run.hub.subscribers == 1)
                # Later events of the first run may arrive live too: at least these.
                await until(lambda: len(lines) >= len(past) - 2)
                run.sup.start("gen")  # a second run: its events arrive live
                await until(lambda: sum(e.event == "process_exit" for e in run.delivered) == 2)
                await until(lambda: run.sup.programs["gen"].settled)  # no more events now
                await until(lambda: len(lines) == len(run.delivered) - 2)
                seen = len(lines)
                # Closing the hub still hands the tail all it holds, then ends it:
                # a late duplicate would be in `lines` when the thread is done.
                await run.hub.aclose()
    seqs = [json.loads(line)["seq"] for line in lines]
    # An event delivered to the route just as the hub closed may miss the
    # tail; none may be missing before it, come twice or out of order.
    assert len(seqs) >= seen
    assert seqs == [e.seq for e in run.delivered][2 : 2 + len(seqs)]
    assert seqs[: len(past) - 2] == past[2:]


async def test_routes_dead_and_retry(
    control: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """ctl routes shows the counters; ctl dead lists what a route gave up on; ctl retry
    delivers it once the sink works again."""
    sink = CapturingSink("flaky")
    sink.fail_next = 10**6
    capture = CapturingSink()
    sup = Supervisor(
        [frames_program(2)],
        outputs={"gen": None},
        journal=JournalConfig(path=tmp_path / "j2.db"),
        exit_when_settled=False,
        report=lambda line: None,
    )
    sup.route("flaky", sink, events=["task_*"], retry={"max_attempts": 2, "initial": 0.01})
    sup.route("capture", capture)
    path = control / "dead.sock"
    prepare_control_dir(control)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await nursery.start(serve_control, path, sup)
            await until(lambda: capture.names.count("delivery_dead") == 2)

            status, out, err = await ctl(capfd, "--instance", "dead", "routes")
            assert (status, err) == (0, "")
            header, flaky, captured = out.splitlines()
            assert header.split()[:3] == ["ROUTE", "SINK", "QUEUED"]
            assert flaky.split() == [
                *("flaky", "flaky", "0", "0", "2", "0", "2"),
                *["failing", "on", "purpose", "(fail_next)"],
            ]
            assert captured.split()[0] == "capture"

            status, out, err = await ctl(capfd, "--instance", "dead", "dead")
            rows = out.splitlines()
            assert rows[0].split() == [
                "ID",
                "ROUTE",
                "SEQ",
                "EVENT",
                "PROGRAM",
                "ATTEMPTS",
                "ERROR",
            ]
            assert [row.split()[1:5] for row in rows[1:]] == [
                ["flaky", str(e.seq), "task_complete", "gen"]
                for e in capture.events
                if e.event == "task_complete"
            ]
            assert all(
                row.endswith("  2         failing on purpose (fail_next)") for row in rows[1:]
            )

            sink.fail_next = 0
            status, out, err = await ctl(capfd, "--instance", "dead", "retry", "flaky")
            assert (status, out, err) == (0, "queued 2 dead letter(s) again\n", "")
            await until(lambda: len(sink.events) == 2)
            status, out, err = await ctl(capfd, "--instance", "dead", "dead")
            assert out == "no dead letters\n"
            status, out, err = await ctl(capfd, "--instance", "dead", "dead", "nope")
            assert (status, err) == (
                1,
                "supervise: no route named 'nope' (routes: flaky, capture)\n",
            )
            nursery.cancel_scope.cancel()
    assert [e.event for e in sink.events] == ["task_complete", "task_complete"]
