"""WebhookSink: POST each event's JSON to a URL, signed with a shared secret.

The body is the event's flat JSON form (:meth:`Event.to_json`), byte for
byte. With a secret, ``X-Signature-256`` carries ``sha256=`` and the hex
HMAC-SHA256 of that body, as GitHub signs its webhooks, so receivers can
reuse code they already have; :func:`verify` checks it for receivers
written in Python (``examples/webhook_receiver.py`` does the same with the
stdlib only).

Delivery is at least once: when a response is lost, the router sends the
event again. ``X-IPC-Message-Id`` and ``X-IPC-Seq`` let a receiver drop the
second copy.

How a response is judged, so that the router knows whether to retry:

* 2xx: delivered.
* 408, 429, 5xx, no connection, no answer within ``timeout``: retryable;
  429 and 503 pass their ``Retry-After`` on as ``retry_after``.
* Any other status (3xx: redirects are not followed; 4xx): not retryable,
  the event goes to the dead letters at once.

The secret, and the URL's userinfo and query string (where tokens tend to
live), never appear in the sink's name or in its errors.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import hmac
import importlib.metadata
import math
import re
import time
import urllib.parse
from collections.abc import Mapping

import httpx
import trio

from supervisor.sinks import ConfigError, Event, SinkError

__all__ = [
    "SIGNATURE_HEADER",
    "USER_AGENT",
    "WebhookSink",
    "parse_retry_after",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "X-Signature-256"
try:
    _VERSION = importlib.metadata.version("ipc-supervisor")
except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
    _VERSION = "unknown"
USER_AGENT = f"ipc-supervisor/{_VERSION}"

# How much of an error response is read, and how much of it is quoted.
_BODY_READ_MAX = 4096
_EXCERPT_MAX = 200
_RETRYABLE_4XX = frozenset({408, 429})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
# Headers that frame the request: the sink sets them, a user cannot.
_RESERVED_HEADERS = frozenset({"content-length", "transfer-encoding", "host"})
# What may stay as it is in a header value built from the child's strings;
# everything else (non-ASCII, controls, and "%" itself) is percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def sign(body: bytes, secret: str) -> str:
    """The ``X-Signature-256`` value for ``body``.

    Args:
        body: the exact request body.
        secret: the shared secret (used as its UTF-8 bytes).

    Returns:
        ``sha256=`` followed by the lower-case hex HMAC-SHA256 of ``body``.
    """
    key = secret.encode("utf-8", "surrogateescape")
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """Whether ``header`` is the right ``X-Signature-256`` for ``body``.

    The comparison takes the same time wherever the first difference is,
    so a forger learns nothing from timing.

    Args:
        body: the exact request body, as received.
        secret: the shared secret.
        header: the ``X-Signature-256`` header, or None if it was missing.
    """
    if header is None:
        return False
    expected = sign(body, secret).encode("ascii")
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


class WebhookSink:
    """POST each event's JSON to ``url``.

    Args:
        url: an ``http`` or ``https`` URL with a host.
        secret: the shared secret to sign bodies with; None sends them unsigned.
        timeout: seconds for the whole request, connecting included.
        headers: extra request headers (an ``Authorization``, say).
        client: an httpx client to send with, which the caller keeps and
            closes; by default the sink makes its own on first use and
            closes it in :meth:`aclose`.

    Raises:
        ConfigError: the URL, the timeout, the secret or a header is unusable.
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = _parse_url(url)
        self.name = f"webhook:{_display_url(self.url)}"
        if not timeout > 0:
            raise ConfigError(self.name, f"timeout must be positive, not {timeout}")
        if secret == "":
            raise ConfigError(self.name, "the secret is empty")
        self.timeout = timeout
        self._secret = secret
        self._headers = _check_headers(self.name, headers or {})
        self._client = client
        self._owns_client = client is None

    async def send(self, event: Event) -> None:
        """POST ``event``; return once the receiver has answered 2xx.

        Raises:
            SinkError: no connection, no answer in time, or a status other
                than 2xx (see the module docstring for which are retryable).
        """
        body = event.to_json()
        try:
            with trio.fail_after(self.timeout):
                response, head = await self._post(body, self._request_headers(event, body))
        except (trio.TooSlowError, httpx.TimeoutException):
            raise SinkError(self.name, f"no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise SinkError(self.name, self._redact(_describe_error(exc))) from None
        self._judge(response, head)

    async def _post(self, body: bytes, headers: httpx.Headers) -> tuple[httpx.Response, bytes]:
        """Send the request; the response and the start of its body.

        The body is read to its end (within the timeout), which lets the
        connection be reused, but only its start is kept: enough to quote in
        an error, and a huge error page cannot fill memory.
        """
        if self._client is None:
            self._client = httpx.AsyncClient()
        request = self._client.stream(
            "POST", self.url, content=body, headers=headers, timeout=self.timeout
        )
        async with request as response:
            head = bytearray()
            async for chunk in response.aiter_bytes():
                head += chunk[: _BODY_READ_MAX - len(head)]
        return response, bytes(head)

    def _request_headers(self, event: Event, body: bytes) -> httpx.Headers:
        headers = httpx.Headers({"User-Agent": USER_AGENT})
        headers.update(self._headers)
        headers["Content-Type"] = "application/json"
        headers["X-IPC-Event"] = _header_text(event.event)
        headers["X-IPC-Message-Id"] = _header_text(event.message_id)
        headers["X-IPC-Seq"] = str(event.seq)
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, self._secret)
        return headers

    def _judge(self, response: httpx.Response, head: bytes) -> None:
        """Return if ``response`` means delivered, else raise the SinkError it calls for."""
        status = response.status_code
        if 200 <= status < 300:
            return
        problem = f"HTTP {status} {response.reason_phrase}".rstrip()
        if 300 <= status < 400:
            problem += " (redirects are not followed)"
        excerpt = _excerpt(head)
        if excerpt:
            problem += f": {excerpt}"
        retry_after = None
        if status in _RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        raise SinkError(
            self.name,
            self._redact(problem),
            retryable=status >= 500 or status in _RETRYABLE_4XX,
            retry_after=retry_after,
        )

    def _redact(self, text: str) -> str:
        """``text`` without the secret, or the URL's userinfo and query values.

        URL parts shorter than 4 characters (``page=1``) are left alone:
        hiding every ``1`` would garble the message, and they are no tokens.
        """
        if self._secret:
            text = text.replace(self._secret, "***")
        url = self.url
        parts = [url.userinfo.decode(), url.username, url.password, url.query.decode()]
        parts += [value for _, value in url.params.multi_items()]
        for part in sorted(parts, key=len, reverse=True):
            if len(part) >= 4:
                text = text.replace(part, "***")
        return text

    async def aclose(self) -> None:
        """Close the client the sink made (not one it was given)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
        else:
            await trio.lowlevel.checkpoint()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta seconds or an HTTP date.

    Args:
        value: the header, or None when there was none.
        now: the current time, in seconds since the epoch (for a date).

    Returns:
        Seconds (0 for a date in the past), or None if ``value`` is absent
        or neither form.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, origin unknown
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except httpx.InvalidURL as exc:
        raise ConfigError("webhook", f"not a URL: {exc}") from None
    where = f"webhook:{_display_url(parsed)}"
    if parsed.scheme not in ("http", "https"):
        raise ConfigError(where, "the URL must start with http:// or https://")
    if not parsed.host:
        raise ConfigError(where, "the URL has no host")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(where, f"port {port} is out of range")
    return parsed


def _display_url(url: httpx.URL) -> str:
    """``url`` without userinfo, query string or fragment: safe for names and logs."""
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))


def _check_headers(where: str, headers: Mapping[str, str]) -> dict[str, str]:
    """The user's extra headers, refusing those that would fail on every send.

    Only the header's name is ever quoted: its value may be a credential.
    """
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ConfigError(where, f"header name {name!r} is not a valid HTTP token")
        if name.lower() in _RESERVED_HEADERS:
            raise ConfigError(where, f"header {name} is set by the sink")
        if not _HEADER_VALUE.fullmatch(value):
            raise ConfigError(where, f"header {name}: value must be printable ASCII")
    return dict(headers)


def _header_text(text: str) -> str:
    """A string from the child's frame, made fit for a header value.

    Printable ASCII stays as it is (so ``task_start`` is ``task_start``);
    anything else is percent-encoded rather than refused, so an odd event
    name cannot make every delivery fail.
    """
    return urllib.parse.quote(text, safe=_HEADER_SAFE, errors="replace")


def _excerpt(head: bytes) -> str:
    """The start of a response body on one line, trimmed for an error message."""
    text = " ".join(head.decode("utf-8", "replace").split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= _EXCERPT_MAX else text[: _EXCERPT_MAX - 3] + "..."


def _describe_error(exc: httpx.HTTPError) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
