"""WebhookSink against a real HTTP server on 127.0.0.1, run as a process of its own.

``tests/children/http_stub.py`` answers each request as the test scripts it
(500, 429 with Retry-After, a lag ...) and records what it received, so the
tests see the exact bytes and headers on the wire.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import ROOT, child, popen, read_until

from adapters.webhook import USER_AGENT, WebhookSink, parse_retry_after, sign, verify
from supervisor import ConfigError, Event, SinkError, __version__
from supervisor._core.messages import parse_message

SECRET = "s3cret-Value-Nobody-Knows"
_stub_ids = itertools.count()


def make_event(seq: int = 7, task: str = "FEAT-1", message_id: str = "msg-7") -> Event:
    fields = {
        "type": "ipc",
        "event": "task_start",
        "data": {"taskId": task, "title": "Add login"},
        "timestamp": 1_795_236_690_901,
        "messageId": message_id,
    }
    return Event(seq, "loopwork", 1_795_236_690_950, "child", parse_message(fields))


@dataclass
class Stub:
    port: int
    record: Path

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = self.record.read_text().splitlines()
        return [json.loads(line) for line in lines]


@contextmanager
def http_stub(tmp_path: Path, *script: object, port: int = 0) -> Iterator[Stub]:
    """Run tests/children/http_stub.py with ``script``; stop it on leaving."""
    record = tmp_path / f"stub-{next(_stub_ids)}.jsonl"
    argv = child("http_stub", "--record", str(record), "--port", str(port))
    proc = popen([*argv, *map(json.dumps, script)], stdout=subprocess.PIPE)
    try:
        match = re.search(rb"PORT (\d+)", read_until(proc, b"READY\n"))
        assert match is not None
        yield Stub(int(match.group(1)), record)
    finally:
        proc.terminate()
        proc.wait()


def headers_of(request: dict[str, Any]) -> dict[str, str]:
    return {name.lower(): value for name, value in request["headers"]}


def body_of(request: dict[str, Any]) -> bytes:
    return base64.b64decode(request["body_b64"])


async def send_failing(sink: WebhookSink, event: Event | None = None) -> SinkError:
    """Send, expecting a SinkError, and return it."""
    with trio.fail_after(10), pytest.raises(SinkError) as caught:
        await sink.send(event or make_event())
    return caught.value


async def test_delivers_signed_event_with_headers(tmp_path: Path) -> None:
    """The body is the event's JSON, signed, with idempotency keys and a User-Agent."""
    event = make_event()
    with http_stub(tmp_path) as stub:
        sink = WebhookSink(stub.url(), secret=SECRET, headers={"Authorization": "Bearer t0k"})
        with trio.fail_after(10):
            await sink.send(event)
            await sink.aclose()
        (request,) = stub.requests()
    assert sink.name == f"webhook:{stub.url()}"
    assert (request["method"], request["path"]) == ("POST", "/hook")
    body = body_of(request)
    assert body == event.to_json()
    headers = headers_of(request)
    assert headers["content-type"] == "application/json"
    assert headers["x-ipc-event"] == "task_start"
    assert headers["x-ipc-message-id"] == "msg-7"
    assert headers["x-ipc-seq"] == "7"
    assert headers["user-agent"] == USER_AGENT == f"ipc-supervisor/{__version__}"
    assert headers["authorization"] == "Bearer t0k"
    assert verify(body, SECRET, headers["x-signature-256"])
    assert not verify(body, "other secret", headers["x-signature-256"])


async def test_unsigned_without_secret(tmp_path: Path) -> None:
    """Without a secret no signature header is sent."""
    with http_stub(tmp_path) as stub:
        sink = WebhookSink(stub.url())
        with trio.fail_after(10):
            await sink.send(make_event())
            await sink.aclose()
        (request,) = stub.requests()
    assert "x-signature-256" not in headers_of(request)


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retryable(tmp_path: Path, status: int) -> None:
    """A 5xx is worth retrying; its body is quoted; no Retry-After, no retry_after."""
    with http_stub(tmp_path, {"status": status, "body": "database\n  down"}) as stub:
        sink = WebhookSink(stub.url(), secret=SECRET)
        error = await send_failing(sink)
        await sink.aclose()
    assert error.retryable
    assert error.retry_after is None
    assert error.problem.startswith(f"HTTP {status} ")
    assert error.problem.endswith(": database down")


@pytest.mark.parametrize(("status", "delay"), [(429, 1), (503, 30)])
async def test_retry_after_is_passed_on(tmp_path: Path, status: int, delay: int) -> None:
    """429 and 503 pass Retry-After on (seconds, or an HTTP date) as retry_after."""
    value = (
        str(delay) if status == 429 else email.utils.formatdate(time.time() + delay, usegmt=True)
    )
    with http_stub(tmp_path, {"status": status, "headers": {"Retry-After": value}}) as stub:
        sink = WebhookSink(stub.url())
        error = await send_failing(sink)
        await sink.aclose()
    assert error.retryable
    assert error.retry_after is not None
    assert delay - 2 <= error.retry_after <= delay


@pytest.mark.parametrize("status", [404, 301])
async def test_client_errors_are_not_retryable(tmp_path: Path, status: int) -> None:
    """404 (and an unfollowed redirect) dead-letter at once, with a trimmed excerpt."""
    script = {"status": status, "body": "no such hook " + "x" * 10_000}
    with http_stub(tmp_path, script, script) as stub:
        sink = WebhookSink(stub.url())
        error = await send_failing(sink)
        await sink.aclose()
    assert not error.retryable
    assert error.problem.startswith(f"HTTP {status} ")
    assert "no such hook xxx" in error.problem
    assert len(str(error)) < 300


async def test_refused_then_server_back(tmp_path: Path) -> None:
    """No server is retryable; once one listens on the port, the same sink delivers."""
    with http_stub(tmp_path) as gone:
        port = gone.port
    sink = WebhookSink(gone.url(), secret=SECRET)
    error = await send_failing(sink)
    assert error.retryable
    assert "Connect" in error.problem
    with http_stub(tmp_path, port=port) as back:
        with trio.fail_after(10):
            await sink.send(make_event())
            await sink.aclose()
        (request,) = back.requests()
    assert verify(body_of(request), SECRET, headers_of(request)["x-signature-256"])


async def test_lagging_server_times_out(tmp_path: Path) -> None:
    """A server that does not answer within the timeout gives a retryable error, in time."""
    with http_stub(tmp_path, {"status": 200, "lag": 30}) as stub:
        sink = WebhookSink(stub.url(), timeout=0.5)
        start = time.monotonic()
        error = await send_failing(sink)
        elapsed = time.monotonic() - start
        await sink.aclose()
    assert error.retryable
    assert error.problem == "no answer within 0.5 s"
    assert elapsed < 5


async def test_secret_and_credentials_never_in_errors(tmp_path: Path) -> None:
    """Neither the secret nor the URL's userinfo or query string is in a name or error."""
    private = (SECRET, "hookuser", "hookpass", "tok123")
    echo = {"body": " ".join(private)}
    errors: list[SinkError] = []
    with http_stub(tmp_path, {"status": 500, **echo}, {"status": 404, **echo}) as stub:
        url = f"http://hookuser:hookpass@127.0.0.1:{stub.port}/hook?token=tok123"
        sink = WebhookSink(url, secret=SECRET, timeout=0.5)
        errors += [await send_failing(sink), await send_failing(sink)]
    errors.append(await send_failing(sink))  # connection refused
    await sink.aclose()
    assert sink.name == f"webhook:http://127.0.0.1:{stub.port}/hook"
    assert [error.retryable for error in errors] == [True, False, True]
    for text in (sink.name, repr(sink), *map(str, errors)):
        for secret in private:
            assert secret not in text


@pytest.mark.parametrize(
    ("url", "options", "problem"),
    [
        ("ftp://user:pw-123@127.0.0.1/x?token=tok123", {}, "http:// or https://"),
        ("http://", {}, "no host"),
        ("not a url", {}, "http:// or https://"),
        ("http://127.0.0.1:99999/", {}, "out of range"),
        ("http://127.0.0.1:x/", {}, "not a URL"),
        ("http://127.0.0.1/", {"timeout": 0}, "timeout"),
        ("http://127.0.0.1/", {"secret": ""}, "secret is empty"),
        ("http://127.0.0.1/", {"headers": {"X-Token": "a\r\nb"}}, "X-Token"),
        ("http://127.0.0.1/", {"headers": {"Bad Name": "v"}}, "not a valid HTTP token"),
        ("http://127.0.0.1/", {"headers": {"Content-Length": "1"}}, "set by the sink"),
    ],
)
def test_bad_settings_are_config_errors(url: str, options: dict[str, Any], problem: str) -> None:
    """An unusable URL or setting fails at construction, quoting no credential."""
    with pytest.raises(ConfigError, match=problem) as caught:
        WebhookSink(url, **options)
    for private in ("pw-123", "tok123", "a\r\nb"):
        assert private not in str(caught.value)


async def test_given_client_stays_open(tmp_path: Path) -> None:
    """aclose closes the client the sink made, not one it was given."""
    with http_stub(tmp_path) as stub:
        async with httpx.AsyncClient() as client:
            given = WebhookSink(stub.url(), client=client)
            own = WebhookSink(stub.url())
            with trio.fail_after(10):
                await given.send(make_event())
                await own.send(make_event())
                made = own._client
                await given.aclose()
                await own.aclose()
            assert not client.is_closed
        assert made is not None
        assert made.is_closed
        assert len(stub.requests()) == 2


def test_sign_and_verify() -> None:
    """sign is GitHub's sha256= HMAC; verify accepts only the exact body and secret."""
    body = b"The quick brown fox jumps over the lazy dog"
    header = sign(body, "key")
    assert header == "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    assert header == "sha256=" + hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert verify(body, "key", header)
    assert verify(body, "key", f" {header} ")
    assert not verify(body + b" ", "key", header)
    assert not verify(body, "kex", header)
    for bad in (None, "", "sha256=", header.upper(), "sha256=é" + header[8:]):
        assert not verify(body, "key", bad)


def test_parse_retry_after() -> None:
    """Retry-After: delta seconds, or an HTTP date (past dates mean now); else None."""
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after(email.utils.formatdate(now + 60, usegmt=True), now) == 60
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now) == 0
    for bad in (None, "", "-1", "nan", "inf", "soon"):
        assert parse_retry_after(bad, now) is None


@contextmanager
def example_receiver(secret: str) -> Iterator[tuple[subprocess.Popen[bytes], str, bytes]]:
    """Run examples/webhook_receiver.py on a free port: the process, its URL, its output."""
    script = str(ROOT / "examples" / "webhook_receiver.py")
    argv = [sys.executable, "-u", script, "--port", "0", "--secret", secret]
    proc = popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        banner = read_until(proc, b"/\n")
        match = re.search(rb"listening on (http://\S+)", banner)
        assert match is not None
        yield proc, match.group(1).decode(), banner
    finally:
        proc.terminate()
        proc.wait()


async def test_example_receiver(tmp_path: Path) -> None:
    """The example verifies the signature (204, else 401) and prints each event once."""
    with example_receiver(SECRET) as (proc, url, _):
        sink = WebhookSink(url, secret=SECRET)
        with trio.fail_after(10):
            await sink.send(make_event(7))
            output = read_until(proc, b"#7 loopwork task_start FEAT-1\n")
            await sink.send(make_event(7))  # a redelivery: acknowledged, not printed
            await sink.send(make_event(8, task="FEAT-2", message_id="msg-8"))
            output += read_until(proc, b"#8 loopwork task_start FEAT-2\n")
            assert output.count(b"#7 ") == 1

            body = make_event(9, message_id="msg-9").to_json()
            async with httpx.AsyncClient() as client:
                signed = {"X-Signature-256": sign(body, SECRET)}
                assert (await client.post(url, content=body, headers=signed)).status_code == 204
                forged = {"X-Signature-256": sign(body, "guess")}
                assert (await client.post(url, content=body, headers=forged)).status_code == 401

            wrong = WebhookSink(url, secret="not the secret")
            error = await send_failing(wrong)
            await sink.aclose()
            await wrong.aclose()
    assert not error.retryable
    assert error.problem.startswith("HTTP 401")
