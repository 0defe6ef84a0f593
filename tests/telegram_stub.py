"""A stand-in for Telegram's Bot API for the tests: a real HTTP server process.

``tests/children/telegram_api_stub.py`` answers the Bot API methods a bot
adapter uses as api.telegram.org does (errors included), keeps the messages
it was sent, long-polls getUpdates, and records every call::

    with telegram_stub() as stub:
        bot = TelegramBot(..., token=stub.token, api_url=stub.api_url)
        stub.inject([callback_update("yes", message_id=1, chat_id=7, user_id=7)])
        (answer,) = stub.wait_for_calls("answerCallbackQuery", 1)

The stub's own tests are in test_telegram_stub.py.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from conftest import child, popen, read_until

_message_ids = itertools.count(1000)


@dataclass
class Stub:
    """A running stand-in.

    ``api_url`` is the base URL (no ``/bot<token>``): a client calls
    ``{api_url}/bot{token}/{method}``.
    """

    api_url: str
    token: str
    client: httpx.Client = field(repr=False)

    def bot_url(self, method: str) -> str:
        return f"{self.api_url}/bot{self.token}/{method}"

    def call(self, method: str, **params: Any) -> httpx.Response:
        """Call a Bot API method as a client would (a JSON POST); the raw response."""
        return self.client.post(self.bot_url(method), json=params)

    def inject(self, updates: list[dict[str, Any]]) -> list[int]:
        """Queue updates (without update_id) for getUpdates; their update_ids."""
        ids: list[int] = self._control("POST", "updates", updates)
        return ids

    def fail(
        self,
        method: str,
        status: int,
        count: int = 1,
        retry_after: int | None = None,
        description: str | None = None,
    ) -> None:
        """The next ``count`` calls of ``method`` ("*": any) fail with ``status``.

        429 comes with ``parameters.retry_after`` (1 unless given); 5xx with the
        status's phrase ("Bad Gateway"); 400 with ``description``.
        """
        spec = {
            "method": method,
            "status": status,
            "count": count,
            "retry_after": retry_after,
            "description": description,
        }
        self._control("POST", "fail", spec)

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """Every Bot API call so far (or of ``method``), in arrival order.

        Each is ``{"method", "params", "status", "time"}``; ``time`` is the
        time.monotonic() of its arrival; ``status`` is None while a long poll
        is held.
        """
        params = {} if method is None else {"method": method}
        calls: list[dict[str, Any]] = self._control("GET", "calls", params=params)
        return calls

    def wait_for_calls(
        self, method: str | None, count: int, timeout: float = 10
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` calls of ``method`` were answered; the answered ones.

        Blocks the thread: from a trio test whose code under test runs in the
        same process, use :meth:`wait_for_calls_async`.
        """
        params = self._wait_params(method, count, timeout)
        calls: list[dict[str, Any]] = self._control(
            "GET", "calls", params=params, timeout=timeout + 10
        )
        return self._enough(calls, method, count, timeout)

    async def wait_for_calls_async(
        self, method: str | None, count: int, timeout: float = 10
    ) -> list[dict[str, Any]]:
        """:meth:`wait_for_calls` without blocking the event loop (the stub does the waiting)."""
        async with httpx.AsyncClient(base_url=self.api_url, timeout=timeout + 10) as client:
            response = await client.get(
                "/_stub/calls", params=self._wait_params(method, count, timeout)
            )
        response.raise_for_status()
        return self._enough(response.json(), method, count, timeout)

    def messages(self) -> list[dict[str, Any]]:
        """The messages as they are now: ``{"chat_id", "message_id", "text",
        "parse_mode", "reply_markup"}`` (reply_markup None once removed)."""
        messages: list[dict[str, Any]] = self._control("GET", "messages")
        return messages

    def reset_calls(self) -> None:
        self._control("POST", "reset-calls")

    @staticmethod
    def _wait_params(method: str | None, count: int, timeout: float) -> dict[str, Any]:
        params: dict[str, Any] = {"count": count, "wait": timeout}
        if method is not None:
            params["method"] = method
        return params

    @staticmethod
    def _enough(
        calls: list[dict[str, Any]], method: str | None, count: int, timeout: float
    ) -> list[dict[str, Any]]:
        answered = [call for call in calls if call["status"] is not None]
        assert len(answered) >= count, (
            f"{count} {method or 'Bot API'} calls expected within {timeout} s, got {answered}"
        )
        return answered

    def _control(
        self,
        verb: str,
        action: str,
        body: object = None,
        params: dict[str, Any] | None = None,
        timeout: float = 10,
    ) -> Any:
        response = self.client.request(
            verb,
            f"{self.api_url}/_stub/{action}",
            json=body,
            params=params,
            timeout=timeout,
        )
        response.raise_for_status()
        return response.json()


@contextmanager
def telegram_stub(token: str = "123:TEST") -> Iterator[Stub]:
    """Run the stand-in for a bot with ``token``; stop it on leaving."""
    proc = popen(
        child("telegram_api_stub", "--token", token),
        stdout=subprocess.PIPE,
    )
    try:
        match = re.search(rb"PORT (\d+)", read_until(proc, b"READY\n"))
        assert match is not None
        with httpx.Client(timeout=10) as client:
            yield Stub(f"http://127.0.0.1:{int(match.group(1))}", token, client)
    finally:
        proc.terminate()
        proc.wait()


def _user(user_id: int, username: str | None) -> dict[str, Any]:
    user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
    if username is not None:
        user["username"] = username
    user["language_code"] = "en"
    return user


def _chat(chat_id: int, user: dict[str, Any]) -> dict[str, Any]:
    if chat_id > 0:
        chat = {"id": chat_id, "first_name": user["first_name"], "type": "private"}
        if "username" in user:
            chat["username"] = user["username"]
        return chat
    kind = "supergroup" if str(chat_id).startswith("-100") else "group"
    return {"id": chat_id, "title": "Stub group", "type": kind}


def callback_update(
    data: str,
    *,
    message_id: int,
    chat_id: int,
    user_id: int,
    username: str | None = None,
    query_id: str = "q1",
    text: str = "message",
) -> dict[str, Any]:
    """An update for a tap on the inline button with ``data`` under message ``message_id``.

    ``text``: the text of that message as Telegram shows it (entities stripped).
    """
    user = _user(user_id, username)
    return {
        "callback_query": {
            "id": query_id,
            "from": user,
            "message": {
                "message_id": message_id,
                "from": {"id": 42, "is_bot": True, "first_name": "Stub", "username": "stub_bot"},
                "chat": _chat(chat_id, user),
                "date": int(time.time()),
                "text": text,
            },
            "chat_instance": str(-(abs(chat_id) * 1_000_003 + 4_242)),
            "data": data,
        }
    }


def text_update(
    text: str, *, chat_id: int, user_id: int, username: str | None = None
) -> dict[str, Any]:
    """An update for a text message from a user; "/cmd ..." carries a bot_command entity."""
    user = _user(user_id, username)
    message: dict[str, Any] = {
        "message_id": next(_message_ids),
        "from": user,
        "chat": _chat(chat_id, user),
        "date": int(time.time()),
        "text": text,
    }
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0]
        message["entities"] = [{"offset": 0, "length": len(command), "type": "bot_command"}]
    return {"message": message}
