"""RedisStreamSink against a real redis-server on 127.0.0.1, one per test.

Each test's server keeps nothing on disk (``--save '' --appendonly no``) and
is stopped by the test; the sink's entries are read back with XRANGE. The
server can be stopped and started again on the same port, frozen with
SIGSTOP, made a read-only replica or given a password, so that every kind
of failure the sink reports is a real one.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import coredis
import pytest
import trio
from conftest import ROOT, child, popen, read_until, supervise
from coredis.response.types import StreamPending

import adapters.redis_stream
from adapters.redis_stream import RedisStreamSink
from supervisor import ConfigError, Event, SinkError
from supervisor._core.messages import parse_message
from supervisor.sinks import Sink
from supervisor.testing import wait_until

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")

PASSWORD = "pw-Nobody-Guesses-42"
FIELDS = ["event", "program", "seq", "message_id", "source", "received_at", "json"]


def make_event(
    seq: int = 7, event: str = "task_start", program: str = "loopwork", task: str = "FEAT-1"
) -> Event:
    fields = {
        "type": "ipc",
        "event": event,
        "data": {"taskId": task, "title": "Add login"},
        "timestamp": 1_795_236_690_901,
        "messageId": f"msg-{seq}",
    }
    return Event(seq, program, 1_795_236_690_950, "child", parse_message(fields))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A redis-server on 127.0.0.1 that a test can stop, freeze and start again.

    It starts on a free port, keeps nothing on disk, and is ready once it
    logs "Ready to accept connections" and answers a PING.
    """

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        argv = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        self.proc = popen(argv, stdout=subprocess.PIPE)
        read_until(self.proc, b"Ready to accept connections")
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as conn:
            conn.sendall(b"PING\r\n")
            # +PONG, or -NOAUTH from a server with a password: either way, it answers.
            assert conn.recv(100)[:1] in (b"+", b"-")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGCONT)  # in case a test froze it
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def client(self) -> coredis.Redis[bytes]:
        return coredis.Redis.from_url(self.url, password=self.password)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path)
    redis.start()
    yield redis
    redis.stop()


async def entries(server: RedisServer, key: str) -> list[dict[str, bytes]]:
    """The stream's entries, oldest first, each as its fields in order."""
    async with server.client() as client:
        return [
            {_text(name): _bytes(value) for name, value in entry.field_values.items()}
            for entry in await client.xrange(key)
        ]


def read_stream(server: RedisServer, key: str) -> list[dict[str, bytes]]:
    """:func:`entries`, for a test that is not async."""
    return trio.run(entries, server, key)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


async def connections_received(client: coredis.Redis[bytes]) -> int:
    return int(str((await client.info("stats"))["total_connections_received"]))


def task_ids(rows: Sequence[dict[str, bytes]]) -> list[str]:
    return [json.loads(row["json"])["data"]["taskId"] for row in rows]


async def test_each_event_is_an_entry_with_its_fields_and_exact_json(
    server: RedisServer,
) -> None:
    """Events land in order, one entry each, with the named fields and to_json()'s bytes."""
    sink = RedisStreamSink(server.url, "ipc:events")
    assert isinstance(sink, Sink)
    assert sink.name == f"redis:127.0.0.1:{server.port}/0#ipc:events"
    events = [make_event(seq, name) for seq, name in enumerate(("task_start", "task_complete"), 1)]
    with trio.fail_after(10):
        for event in events:
            await sink.send(event)
        await sink.aclose()
        rows = await entries(server, "ipc:events")
    assert [list(row) for row in rows] == [FIELDS] * 2
    for row, event in zip(rows, events, strict=True):
        assert row == {
            "event": event.event.encode(),
            "program": b"loopwork",
            "seq": str(event.seq).encode(),
            "message_id": event.message_id.encode(),
            "source": b"child",
            "received_at": b"1795236690950",
            "json": event.to_json(),
        }
        assert Event.from_json(row["json"]) == event


async def test_a_batch_is_one_pipeline_in_order_on_one_connection(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """send_batch writes its XADDs as one request batch (one round trip); sends share a
    connection, which aclose closes."""
    batches: list[int] = []
    original = adapters.redis_stream._TCPConnection.create_request_batch

    def counting(self: Any, commands: Any, **options: Any) -> Any:
        batches.append(len(commands))
        return original(self, commands, **options)

    monkeypatch.setattr(adapters.redis_stream._TCPConnection, "create_request_batch", counting)
    sink = RedisStreamSink(server.url, "ipc:batch")
    events = [make_event(seq, task=f"T-{seq}") for seq in range(300)]
    with trio.fail_after(10):
        async with server.client() as client:
            before = await connections_received(client)
            await sink.send_batch(events[:250])
            await sink.send_batch(events[250:])
            await sink.send(make_event(300, task="T-300"))
            assert await connections_received(client) == before + 1
            assert (await client.info("clients"))["connected_clients"] == 2
            await sink.aclose()

            async def one_client_left() -> bool:
                return bool((await client.info("clients"))["connected_clients"] == 1)

            # The server sees the connection close a moment later.
            await wait_until(one_client_left, timeout=10)
        rows = await entries(server, "ipc:batch")
    assert batches == [250, 50, 1]
    assert task_ids(rows) == [f"T-{seq}" for seq in range(301)]


async def test_placeholders_give_each_program_and_event_its_stream(server: RedisServer) -> None:
    """{program} and {event} are filled in per event, {{ and }} are literal braces, and each
    stream keeps its events' order."""
    sink = RedisStreamSink(server.url, "ipc:{program}:{event}:{{tag}}")
    events = [
        make_event(seq, event, program, f"T-{seq}")
        for seq, (program, event) in enumerate(
            [("a", "task_start"), ("b", "task_start"), ("a", "task_start"), ("a", "task_failed")]
        )
    ]
    with trio.fail_after(10):
        await sink.send_batch(events)
        await sink.aclose()
        async with server.client() as client:
            keys = sorted(_text(key) for key in await client.keys("ipc:*"))
        assert keys == [
            "ipc:a:task_failed:{tag}",
            "ipc:a:task_start:{tag}",
            "ipc:b:task_start:{tag}",
        ]
        assert task_ids(await entries(server, "ipc:a:task_start:{tag}")) == ["T-0", "T-2"]


async def test_maxlen_keeps_the_stream_bounded(server: RedisServer) -> None:
    """MAXLEN ~ 100 after 5000 events leaves at least 100 entries, and far fewer than 5000;
    maxlen=0 trims nothing."""
    trimmed = RedisStreamSink(server.url, "ipc:trimmed", maxlen=100)
    kept = RedisStreamSink(server.url, "ipc:kept", maxlen=0)
    events = [make_event(seq) for seq in range(5000)]
    with trio.fail_after(15):
        for start in range(0, len(events), 250):
            await trimmed.send_batch(events[start : start + 250])
        await kept.send_batch(events[:1000])
        await trimmed.aclose()
        await kept.aclose()
        async with server.client() as client:
            length = await client.xlen("ipc:trimmed")
            assert await client.xlen("ipc:kept") == 1000
            last = await client.xrevrange("ipc:trimmed", count=1)
    assert 100 <= length <= 1000
    assert last[0].field_values[b"seq"] == b"4999"


async def test_a_server_that_goes_away_is_retried_and_reconnected(server: RedisServer) -> None:
    """With the server gone, sends fail retryably; once it is back on the same port, the
    next send reconnects and succeeds."""
    sink = RedisStreamSink(server.url, "ipc:events", timeout=5)
    with trio.fail_after(15):
        await sink.send(make_event(1, task="T-1"))
        server.stop()
        for seq in (2, 3):  # on the lost connection (unless noticed already), then anew
            with pytest.raises(SinkError) as failure:
                await sink.send(make_event(seq))
            assert failure.value.retryable
            assert failure.value.sink == sink.name
            assert "\n" not in failure.value.problem
        assert "Connection refused" in failure.value.problem
        server.start()
        await sink.send(make_event(4, task="T-4"))
        await sink.send(make_event(5, task="T-5"))
        await sink.aclose()
        # The restarted server kept nothing (no persistence): only what came after.
        assert task_ids(await entries(server, "ipc:events")) == ["T-4", "T-5"]


async def test_a_server_that_does_not_answer_times_out(server: RedisServer) -> None:
    """A frozen server makes sends time out (retryable), on the connection it had and on a
    new one; once it thaws, the next send goes through."""
    sink = RedisStreamSink(server.url, "ipc:events", timeout=0.5)
    with trio.fail_after(15):
        await sink.send(make_event(1, task="T-1"))
        server.freeze()
        try:
            for seq in (2, 3):
                with pytest.raises(SinkError, match=r"no answer within 0.5 s") as failure:
                    await sink.send(make_event(seq, task=f"T-{seq}"))
                assert failure.value.retryable
        finally:
            server.thaw()
        await sink.send(make_event(4, task="T-4"))
        await sink.aclose()
        # T-2 was written to the frozen server, which took it once thawed: at least once.
        # T-3's connection never got past its handshake.
        assert task_ids(await entries(server, "ipc:events")) == ["T-1", "T-2", "T-4"]


async def test_a_read_only_replica_is_retryable(server: RedisServer) -> None:
    """READONLY (the server became a replica) is worth retrying; once it is a primary again,
    the event goes in."""
    sink = RedisStreamSink(server.url, "ipc:events")
    with trio.fail_after(10):
        async with server.client() as client:
            await client.replicaof("127.0.0.1", free_port())
            with pytest.raises(SinkError, match=r"READONLY") as failure:
                await sink.send(make_event(1, task="T-1"))
            assert failure.value.retryable
            await client.replicaof()  # REPLICAOF NO ONE
        await sink.send(make_event(1, task="T-1"))
        await sink.aclose()
        assert task_ids(await entries(server, "ipc:events")) == ["T-1"]


async def test_a_key_that_is_not_a_stream_is_not_retryable(server: RedisServer) -> None:
    """WRONGTYPE names the key, says how much of the batch went in, and is not retried."""
    sink = RedisStreamSink(server.url, "ipc:{program}")
    with trio.fail_after(10):
        async with server.client() as client:
            await client.set("ipc:strings", "not a stream")
        with pytest.raises(SinkError) as failure:
            await sink.send_batch([make_event(1, program="ok"), make_event(2, program="strings")])
        await sink.aclose()
    assert not failure.value.retryable
    assert failure.value.problem.startswith("ipc:strings: WRONGTYPE ")
    assert failure.value.problem.endswith("(1 of 2 entries were added)")


@pytest.mark.parametrize("how", ["url", "argument", "none"])
async def test_a_wrong_password_is_not_retryable_and_never_shown(tmp_path: Path, how: str) -> None:
    """WRONGPASS and NOAUTH are not retried; the password is in neither the name nor the
    error; the right password, in the URL or as an argument, works."""
    server = RedisServer(tmp_path, password=PASSWORD)
    server.start()
    try:
        wrong = "Wrong%40pass-XYZ"
        base = f"127.0.0.1:{server.port}/0"
        sink = {
            "url": RedisStreamSink(f"redis://:{wrong}@{base}", "s"),
            "argument": RedisStreamSink(f"redis://{base}", "s", password="Wrong@pass-XYZ"),
            "none": RedisStreamSink(f"redis://{base}", "s"),
        }[how]
        with trio.fail_after(10):
            with pytest.raises(SinkError) as failure:
                await sink.send(make_event())
            await sink.aclose()
            for right in (
                RedisStreamSink(f"redis://:{PASSWORD}@{base}", "s"),
                RedisStreamSink(f"redis://:{wrong}@{base}", "s", password=PASSWORD),
            ):
                await right.send(make_event())
                await right.aclose()
                assert PASSWORD not in right.name
            assert len(await entries(server, "s")) == 2
    finally:
        server.stop()
    assert not failure.value.retryable
    assert failure.value.problem.startswith("NOAUTH " if how == "none" else "WRONGPASS ")
    for shown in (str(failure.value), sink.name):
        assert "Wrong" not in shown
        assert PASSWORD not in shown


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("http://127.0.0.1/0", {}, "the URL must start with redis:// or rediss://"),
        ("unix:///tmp/redis.sock", {}, "the URL must start with redis:// or rediss://"),
        ("redis:///0", {}, "the URL has no host"),
        ("redis://:Secret-Pw@127.0.0.1:99999/0", {}, "the URL's host or port is invalid"),
        ("redis://127.0.0.1/x", {}, "db must be a number >= 0, not 'x'"),
        ("redis://:Secret-Pw@127.0.0.1/0", {"stream": ""}, "the stream key is empty"),
        ("redis://127.0.0.1/0", {"stream": "ipc:{programme}"}, "unknown placeholder {programme}"),
        ("redis://127.0.0.1/0", {"stream": "ipc:{}"}, "unknown placeholder {}"),
        ("redis://127.0.0.1/0", {"stream": "ipc:{program!r}"}, "take no format spec"),
        ("redis://127.0.0.1/0", {"stream": "ipc:{tag"}, "expected '}' before end of string"),
        ("redis://127.0.0.1/0", {"maxlen": -1}, "maxlen must be a whole number >= 0, not -1"),
        ("redis://127.0.0.1/0", {"timeout": 0}, "timeout must be positive, not 0"),
        ("redis://127.0.0.1/0", {"password": ""}, "the password is empty"),
    ],
)
def test_bad_settings_are_config_errors(url: str, options: dict[str, Any], message: str) -> None:
    """Each unusable setting is refused at construction, naming the problem, never the
    password."""
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")) as err:
        RedisStreamSink(url, **options)
    assert "Secret-Pw" not in str(err.value)


def test_names_show_host_port_db_and_stream_only() -> None:
    """The name has no password, user or query; TLS and IPv6 hosts are visible."""
    assert RedisStreamSink("redis://u:Secret-Pw@h.example/3?db=2", "x").name == (
        "redis:h.example:6379/2#x"
    )
    assert RedisStreamSink("rediss://[::1]:7000", "ipc:{program}").name == (
        "rediss:[::1]:7000/0#ipc:{program}"
    )


async def test_an_event_that_cannot_be_encoded_is_not_retryable(server: RedisServer) -> None:
    """An event whose JSON cannot be written (a lone surrogate) fails for good, not for ever."""
    fields = {"type": "ipc", "event": "log", "data": {"message": "\ud800"}}
    event = Event(1, "loopwork", 1, "child", parse_message(fields))
    sink = RedisStreamSink(server.url, "s")
    with pytest.raises(SinkError, match="cannot encode the event") as failure:
        await sink.send(event)
    assert not failure.value.retryable
    await sink.aclose()


async def test_send_after_aclose_reconnects_and_cancel_is_clean(server: RedisServer) -> None:
    """aclose without a send is fine; a send after aclose connects again; a cancelled
    send leaves the sink usable."""
    sink = RedisStreamSink(server.url, "s")
    await sink.aclose()
    with trio.fail_after(10):
        await sink.send(make_event(1, task="T-1"))
        await sink.aclose()
        await sink.send(make_event(2, task="T-2"))
        with trio.CancelScope() as scope:
            scope.cancel()
            await sink.send(make_event(3, task="T-3"))
        await sink.send(make_event(4, task="T-4"))
        await sink.aclose()
        assert task_ids(await entries(server, "s")) == ["T-1", "T-2", "T-4"]


async def test_sends_from_several_tasks_take_turns(server: RedisServer) -> None:
    """Sends from many tasks at once all get through, on the sink's one connection."""
    sink = RedisStreamSink(server.url, "s")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for seq in range(20):
                nursery.start_soon(sink.send, make_event(seq, task=f"T-{seq}"))
        await sink.aclose()
        assert sorted(task_ids(await entries(server, "s"))) == sorted(f"T-{i}" for i in range(20))


def write_config(path: Path, port: int) -> Path:
    path.write_text(
        f"""
[journal]
enabled = false
[programs.gen]
command = {json.dumps(child("frames", "5"))}
pty = false
restart = "no"
[[routes]]
name = "redis"
sink = {{ type = "redis", url = "redis://127.0.0.1:{port}/0", stream = "ipc:{{program}}" }}
"""
    )
    return path


def test_supervise_config_route_to_a_stream(server: RedisServer, tmp_path: Path) -> None:
    """A [[routes]] table with a redis sink puts the child's events into ipc:gen, in order."""
    result = supervise("--config", str(write_config(tmp_path / "s.toml", server.port)))
    assert result.returncode == 0, result.stderr
    rows = read_stream(server, "ipc:gen")
    completed = [row for row in rows if row["event"] == b"task_complete"]
    assert task_ids(completed) == [f"T-{i}" for i in range(5)]
    seqs = [int(row["seq"]) for row in rows]
    assert seqs == sorted(seqs)
    assert {row["program"] for row in rows} == {b"gen"}


def test_supervise_route_shortcut_to_a_stream(server: RedisServer) -> None:
    """--route 'task_*=redis:URL#STREAM' sends the task events to that stream."""
    result = supervise(
        "--no-pty",
        "--no-journal",
        "--route",
        f"task_*=redis:{server.url}#loop",
        "--",
        *child("frames", "5"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"DONE\n")
    rows = read_stream(server, "loop")
    assert [row["event"] for row in rows] == [b"task_complete"] * 5
    assert task_ids(rows) == [f"T-{i}" for i in range(5)]


def test_example_consumer_prints_a_line_per_event(server: RedisServer) -> None:
    """examples/redis_consumer.py reads the stream as a consumer group, prints a line per
    event and acknowledges each."""
    names = ("task_start", "task_complete")
    events = [make_event(seq, name, task=f"T-{seq}") for seq, name in enumerate(names, 1)]

    async def add() -> None:
        sink = RedisStreamSink(server.url, "ipc:events")
        await sink.send_batch(events)
        await sink.aclose()

    async def wait_acknowledged() -> None:
        async with server.client() as client:

            async def none_pending() -> bool:
                summary = await client.xpending("ipc:events", "printers")
                assert isinstance(summary, StreamPending)
                return not summary.pending

            await wait_until(none_pending, timeout=10)

    trio.run(add)
    example = str(ROOT / "examples" / "redis_consumer.py")
    argv = [sys.executable, "-u", example, server.url, "ipc:events", "printers", "test-worker"]
    consumer = popen(argv, stdout=subprocess.PIPE)
    try:
        out = read_until(consumer, b"T-2")
        trio.run(wait_acknowledged)
    finally:
        consumer.terminate()
        consumer.wait(timeout=10)
    lines = out.decode().splitlines()
    assert lines[0].split() == ["1", "loopwork:", "\u25b6\ufe0f", "T-1", "Add", "login"]
    assert lines[1].startswith("     2 loopwork: ")
