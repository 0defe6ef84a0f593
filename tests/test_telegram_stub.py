"""The Telegram Bot API stand-in behaves like Telegram, so adapter tests can trust it."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from telegram_stub import Stub, callback_update, telegram_stub, text_update

KEYBOARD = {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]}
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup"
    " are exactly the same as a current content and reply markup of the message"
)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    return body["result"]


def error(response: httpx.Response, status: int) -> str:
    """The description of an error answer with ``status``, checked for Telegram's shape."""
    body = response.json()
    assert response.status_code == status, body
    assert body["ok"] is False
    assert body["error_code"] == status
    description: str = body["description"]
    return description


def send(stub: Stub, text: str, **params: Any) -> httpx.Response:
    return stub.call("sendMessage", chat_id=7, text=text, **params)


def test_get_me_and_simple_methods_over_get_and_form() -> None:
    """getMe; parameters in a query string or a form body count as well as JSON."""
    with telegram_stub() as stub:
        me = ok(stub.client.get(stub.bot_url("getMe")))
        assert me == {"id": 42, "is_bot": True, "first_name": "Stub", "username": "stub_bot"}
        assert ok(stub.client.get(stub.bot_url("deleteWebhook"))) is True
        commands = '[{"command": "status", "description": "Status"}]'
        assert ok(stub.client.post(stub.bot_url("setMyCommands"), data={"commands": commands}))
        query = stub.bot_url("answerCallbackQuery") + "?callback_query_id=q9&show_alert=true"
        assert ok(stub.client.get(query)) is True
        (answer,) = stub.calls("answerCallbackQuery")
    assert answer["params"] == {"callback_query_id": "q9", "show_alert": True}
    assert answer["status"] == 200


def test_send_message_numbers_per_chat_and_keeps_state() -> None:
    """message_id counts from 1 in each chat; chat_id as a string is a number."""
    with telegram_stub() as stub:
        first = ok(send(stub, "one", reply_markup=KEYBOARD))
        second = ok(send(stub, "two"))
        form = {"chat_id": "-100123", "text": "hi", "reply_markup": '{"inline_keyboard": []}'}
        group = ok(stub.client.post(stub.bot_url("sendMessage"), data=form))
        messages = stub.messages()
        calls = stub.calls("sendMessage")
    assert (first["message_id"], second["message_id"], group["message_id"]) == (1, 2, 1)
    assert first["chat"] == {"id": 7, "type": "private"}
    assert first["text"] == "one"
    assert first["reply_markup"] == KEYBOARD
    assert abs(first["date"] - time.time()) < 60
    assert "reply_markup" not in second
    assert group["chat"]["id"] == -100123
    assert messages == [
        {
            "chat_id": 7,
            "message_id": 1,
            "text": "one",
            "parse_mode": None,
            "reply_markup": KEYBOARD,
        },
        {"chat_id": 7, "message_id": 2, "text": "two", "parse_mode": None, "reply_markup": None},
        {
            "chat_id": -100123,
            "message_id": 1,
            "text": "hi",
            "parse_mode": None,
            "reply_markup": None,
        },
    ]
    # Recorded as parsed: numbers as numbers, reply_markup decoded.
    assert calls[2]["params"]["chat_id"] == -100123
    assert calls[2]["params"]["reply_markup"] == {"inline_keyboard": []}
    assert [call["status"] for call in calls] == [200, 200, 200]
    assert calls[0]["time"] <= calls[1]["time"] <= calls[2]["time"] <= time.monotonic()


def test_edits_follow_telegram_rules() -> None:
    """Edits change the state; the same content again is 'not modified'; unknown is 'not found'."""
    with telegram_stub() as stub:
        ok(send(stub, "<b>Deploy?</b>", parse_mode="HTML", reply_markup=KEYBOARD))
        same = stub.call(
            "editMessageText",
            chat_id=7,
            message_id=1,
            text="<b>Deploy?</b>",
            parse_mode="HTML",
            reply_markup=KEYBOARD,
        )
        assert error(same, 400) == NOT_MODIFIED
        # Same rendering, other markup of it: still the same message.
        same = stub.call(
            "editMessageText",
            chat_id="7",
            message_id="1",
            text="<strong>Deploy?</strong>",
            parse_mode="HTML",
            reply_markup=KEYBOARD,
        )
        assert error(same, 400) == NOT_MODIFIED
        # Without reply_markup the keyboard goes: a change.
        edited = ok(stub.call("editMessageText", chat_id=7, message_id=1, text="<b>Deploy?</b>"))
        assert "reply_markup" not in edited
        assert edited["text"] == "<b>Deploy?</b>"
        assert "edit_date" in edited
        again = stub.call("editMessageText", chat_id=7, message_id=1, text="<b>Deploy?</b>")
        assert error(again, 400) == NOT_MODIFIED
        ok(
            stub.call(
                "editMessageText", chat_id=7, message_id=1, text="Deployed", parse_mode="HTML"
            )
        )
        assert stub.messages()[0]["text"] == "Deployed"

        keyboard = ok(
            stub.call("editMessageReplyMarkup", chat_id=7, message_id=1, reply_markup=KEYBOARD)
        )
        assert keyboard["reply_markup"] == KEYBOARD
        assert stub.messages()[0]["reply_markup"] == KEYBOARD
        same = stub.call("editMessageReplyMarkup", chat_id=7, message_id=1, reply_markup=KEYBOARD)
        assert error(same, 400) == NOT_MODIFIED
        removed = ok(stub.call("editMessageReplyMarkup", chat_id=7, message_id=1))
        assert "reply_markup" not in removed
        assert stub.messages()[0]["reply_markup"] is None

        for method in ("editMessageText", "editMessageReplyMarkup"):
            missing = stub.call(method, chat_id=7, message_id=99, text="x", reply_markup=KEYBOARD)
            assert error(missing, 400) == "Bad Request: message to edit not found"
            other_chat = stub.call(method, chat_id=8, message_id=1, text="x")
            assert error(other_chat, 400) == "Bad Request: message to edit not found"
        statuses = [call["status"] for call in stub.calls("editMessageText")]
    assert statuses == [400, 400, 200, 400, 200, 400, 400]


@pytest.mark.parametrize(
    "text",
    [
        "<b>bold</b> <i>it</i> <u>u</u> <s>s</s> <code>x &lt; y</code>",
        "<strong>a</strong><em>b</em><ins>c</ins><strike>d</strike><del>e</del>",
        '<pre><code class="language-python">print("&amp;")</code></pre>',
        '<a href="https://example.com/?a=1&amp;b=2">link</a>',
        '<tg-spoiler>hidden</tg-spoiler> <span class="tg-spoiler">also</span>',
        "<blockquote>quote</blockquote> &quot;x&quot; &#8212; &#x2014; a &gt; b",
        "<B>upper case tags</B>",
    ],
)
def test_good_html(text: str) -> None:
    with telegram_stub() as stub:
        assert ok(send(stub, text, parse_mode="HTML"))["text"] == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<blink>x</blink>", 'Unsupported start tag "blink" at byte offset 0'),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("Tom & Jerry", 'Character "&" at byte offset 4'),
        ("&nbsp;", 'Character "&" at byte offset 0'),
        ("a < b", 'Unexpected character after "<"'),
        ("<a>no href</a>", 'Tag "a" must have attribute "href"'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
        ("<b", "Unclosed start tag at byte offset 0"),
    ],
)
def test_bad_html(text: str, problem: str) -> None:
    with telegram_stub() as stub:
        description = error(send(stub, text, parse_mode="HTML"), 400)
        edit = stub.call("editMessageText", chat_id=7, message_id=1, text=text, parse_mode="HTML")
        edit_description = error(edit, 400)
        assert stub.messages() == []
    assert description.startswith("Bad Request: can't parse entities: ")
    assert problem in description
    assert edit_description == description


def test_text_length_and_emptiness() -> None:
    """4096 characters after entity parsing is the limit; empty text is refused."""
    with telegram_stub() as stub:
        ok(send(stub, "é" * 4096))
        assert error(send(stub, "x" * 4097), 400) == "Bad Request: message is too long"
        # 4096 characters once "&lt;" is decoded and tags are dropped, though longer raw.
        ok(send(stub, "<b>" + "&lt;" * 4096 + "</b>", parse_mode="HTML"))
        too_long = send(stub, "<b>" + "&lt;" * 4097 + "</b>", parse_mode="HTML")
        assert error(too_long, 400) == "Bad Request: message is too long"
        for empty in ("", "  \n", "<b></b>"):
            response = send(stub, empty, parse_mode="HTML")
            assert error(response, 400) == "Bad Request: message text is empty"
        edit = stub.call("editMessageText", chat_id=7, message_id=1, text="")
        assert error(edit, 400) == "Bad Request: message text is empty"
        assert error(stub.call("sendMessage", chat_id=7), 400) == (
            "Bad Request: message text is empty"
        )
        # Without parse_mode, HTML-looking text is plain text.
        ok(send(stub, "Tom & Jerry <3"))
        assert len(stub.messages()) == 3


def test_callback_data_over_64_bytes() -> None:
    """callback_data is 1-64 bytes of UTF-8, not characters."""

    def keyboard(data: str) -> dict[str, Any]:
        return {
            "inline_keyboard": [
                [{"text": "A", "callback_data": "ok"}],
                [{"text": "B", "callback_data": data}],
            ]
        }

    with telegram_stub() as stub:
        ok(send(stub, "fits", reply_markup=keyboard("x" * 64)))
        ok(send(stub, "fits", reply_markup=keyboard("é" * 32)))
        for data in ("x" * 65, "é" * 33, ""):
            response = send(stub, "too much", reply_markup=keyboard(data))
            assert error(response, 400) == "Bad Request: BUTTON_DATA_INVALID"
            edit = stub.call(
                "editMessageReplyMarkup", chat_id=7, message_id=1, reply_markup=keyboard(data)
            )
            assert error(edit, 400) == "Bad Request: BUTTON_DATA_INVALID"
        assert len(stub.messages()) == 2


def poll_in_thread(stub: Stub, **params: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Call getUpdates in a thread; the result lands in the dict as "response", "elapsed"."""
    outcome: dict[str, Any] = {}

    def poll() -> None:
        started = time.monotonic()
        with httpx.Client(timeout=60) as client:
            outcome["response"] = client.post(stub.bot_url("getUpdates"), json=params)
        outcome["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return thread, outcome


def wait_until_polling(stub: Stub, polls: int = 1) -> None:
    """Until ``polls`` getUpdates calls are held by the stub."""
    deadline = time.monotonic() + 20
    while sum(call["status"] is None for call in stub.calls("getUpdates")) < polls:
        assert time.monotonic() < deadline, stub.calls()
        time.sleep(0.01)


def test_long_poll_wakes_on_inject_and_honours_offset() -> None:
    update = callback_update("yes", message_id=1, chat_id=7, user_id=7, username="ann")
    with telegram_stub() as stub:
        assert ok(stub.call("getUpdates", timeout=0)) == []
        thread, outcome = poll_in_thread(stub, timeout=30)
        wait_until_polling(stub)
        injected = time.monotonic()
        assert stub.inject([update]) == [1]
        thread.join(timeout=25)
        woke = time.monotonic() - injected
        (got,) = ok(outcome["response"])
        assert got == {"update_id": 1, **update}
        # Woken by the update, not by the 30 s timeout.
        assert woke < 10
        assert outcome["elapsed"] < 20

        assert stub.inject([text_update("/status", chat_id=7, user_id=7)] * 3) == [2, 3, 4]
        # Without offset, nothing is confirmed.
        assert [u["update_id"] for u in ok(stub.call("getUpdates"))] == [1, 2, 3, 4]
        assert [u["update_id"] for u in ok(stub.call("getUpdates", offset=3, limit=1))] == [3]
        # offset forgets the updates below it, for good.
        assert [u["update_id"] for u in ok(stub.call("getUpdates"))] == [3, 4]
        assert [u["update_id"] for u in ok(stub.call("getUpdates", offset="5"))] == []
        # A poll that times out answers an empty list.
        started = time.monotonic()
        assert ok(stub.call("getUpdates", offset=5, timeout=0.2)) == []
        assert time.monotonic() - started >= 0.2
        assert stub.inject([text_update("hello", chat_id=7, user_id=7)]) == [5]
        (hello,) = ok(stub.call("getUpdates", offset=5, timeout=5))
        assert hello["message"]["text"] == "hello"
        assert "entities" not in hello["message"]


def test_second_poll_ends_the_first_with_409() -> None:
    """Like Telegram: a newer getUpdates terminates the one still held."""
    with telegram_stub() as stub:
        thread, outcome = poll_in_thread(stub, timeout=30)
        wait_until_polling(stub)
        second, second_outcome = poll_in_thread(stub, timeout=30)
        thread.join(timeout=25)
        description = error(outcome["response"], 409)
        assert description.startswith("Conflict: terminated by other getUpdates request")
        wait_until_polling(stub)
        stub.inject([text_update("/start", chat_id=7, user_id=7)])
        second.join(timeout=25)
        (update,) = ok(second_outcome["response"])
    assert update["message"]["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]


def test_fail_gives_telegram_errors_then_recovers() -> None:
    with telegram_stub() as stub:
        stub.fail("sendMessage", 429, count=2, retry_after=3)
        for _ in range(2):
            response = send(stub, "hi")
            assert response.status_code == 429
            assert response.json() == {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 3",
                "parameters": {"retry_after": 3},
            }
        ok(stub.call("getMe"))  # other methods are unaffected
        assert ok(send(stub, "hi"))["message_id"] == 1
        stub.fail("*", 502)
        assert error(stub.call("getMe"), 502) == "Bad Gateway"
        ok(stub.call("getMe"))
        stub.fail("editMessageText", 400, description="Bad Request: chat not found")
        edit = stub.call("editMessageText", chat_id=7, message_id=1, text="new")
        assert error(edit, 400) == "Bad Request: chat not found"
        stub.fail("sendMessage", 429)
        assert error(send(stub, "x"), 429) == "Too Many Requests: retry after 1"
        calls = stub.calls()
        assert stub.messages()[0]["text"] == "hi"  # the failed edit changed nothing
        stub.reset_calls()
        assert stub.calls() == []
    assert [(call["method"], call["status"]) for call in calls] == [
        ("sendMessage", 429),
        ("sendMessage", 429),
        ("getMe", 200),
        ("sendMessage", 200),
        ("getMe", 502),
        ("getMe", 200),
        ("editMessageText", 400),
        ("sendMessage", 429),
    ]


def test_wrong_token_and_unknown_method() -> None:
    with telegram_stub(token="777:RIGHT") as stub:
        wrong = stub.client.post(f"{stub.api_url}/bot777:WRONG/getMe", json={})
        assert wrong.status_code == 401
        assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        unknown = stub.call("sendPigeon", chat_id=7)
        assert unknown.json() == {
            "ok": False,
            "error_code": 404,
            "description": "Not Found: method not found",
        }
        assert unknown.status_code == 404
        calls = stub.calls()
    assert [(call["method"], call["status"]) for call in calls] == [("sendPigeon", 404)]


def test_wait_for_calls() -> None:
    with telegram_stub() as stub:
        timer = threading.Timer(0.2, lambda: send(stub, "later"))
        timer.start()
        try:
            (call,) = stub.wait_for_calls("sendMessage", 1)
        finally:
            timer.join()
        assert call["params"] == {"chat_id": 7, "text": "later"}
        with pytest.raises(AssertionError, match="2 sendMessage calls expected"):
            stub.wait_for_calls("sendMessage", 2, timeout=0.2)


async def test_wait_for_calls_async() -> None:
    """The async wait lets the event loop run while the stub waits."""
    with telegram_stub() as stub:
        async with httpx.AsyncClient() as client:
            await client.post(stub.bot_url("sendMessage"), json={"chat_id": 7, "text": "a"})
        (call,) = await stub.wait_for_calls_async("sendMessage", 1, timeout=5)
    assert call["params"]["text"] == "a"


def test_update_builders() -> None:
    tap = callback_update("approve:3", message_id=5, chat_id=7, user_id=9, username="ann")
    query = tap["callback_query"]
    assert query["id"] == "q1"
    assert query["data"] == "approve:3"
    assert query["from"]["id"] == 9
    assert query["from"]["is_bot"] is False
    assert query["from"]["username"] == "ann"
    assert query["message"]["message_id"] == 5
    assert query["message"]["chat"]["id"] == 7
    assert query["message"]["chat"]["type"] == "private"
    assert isinstance(query["chat_instance"], str)
    anonymous = callback_update("x", message_id=1, chat_id=-1005, user_id=9, query_id="q2")
    assert "username" not in anonymous["callback_query"]["from"]
    assert anonymous["callback_query"]["message"]["chat"]["type"] == "supergroup"
    assert anonymous["callback_query"]["id"] == "q2"

    command = text_update("/approve@stub_bot 3", chat_id=7, user_id=9)["message"]
    assert command["entities"] == [{"offset": 0, "length": 17, "type": "bot_command"}]
    assert command["from"]["id"] == 9
    assert "entities" not in text_update("hi", chat_id=7, user_id=9)["message"]
