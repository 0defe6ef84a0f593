"""A stand-in for Telegram's Bot API, run as a process of its own.

    telegram_api_stub.py --token TOKEN [--port N]

Binds 127.0.0.1 (port 0, i.e. any free one, unless --port), prints
``PORT <n>`` and ``READY``, then answers ``/bot<TOKEN>/<method>`` (POST or
GET; parameters as a JSON body, a form-encoded body or a query string) the
way https://api.telegram.org does, for the methods a bot adapter uses:
getMe, sendMessage, editMessageText, editMessageReplyMarkup,
answerCallbackQuery, deleteWebhook, setMyCommands and getUpdates (long
polling). Messages are kept per (chat_id, message_id) so edits are checked
like Telegram checks them ("message to edit not found", "message is not
modified"), and texts are validated like Telegram validates them (empty,
longer than 4096 characters after entity parsing, malformed HTML,
callback_data over 64 bytes).

One deliberate difference: an ``&`` that does not begin one of the entities
``&lt; &gt; &amp; &quot; &#NN; &#xNN;`` is an error here, while Telegram keeps
it as a literal ``&``; an unescaped ``&`` is nearly always an escaping bug.

Control endpoints for the tests, under ``/_stub/``:

- ``POST /_stub/updates`` ``[update, ...]`` (without update_id): queue them
  for getUpdates with increasing update_ids from 1; answers the ids.
- ``POST /_stub/fail`` ``{"method", "status", "count", "retry_after",
  "description"}``: the next ``count`` calls of ``method`` (``"*"``: of any
  method) fail with ``status`` and Telegram's error body.
- ``GET /_stub/calls[?method=M][&count=N&wait=T]``: every Bot API call so far,
  in arrival order, as ``{"method", "params", "status", "time"}`` (``time``:
  time.monotonic() at arrival; ``status`` null while a long poll is held).
  With ``count`` and ``wait``, waits up to T seconds for N answered calls.
- ``GET /_stub/messages``: the current messages as ``{"chat_id",
  "message_id", "text", "parse_mode", "reply_markup"}``.
- ``POST /_stub/reset-calls``: forget the calls so far.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BOT = {"id": 42, "is_bot": True, "first_name": "Stub", "username": "stub_bot"}
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64
# What an inline button does besides callback_data; a button needs one.
ACTIONS = {
    "url",
    "login_url",
    "web_app",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
}
DEFAULT_LIMIT = 100

INT_PARAMS = ("chat_id", "message_id", "offset", "limit", "reply_to_message_id", "cache_time")
NUMBER_PARAMS = ("timeout",)
BOOL_PARAMS = (
    "show_alert",
    "disable_notification",
    "disable_web_page_preview",
    "protect_content",
    "drop_pending_updates",
)
JSON_PARAMS = (
    "reply_markup",
    "allowed_updates",
    "entities",
    "link_preview_options",
    "reply_parameters",
    "commands",
    "scope",
)

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup"
    " are exactly the same as a current content and reply markup of the message"
)
CONFLICT = (
    "Conflict: terminated by other getUpdates request;"
    " make sure that only one bot instance is running"
)


class ApiError(Exception):
    """A Bot API error answer: ``{"ok": false, "error_code", "description"[, "parameters"]}``."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters is not None:
            body["parameters"] = self.parameters
        return body


def bad_request(problem: str) -> ApiError:
    return ApiError(400, f"Bad Request: {problem}")


# -- parameters ------------------------------------------------------------------------


def as_int(value: Any) -> int | None:
    """An integer given as a JSON number or a decimal string ("-100123"), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def normalise(params: dict[str, Any]) -> dict[str, Any]:
    """Numbers and booleans that came as strings, JSON-serialized fields decoded."""
    result = dict(params)
    for key in INT_PARAMS:
        if key in result and (number := as_int(result[key])) is not None:
            result[key] = number
    for key in NUMBER_PARAMS:
        if key in result and (value := as_number(result[key])) is not None:
            result[key] = int(value) if value.is_integer() else value
    for key in BOOL_PARAMS:
        if isinstance(result.get(key), str):
            result[key] = result[key].strip().lower() in ("true", "1")
    for key in JSON_PARAMS:
        if isinstance(result.get(key), str):
            # Left as it is if it does not parse; the method says what is wrong with it.
            with contextlib.suppress(ValueError):
                result[key] = json.loads(result[key])
    return result


def chat_of(chat_id: int) -> dict[str, Any]:
    """The Chat object for an id: users are positive, groups negative, supergroups -100...."""
    if chat_id > 0:
        return {"id": chat_id, "type": "private"}
    kind = "supergroup" if str(chat_id).startswith("-100") else "group"
    return {"id": chat_id, "type": kind, "title": "Stub group"}


def required_chat(params: dict[str, Any]) -> int:
    if params.get("chat_id") in (None, ""):
        raise bad_request("chat_id is empty")
    chat_id = as_int(params["chat_id"])
    if chat_id is None or chat_id == 0:
        raise bad_request("chat not found")
    return chat_id


def required_message_id(params: dict[str, Any]) -> int:
    if params.get("message_id") in (None, ""):
        raise bad_request("message identifier is not specified")
    message_id = as_int(params["message_id"])
    if message_id is None:
        raise bad_request("message identifier is invalid")
    return message_id


# -- entities --------------------------------------------------------------------------

# Tag -> entity type; "a" becomes a text_link, "span" must be a spoiler.
HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "blockquote": "blockquote",
}
ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#(\d{1,8})|#[xX]([0-9a-fA-F]{1,6}));")
NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
TAG_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*")
END_TAG = re.compile(r"</\s*([a-zA-Z][a-zA-Z0-9-]*)\s*>")
ATTRIBUTE = re.compile(
    r"""\s*([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?"""
)

Rendered = tuple[str, tuple[tuple[int, int, str, str], ...]]


def byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def decode_entity(text: str, index: int) -> tuple[str, int]:
    """The character the entity at ``text[index] == "&"`` stands for, and where it ends."""
    match = ENTITY.match(text, index)
    if match is None:
        raise bad_request(
            f'can\'t parse entities: Character "&" at byte offset {byte_offset(text, index)}'
            ' does not begin an HTML entity; escape it as "&amp;"'
        )
    named, decimal, hexadecimal = match.groups()
    if named is not None:
        return NAMED[named], match.end()
    code = int(decimal, 10) if decimal is not None else int(hexadecimal, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise bad_request(
            f"can't parse entities: Invalid numeric HTML entity at byte offset"
            f" {byte_offset(text, index)}"
        )
    return chr(code), match.end()


@dataclass
class OpenTag:
    name: str
    start: int  # in the plain text
    extra: str  # the href of an "a"


def parse_html(text: str) -> Rendered:
    """Telegram's HTML: the plain text and its entities, or a "can't parse entities" 400."""
    plain: list[str] = []
    length = 0
    stack: list[OpenTag] = []
    entities: list[tuple[int, int, str, str]] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "&":
            decoded, index = decode_entity(text, index)
            plain.append(decoded)
            length += 1
        elif char == "<" and text.startswith("</", index):
            where = byte_offset(text, index)
            match = END_TAG.match(text, index)
            if not stack:
                raise bad_request(
                    f"can't parse entities: Unexpected end tag at byte offset {where}"
                )
            if match is None:
                raise bad_request(f"can't parse entities: Unclosed end tag at byte offset {where}")
            name = match.group(1).lower()
            top = stack.pop()
            if name != top.name:
                raise bad_request(
                    f"can't parse entities: Unmatched end tag at byte offset {where},"
                    f' expected "</{top.name}>", found "</{name}>"'
                )
            entities.append((top.start, length, HTML_TAGS[top.name], top.extra))
            index = match.end()
        elif char == "<":
            tag, index = parse_start_tag(text, index)
            stack.append(OpenTag(tag[0], length, tag[1]))
        else:
            plain.append(char)
            length += 1
            index += 1
    if stack:
        raise bad_request(
            "can't parse entities: Can't find end tag corresponding to start tag"
            f' "{stack[-1].name}"'
        )
    return "".join(plain), tuple(sorted(entity for entity in entities if entity[0] < entity[1]))


def parse_start_tag(text: str, index: int) -> tuple[tuple[str, str], int]:
    """The tag opened at ``text[index] == "<"`` as (name, href), and where it ends."""
    where = byte_offset(text, index)
    name_match = TAG_NAME.match(text, index + 1)
    if name_match is None:
        raise bad_request(
            f'can\'t parse entities: Unexpected character after "<" at byte offset {where};'
            ' escape it as "&lt;"'
        )
    name = name_match.group().lower()
    if name not in HTML_TAGS:
        raise bad_request(
            f'can\'t parse entities: Unsupported start tag "{name}" at byte offset {where}'
        )
    attributes: dict[str, str] = {}
    position = name_match.end()
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            raise bad_request(f"can't parse entities: Unclosed start tag at byte offset {where}")
        if text[position] == ">":
            position += 1
            break
        attribute = ATTRIBUTE.match(text, position)
        if attribute is None or attribute.end() == position:
            raise bad_request(
                f'can\'t parse entities: Unexpected character in the tag "{name}"'
                f" at byte offset {byte_offset(text, position)}"
            )
        key, double, single, bare = attribute.groups()
        value = next((v for v in (double, single, bare) if v is not None), "")
        attributes[key.lower()] = html.unescape(value)
        position = attribute.end()
    href = ""
    if name == "a":
        href = attributes.get("href", "")
        if not href:
            raise bad_request('can\'t parse entities: Tag "a" must have attribute "href"')
    if name == "span" and attributes.get("class") != "tg-spoiler":
        raise bad_request('can\'t parse entities: Tag "span" must have class "tg-spoiler"')
    return (name, href), position


def render(text: Any, parse_mode: Any) -> Rendered:
    """Check a message text like Telegram does; returns what it looks like once parsed."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    mode = str(parse_mode or "").lower()
    if mode == "html":
        rendered = parse_html(text)
    elif mode == "":
        rendered = (text, ())
    elif mode in ("markdown", "markdownv2"):
        # Markdown is not parsed here: the raw text and the mode stand for what it renders.
        rendered = (text, ((0, 0, mode, ""),))
    else:
        raise bad_request("unsupported parse_mode")
    if not rendered[0].strip():
        raise bad_request("message text is empty")
    if len(rendered[0]) > MAX_TEXT:
        raise bad_request("message is too long")
    return rendered


def check_markup(markup: Any) -> dict[str, Any] | None:
    """Validate reply_markup; the inline keyboard it leaves (None: no keyboard)."""
    if markup is None or markup == "":
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return markup  # a reply keyboard, a ForceReply ...: kept as given
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request(
            'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
        )
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise bad_request("can't parse inline keyboard button: Text must be a String")
            if "callback_data" in button:
                data = button["callback_data"]
                size = len(data.encode("utf-8")) if isinstance(data, str) else 0
                if not 1 <= size <= MAX_CALLBACK_DATA:
                    raise bad_request("BUTTON_DATA_INVALID")
            elif not ACTIONS.intersection(button):
                raise bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed"
                    " in the inline keyboard"
                )
    if not any(rows):
        return None  # an empty inline keyboard is no keyboard
    return markup


# -- the bot ---------------------------------------------------------------------------


@dataclass
class Message:
    chat_id: int
    message_id: int
    date: int
    text: str
    parse_mode: str | None
    rendered: Rendered
    reply_markup: dict[str, Any] | None
    edit_date: int | None = None

    def to_api(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "message_id": self.message_id,
            "from": BOT,
            "chat": chat_of(self.chat_id),
            "date": self.date,
            "text": self.text,
        }
        if self.edit_date is not None:
            result["edit_date"] = self.edit_date
        if self.reply_markup is not None:
            result["reply_markup"] = self.reply_markup
        return result

    def to_stub(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "text": self.text,
            "parse_mode": self.parse_mode,
            "reply_markup": self.reply_markup,
        }


@dataclass
class Failure:
    method: str
    status: int
    count: int
    retry_after: int | None
    description: str | None

    def error(self) -> ApiError:
        retry_after = self.retry_after
        if self.status == 429 and retry_after is None:
            retry_after = 1
        if self.description is not None:
            description = self.description
        elif self.status == 429:
            description = f"Too Many Requests: retry after {retry_after}"
        elif self.status == 400:
            description = "Bad Request"
        elif self.status == 403:
            description = "Forbidden: bot was blocked by the user"
        else:
            try:
                description = HTTPStatus(self.status).phrase
            except ValueError:
                description = "Error"
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        return ApiError(self.status, description, parameters)


class Bot:
    """The state of the stand-in; every change is made under ``self.changed``'s lock."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.changed = threading.Condition()
        self.calls: list[dict[str, Any]] = []
        self.messages: dict[tuple[int, int], Message] = {}
        self.last_message_id: dict[int, int] = {}
        self.updates: list[dict[str, Any]] = []
        self.last_update_id = 0
        self.allowed_updates: list[str] = []
        self.polls = 0  # getUpdates requests so far: a newer one ends an older one (409)
        self.failures: list[Failure] = []

    # The handlers run with the lock held.

    def call(self, name: str, params: dict[str, Any], error: ApiError | None) -> tuple[int, Any]:
        with self.changed:
            method = METHODS.get(name.lower())
            record: dict[str, Any] = {
                "method": method.__name__.removeprefix("api_") if method else name,
                "params": params,
                "status": None,
                "time": time.monotonic(),
            }
            self.calls.append(record)
            try:
                if method is None:
                    raise ApiError(404, "Not Found: method not found")
                if error is not None:
                    raise error
                self.take_failure(record["method"])
                status, body = 200, {"ok": True, "result": method(self, params)}
            except ApiError as exc:
                status, body = exc.status, exc.body()
            record["status"] = status
            self.changed.notify_all()
            return status, body

    def take_failure(self, method: str) -> None:
        for failure in self.failures:
            if failure.method in ("*", method) and failure.count > 0:
                failure.count -= 1
                self.failures = [f for f in self.failures if f.count > 0]
                raise failure.error()

    def message(self, params: dict[str, Any]) -> Message:
        key = (required_chat(params), required_message_id(params))
        if key not in self.messages:
            raise bad_request("message to edit not found")
        return self.messages[key]

    def api_getMe(self, params: dict[str, Any]) -> Any:
        return BOT

    def api_sendMessage(self, params: dict[str, Any]) -> Any:
        chat_id = required_chat(params)
        rendered = render(params.get("text"), params.get("parse_mode"))
        markup = check_markup(params.get("reply_markup"))
        message_id = self.last_message_id.get(chat_id, 0) + 1
        self.last_message_id[chat_id] = message_id
        message = Message(
            chat_id,
            message_id,
            int(time.time()),
            str(params["text"]),
            params.get("parse_mode"),
            rendered,
            markup,
        )
        self.messages[chat_id, message_id] = message
        return message.to_api()

    def api_editMessageText(self, params: dict[str, Any]) -> Any:
        rendered = render(params.get("text"), params.get("parse_mode"))
        markup = check_markup(params.get("reply_markup"))
        message = self.message(params)
        if rendered == message.rendered and markup == message.reply_markup:
            raise bad_request(NOT_MODIFIED)
        message.text, message.parse_mode = str(params["text"]), params.get("parse_mode")
        message.rendered, message.reply_markup = rendered, markup
        message.edit_date = int(time.time())
        return message.to_api()

    def api_editMessageReplyMarkup(self, params: dict[str, Any]) -> Any:
        markup = check_markup(params.get("reply_markup"))
        message = self.message(params)
        if markup == message.reply_markup:
            raise bad_request(NOT_MODIFIED)
        message.reply_markup = markup
        message.edit_date = int(time.time())
        return message.to_api()

    def api_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        if not params.get("callback_query_id"):
            raise bad_request("QUERY_ID_INVALID")
        return True

    def api_deleteWebhook(self, params: dict[str, Any]) -> Any:
        return True

    def api_setMyCommands(self, params: dict[str, Any]) -> Any:
        if not isinstance(params.get("commands"), list):
            raise bad_request("can't parse commands JSON object")
        return True

    def api_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = as_int(params.get("offset"))
        limit = as_int(params.get("limit"))
        limit = DEFAULT_LIMIT if limit is None else max(1, min(DEFAULT_LIMIT, limit))
        timeout = max(0.0, as_number(params.get("timeout")) or 0.0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self.allowed_updates = [str(kind) for kind in allowed]
        self.polls += 1
        poll = self.polls
        self.changed.notify_all()  # an older poll still held ends now
        if offset is not None and offset < 0:
            self.updates = self.updates[offset:]
        elif offset is not None:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        deadline = time.monotonic() + timeout
        while True:
            if self.polls != poll:
                raise ApiError(409, CONFLICT)
            if self.allowed_updates:
                wanted = set(self.allowed_updates)
                self.updates = [u for u in self.updates if wanted.intersection(u)]
            if self.updates:
                return self.updates[:limit]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self.changed.wait(remaining)

    # The control side.

    def inject(self, updates: Any) -> list[int]:
        if not isinstance(updates, list) or not all(isinstance(u, dict) for u in updates):
            raise ValueError("a JSON list of update objects is expected")
        with self.changed:
            ids = []
            for update in updates:
                self.last_update_id += 1
                self.updates.append({"update_id": self.last_update_id, **update})
                ids.append(self.last_update_id)
            self.changed.notify_all()
            return ids

    def fail(self, spec: Any) -> None:
        if not isinstance(spec, dict) or as_int(spec.get("status")) is None:
            raise ValueError('{"method", "status"[, "count", "retry_after", "description"]}')
        retry_after = spec.get("retry_after")
        failure = Failure(
            method=str(spec.get("method", "*")),
            status=int(spec["status"]),
            count=as_int(spec.get("count", 1)) or 0,
            retry_after=None if retry_after is None else as_int(retry_after),
            description=spec.get("description"),
        )
        with self.changed:
            if failure.count > 0:
                self.failures.append(failure)

    def calls_of(self, method: str | None, count: int, wait: float) -> list[dict[str, Any]]:
        def matching() -> list[dict[str, Any]]:
            return [c for c in self.calls if method is None or c["method"] == method]

        def enough() -> bool:
            return sum(c["status"] is not None for c in matching()) >= count

        with self.changed:
            self.changed.wait_for(enough, timeout=wait)
            copy: list[dict[str, Any]] = json.loads(json.dumps(matching()))
            return copy

    def reset_calls(self) -> None:
        with self.changed:
            self.calls = [c for c in self.calls if c["status"] is None]  # held polls stay

    def current_messages(self) -> list[dict[str, Any]]:
        with self.changed:
            return [message.to_stub() for message in self.messages.values()]


METHODS: dict[str, Callable[[Bot, dict[str, Any]], Any]] = {
    name.removeprefix("api_").lower(): getattr(Bot, name)
    for name in dir(Bot)
    if name.startswith("api_")
}


# -- HTTP ------------------------------------------------------------------------------


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, bot: Bot) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.bot = bot

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up on a long poll is expected; no traceback."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one write (flushed after each request): sent
    # apart, they meet Nagle and delayed ACKs and each answer takes 40 ms.
    wbufsize = 1 << 16
    server: Server

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path.startswith("/_stub/"):
            self.control(url.path.removeprefix("/_stub/"), url.query, body)
            return
        match = re.fullmatch(r"/bot([^/]*)/([^/]+)/?", url.path)
        if match is None:
            self.reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        token, method = match.groups()
        if token != self.server.bot.token:
            body_401 = {"ok": False, "error_code": 401, "description": "Unauthorized"}
            self.reply(401, body_401)
            return
        error: ApiError | None = None
        params: dict[str, Any] = {}
        try:
            params = self.parameters(url.query, body)
        except ApiError as exc:
            error = exc
        self.reply(*self.server.bot.call(method, normalise(params), error))

    do_GET = do_POST

    def parameters(self, query: str, body: bytes) -> dict[str, Any]:
        """The query string's parameters, and over them the body's."""
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(query).items()}
        kind = self.headers.get_content_type()
        if not body.strip():
            return params
        if kind == "application/json":
            try:
                decoded = json.loads(body)
            except ValueError:
                raise bad_request("can't parse JSON") from None
            if not isinstance(decoded, dict):
                raise bad_request("can't parse JSON: an object is expected")
            params.update(decoded)
        elif kind == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            params.update({k: v[-1] for k, v in form.items()})
        else:
            raise bad_request(f"unsupported Content-Type {kind!r}")
        return params

    def control(self, action: str, query: str, body: bytes) -> None:
        bot = self.server.bot
        options = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            if action == "updates" and self.command == "POST":
                self.reply(200, bot.inject(json.loads(body or b"null")))
            elif action == "fail" and self.command == "POST":
                bot.fail(json.loads(body or b"null"))
                self.reply(200, True)
            elif action == "calls" and self.command == "GET":
                count = as_int(options.get("count")) or 0
                wait = as_number(options.get("wait")) or 0.0
                self.reply(200, bot.calls_of(options.get("method"), count, wait))
            elif action == "messages" and self.command == "GET":
                self.reply(200, bot.current_messages())
            elif action == "reset-calls" and self.command == "POST":
                bot.reset_calls()
                self.reply(200, True)
            else:
                self.reply(404, {"error": f"no {self.command} /_stub/{action}"})
        except ValueError as exc:
            self.reply(400, {"error": str(exc)})

    def reply(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: /_stub/calls is the log."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = Server(args.port, Bot(args.token))
    print(f"PORT {server.server_address[1]}", flush=True)
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
