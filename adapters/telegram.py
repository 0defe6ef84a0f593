"""Telegram: task news in a chat, and questions and approvals answered with a tap.

:class:`TelegramBot` joins a :class:`~supervisor.Supervisor` in two ways:

- **As two routes** (``bot.route_configs()`` with ``bot.sink``; questions and
  approvals on one of their own, so they never wait behind news): events become
  chat messages (HTML parse mode). A ``progress_update`` edits one message
  per task instead of sending a new one. A ``question`` or
  ``approval_request`` gets inline buttons. When an answer arrives from any
  channel (a tap, ``supervise ctl answer``, the SDK) or the request times
  out, the question's message is edited to say so, and its buttons go.
- **As a poller** (:meth:`TelegramBot.run`): getUpdates long polling
  receives taps and commands. A tap from an allowed user becomes
  ``Supervisor.answer(messageId, response)`` through the program's answer
  vocabulary (approve → ``y`` for loopwork, never the word ``deny``). A tap
  from anyone else is refused with an alert and reported, and nothing
  reaches the child. ``/status``, ``/pending``, ``/restart NAME`` and
  ``/stop NAME`` work from the chat (the last two for allowed users only).

Towards Telegram it behaves:

- At most one message a second to the chat and 30 a second overall.
- HTTP 429 waits ``parameters.retry_after``; 5xx and network errors are
  retried with backoff (by the route, like any sink).
- Other 4xx errors dead-letter with Telegram's description.
- Texts are cut to 4096 characters at a safe place.
- ``callback_data`` is ``q:INDEX:DIGEST:MESSAGE_ID``: the option's place, a
  fingerprint of what the card asks, and the messageId, so a bot that did not
  send the card (a restarted hub) can carry out a tap on it while the same
  question is pending. A messageId too long for the 64-byte limit gets a
  random token (``a:Xy3_9kQp``) that only the bot that sent it knows.
- The bot token appears in no log line, error, event or metric label.
"""

from __future__ import annotations

import bisect
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
import trio

from supervisor import (
    AlreadyAnsweredError,
    AnswerError,
    ApprovalRequest,
    ControlError,
    Event,
    ProgramStatus,
    Question,
    QuestionExpiredError,
    RouteConfig,
    SinkError,
    Supervisor,
    TelegramConfig,
    UnknownQuestionError,
)
from supervisor.lowlevel import (
    QuestionAnsweredData,
    control_request,
    pending_options,
    question_digest,
)
from supervisor.sinks import format_duration

from .telegram_format import (
    cut_html,
    escape,
    render_event,
    render_progress,
    render_question,
    time_left,
)

__all__ = [
    "URGENT_EVENTS",
    "BotApi",
    "BotApiError",
    "ChatBackend",
    "LocalBackend",
    "RateLimiter",
    "TelegramBot",
]

_NOT_MODIFIED = "message is not modified"
_MAX_TRACKED = 1000
"""Tasks (progress message, start time) and questions the chat remembers.

The child picks task ids and message ids, so these tables are bounded: the
least recently used entry goes first. A task forgotten this way gets a new
progress message instead of an edit, and no measured duration; a question
forgotten this way is no longer edited with its verdict, and a tap on it is
told it is no longer open. A real run has a few open at once."""
_MAX_TOKENS = 10 * _MAX_TRACKED
_CALLBACK_DATA_MAX = 64
"""Telegram's limit on an inline button's ``callback_data``, in bytes."""
_ROUTE = "telegram"
URGENT_EVENTS = frozenset(
    {
        "question",
        "approval_request",
        "question_answered",
        "question_timeout",
        "question_withdrawn",
        "approval_ignored",
    }
)
"""What a person must see at once: these never wait behind routine news."""


class BotApiError(SinkError):
    """A Bot API call failed; the message never holds the token.

    A :class:`SinkError` (sink ``telegram``), so one ``except SupervisorError``
    covers it; its message names the method instead of the sink.

    Attributes:
        method: the API method.
        status: the HTTP status, or None for a network error.
        description: Telegram's ``description`` (or the network problem).
        retry_after: seconds Telegram asked us to wait (429).
        retryable: whether the same call may succeed later.
    """

    def __init__(
        self, method: str, status: int | None, description: str, retry_after: float | None = None
    ) -> None:
        where = f"HTTP {status}" if status is not None else "network error"
        retryable = status is None or status == 429 or status >= 500
        problem = f"{method}: {where}: {description}"
        super().__init__("telegram", problem, retryable=retryable, retry_after=retry_after)
        self.args = (f"telegram {problem}",)
        self.method = method
        self.status = status
        self.description = description


def _poll_problem(exc: BotApiError) -> str:
    """What a failed getUpdates is reported as, with what to do about a 409."""
    if exc.status == 409 and exc.method == "getUpdates":
        # Telegram ends a long poll when a newer one on the same token comes.
        return (
            "telegram getUpdates: another program polls this bot token "
            "(Telegram answered 409 Conflict), "
            "so taps and commands reach only one of them; for several instances "
            "run one supervise hub (polling again with backoff)"
        )
    return f"{exc} (polling again with backoff)"


class BotApi:
    """One Bot API call at a time per caller, over one httpx client."""

    def __init__(
        self, token: str, api_url: str, *, client: httpx.AsyncClient | None = None
    ) -> None:
        self._token = token
        self._base = f"{api_url.rstrip('/')}/bot{token}/"
        self._client = client or httpx.AsyncClient()
        self._own_client = client is None

    def redact(self, text: str) -> str:
        return text.replace(self._token, "<token>")

    async def call(self, method: str, params: Mapping[str, Any], *, wait: float = 30.0) -> Any:
        """``method`` with ``params`` (as JSON; None values left out).

        Returns its ``result``, or raises :class:`BotApiError`. ``wait`` is
        the HTTP timeout (a long poll needs more than its own ``timeout``).
        """
        body = {key: value for key, value in params.items() if value is not None}
        try:
            with trio.fail_after(wait + 5):
                response = await self._client.post(self._base + method, json=body, timeout=wait)
        except (httpx.HTTPError, trio.TooSlowError) as exc:
            problem = self.redact(str(exc) or type(exc).__name__)
            raise BotApiError(method, None, problem) from None
        try:
            reply = response.json()
        except ValueError:
            reply = {}
        if response.status_code == 200 and reply.get("ok"):
            return reply.get("result")
        description = self.redact(str(reply.get("description") or response.reason_phrase))
        retry_after = (reply.get("parameters") or {}).get("retry_after")
        if retry_after is None and response.status_code == 429:
            retry_after = _header_seconds(response.headers.get("retry-after"))
        raise BotApiError(
            method,
            response.status_code,
            description,
            float(retry_after) if isinstance(retry_after, int | float) else None,
        )

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


def _header_seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class RateLimiter:
    """Spacing for messages: ``per_chat`` seconds apart per chat, ``rate`` a second overall.

    Sans-IO: :meth:`reserve` takes the monotonic time and says how long to
    wait; the slot is taken at once, so concurrent senders queue up. A
    message that waits for its chat does not hold up other chats: the
    overall spacing only keeps any two sends ``1 / rate`` apart.
    """

    def __init__(self, per_chat: float = 1.0, rate: float = 30.0) -> None:
        self.per_chat = per_chat
        self.interval = 1.0 / rate
        self._next_chat: dict[int, float] = {}
        self._taken: list[float] = []  # send times reserved, sorted

    def reserve(self, chat: int, now: float) -> float:
        self._taken = [slot for slot in self._taken if slot > now - self.interval]
        at = max(now, self._next_chat.get(chat, -math.inf))
        for slot in self._taken:
            if slot + self.interval <= at:
                continue
            if at + self.interval <= slot:
                break  # a gap before this slot
            at = slot + self.interval
        bisect.insort(self._taken, at)
        self._next_chat[chat] = at + self.per_chat
        return at - now


@dataclass
class _Asked:
    """A question or approval shown in the chat."""

    tg_message_id: int
    html: str
    closed: bool = False
    verdict: str = ""


_DIGESTED = frozenset({"task_start", "task_complete", "loop_start", "loop_end", "progress_update"})
"""Routine news, which a digest gathers (failures and questions never wait)."""
_DIGEST_LINES = 30


@dataclass
class _Digest:
    """One program's digest message: the lines of the current window."""

    started: float
    lines: list[str] = field(default_factory=list)
    tg_message_id: int | None = None
    dirty: bool = False


@dataclass
class _Run:
    """A loop between its loop_start and loop_end, as the chat counted it."""

    started: float
    completed: int = 0
    failed: int = 0
    lost: int = 0


@dataclass
class _Card:
    """A task's message: what it said when the task started, and what it says now."""

    tg_message_id: int
    head: str
    shown: str


class TelegramSink:
    """The route's sink: hands events to the bot."""

    def __init__(self, bot: TelegramBot) -> None:
        self._bot = bot
        self.name = "telegram"

    async def send(self, event: Event) -> None:
        try:
            await self._bot.deliver(event)
        except BotApiError as exc:
            raise SinkError(
                self.name, str(exc), retryable=exc.retryable, retry_after=exc.retry_after
            ) from None

    async def aclose(self) -> None:
        await self._bot.aclose()


class ChatBackend(Protocol):
    """What the chat needs of the programs it speaks for.

    :class:`LocalBackend` is one :class:`Supervisor` (``supervise --telegram``);
    ``supervise hub`` gives one that spans every instance it serves, with
    programs named ``INSTANCE/PROGRAM``.
    """

    def names(self) -> list[str]:
        """The programs, by the names the chat uses for them."""
        ...

    async def answer(self, message_id: str, response: str, *, by: str) -> QuestionAnsweredData:
        """Answer a question; raises the :class:`AnswerError` kinds when refused."""
        ...

    async def status(self) -> Sequence[ProgramStatus]:
        """Every program's status, named as in :meth:`names`."""
        ...

    async def pending(self) -> list[tuple[str, str]]:
        """(program, question or description) for everything waiting for an answer."""
        ...

    async def control(self, command: str, name: str) -> None:
        """``restart`` or ``stop`` the program ``name``; KeyError or ControlError if not."""
        ...

    async def options(self, message_id: str, digest: str) -> list[str] | None:
        """The answer options of the question pending under ``message_id``, or None.

        None too when what is pending there now is not what ``digest``
        (:func:`~supervisor.lowlevel.question_digest`) fingerprints: a card
        for one version of a prompt never answers another.
        """
        ...


class LocalBackend:
    """The chat of one :class:`Supervisor`, in the same process."""

    def __init__(self, sup: Supervisor) -> None:
        self._sup = sup

    def names(self) -> list[str]:
        return list(self._sup.programs)

    async def answer(self, message_id: str, response: str, *, by: str) -> QuestionAnsweredData:
        answered = await self._sup.answer(message_id, response, by=by)
        return answered.data

    async def status(self) -> Sequence[ProgramStatus]:
        return self._sup.status()

    async def pending(self) -> list[tuple[str, str]]:
        found = []
        for program in self._sup.programs.values():
            for question in program.pending_questions():
                data = question.message.data
                text = getattr(data, "question", None) or getattr(data, "description", None)
                found.append((question.program, str(text or "")))
        return found

    async def options(self, message_id: str, digest: str) -> list[str] | None:
        reply = await control_request(self._sup, {"cmd": "pending"})
        return pending_options(reply.get("result"), message_id, digest)

    async def control(self, command: str, name: str) -> None:
        if command == "restart":
            self._sup.restart(name)
        else:
            self._sup.stop(name)


class TelegramBot:
    """A Telegram chat for one :class:`Supervisor`, or for a hub's :class:`ChatBackend`.

    Args:
        sup: the supervisor whose events it reports and whose questions it
            answers, or a :class:`ChatBackend` standing for several.
        config: settings with the token and chat filled in
            (:meth:`TelegramConfig.resolved`).
        report: where one-line warnings go (refused taps, polling errors).
        client: an httpx client to use (tests); by default its own.
    """

    def __init__(
        self,
        sup: Supervisor | ChatBackend,
        config: TelegramConfig,
        *,
        report: Any = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if config.token is None or config.chat_id is None:
            raise ValueError("TelegramBot needs config.resolved(): no token or chat id")
        if isinstance(sup, Supervisor):
            # The token is supervise's, not the child's.
            sup.withhold_env(*config.secret_env())
            self.backend: ChatBackend = LocalBackend(sup)
        else:
            self.backend = sup
        self.config = config
        self.chat_id = config.chat_id
        self.api = BotApi(config.token, config.api_url, client=client)
        self._report = report or (lambda line: None)
        self._limiter = RateLimiter(config.per_chat_interval, config.global_rate)
        self._asked: dict[str, _Asked] = {}
        self._tokens: dict[str, tuple[str, str]] = {}
        self._cards: dict[tuple[str, str], _Card] = {}
        self._runs: dict[str, _Run] = {}
        self._digests: dict[str, _Digest] = {}
        self._task_starts: dict[tuple[str, str], float] = {}
        self._users = {user for user in config.allowed_users if isinstance(user, int)}
        self._names = {user[1:].lower() for user in config.allowed_users if isinstance(user, str)}
        if not config.allowed_users and self.chat_id > 0:
            self._users.add(self.chat_id)  # a private chat: its user
        self.sink = TelegramSink(self)
        self._closed = False

    # -- the route side ---------------------------------------------------------------

    def route_config(self) -> RouteConfig:
        """The route of routine news for :attr:`sink`: retried for an hour, progress coalesced.

        Questions, approvals and what settles them are not on it: they have
        a route of their own (:meth:`urgent_route_config`), so a card never
        waits behind a backlog of news at one message a second.
        """
        return RouteConfig.model_validate(
            {
                "name": _ROUTE,
                "events": [e for e in self.config.events if e not in URGENT_EVENTS],
                "coalesce": ["progress_update"],
                "retry": {"max_attempts": 0, "initial": 1.0, "cap": 60.0},
                "ttl": 3600,
            }
        )

    def urgent_route_config(self) -> RouteConfig:
        """The route of questions and approvals and their outcomes, in their order."""
        return RouteConfig.model_validate(
            {
                "name": f"{_ROUTE}-questions",
                "events": [e for e in self.config.events if e in URGENT_EVENTS] or ["question"],
                "retry": {"max_attempts": 0, "initial": 1.0, "cap": 60.0},
                "ttl": 3600,
            }
        )

    def route_configs(self) -> list[RouteConfig]:
        """Both routes, to add with :attr:`sink`."""
        return [self.route_config(), self.urgent_route_config()]

    async def deliver(self, event: Event) -> None:
        """Say ``event`` in the chat (or edit what was said about it)."""
        name = event.event
        if name in ("question", "approval_request") and event.source == "child":
            await self._ask(event)
        elif name == "question_answered":
            await self._answered_elsewhere(event)
        elif name == "question_timeout":
            data = event.data
            default = f": {escape(data.default)} applied" if data.default else ""
            await self._close(
                data.messageId, f"⌛ <b>Timed out</b> after {format_duration(data.waited)}{default}"
            )
        elif name == "question_withdrawn":
            data = event.data
            await self._close(data.messageId, f"↩️ <b>Withdrawn</b>: {escape(data.reason)}")
        elif name == "approval_ignored":
            await self._ignored(event)
        elif name == "progress_update":
            await self._progress_update(event)
        elif self.config.digest > 0 and name in _DIGESTED:
            self._digest(event)
        elif name in ("task_start", "task_complete", "task_failed"):
            self._count(event)
            await self._task_card(event)
        elif name == "loop_start":
            self._runs[event.program] = _Run(event.received_at / 1000)
            await self._send(render_event(event, program=self._several))
        elif name == "loop_end":
            await self._send(self._loop_end(event))
        elif name == "process_state" and not _newsworthy(event):
            return
        else:
            await self._send(
                render_event(event, duration=self._duration(event), program=self._several)
            )

    @property
    def _several(self) -> bool:
        # A hub always says where a message comes from: the fleet may grow.
        return not isinstance(self.backend, LocalBackend) or len(self.backend.names()) > 1

    def _duration(self, event: Event) -> float | None:
        """Task durations measured here, from receipt times (and what lost tasks carry)."""
        data = event.data
        task = getattr(data, "taskId", None)
        if task is None or event.event not in ("task_start", "task_complete", "task_failed"):
            return None
        key = (event.program, str(task))
        if event.event == "task_start":
            _remember(self._task_starts, key, event.received_at / 1000, _MAX_TRACKED)
            return None
        started = self._task_starts.pop(key, None)
        if started is not None:
            return max(0.0, event.received_at / 1000 - started)
        measured = getattr(data, "duration", None)
        return (
            float(measured)
            if event.source == "supervisor" and isinstance(measured, int | float)
            else None
        )

    async def _send(self, html: str, buttons: Sequence[tuple[str, str]] = ()) -> int:
        await self._pace()
        markup = _keyboard(buttons)
        result = await self.api.call(
            "sendMessage",
            {
                "chat_id": self.chat_id,
                "text": cut_html(html),
                "parse_mode": "HTML",
                "reply_markup": markup,
                "disable_web_page_preview": True,
            },
        )
        return int(result["message_id"])

    async def _edit(
        self, tg_message_id: int, html: str, buttons: Sequence[tuple[str, str]] = ()
    ) -> None:
        await self._pace()
        try:
            await self.api.call(
                "editMessageText",
                {
                    "chat_id": self.chat_id,
                    "message_id": tg_message_id,
                    "text": cut_html(html),
                    "parse_mode": "HTML",
                    "reply_markup": _keyboard(buttons),
                    "disable_web_page_preview": True,
                },
            )
        except BotApiError as exc:
            if exc.status == 400 and _NOT_MODIFIED in exc.description:
                return  # it already says this
            raise

    async def _pace(self) -> None:
        wait = self._limiter.reserve(self.chat_id, trio.current_time())
        if wait > 0:
            await trio.sleep(wait)

    async def _ask(self, event: Event) -> None:
        html, choices = render_question(event)
        asked = self._asked.get(event.message_id)
        if asked is not None:
            return  # a retry after the message went out
        message = event.message
        digest = question_digest(message) if isinstance(message, Question | ApprovalRequest) else ""
        buttons = [
            (label, self._callback_data(event.message_id, index, digest, response))
            for index, (label, response) in enumerate(choices)
        ]
        # The card says how long is left when it goes out; the verdict later
        # replaces that line (the stored html has none).
        left = time_left(event, time.time())
        tg_message_id = await self._send(f"{html}\n{left}" if left else html, buttons)
        _remember(self._asked, event.message_id, _Asked(tg_message_id, html), _MAX_TRACKED)

    def _callback_data(self, message_id: str, index: int, digest: str, response: str) -> str:
        """A button's ``callback_data``: ``q:INDEX:DIGEST:MESSAGE_ID`` when it fits.

        That form names the question and fingerprints what the card shows,
        so a bot that did not send the card (a hub restarted, or a standby
        that took over) can still carry out a tap on it, and only while the
        same question is pending (:meth:`_recall`). A messageId too long for
        Telegram's 64 bytes gets a random token only this bot knows.
        """
        data = f"q:{index}:{digest}:{message_id}"
        if not digest or len(data.encode("utf-8", "surrogatepass")) > _CALLBACK_DATA_MAX:
            data = f"a:{secrets.token_urlsafe(6)}"
            while data in self._tokens:
                data = f"a:{secrets.token_urlsafe(6)}"
        _remember(self._tokens, data, (message_id, response), _MAX_TOKENS)
        return data

    async def _recall(self, data: str, query: Mapping[str, Any]) -> tuple[str, str] | None:
        """The (messageId, response) of a tap on a card this bot has no record of.

        The card's own data names the question; the instance that has it
        pending says whether it still asks what the card shows, and which
        answer the tapped button stands for. The card is taken over, so its
        verdict replaces its buttons as for any other.
        """
        kind, _, rest = data.partition(":")
        index, _, rest = rest.partition(":")
        digest, _, message_id = rest.partition(":")
        if kind != "q" or not index.isdigit() or not digest or not message_id:
            return None
        # A card on record is this bot's own, and its data is in _tokens:
        # this one is another (older) card, which must not touch that record.
        ours = message_id in self._asked
        options = await self.backend.options(message_id, digest)
        if not ours:
            self._adopt_card(message_id, query)
        if options is None or int(index) >= len(options):
            if not ours:
                await self._close(message_id, "⌛ <b>No longer open</b>")
            return None
        return message_id, options[int(index)]

    def _adopt_card(self, message_id: str, query: Mapping[str, Any]) -> None:
        """Remember the tapped card (its Telegram id and text) to edit it later."""
        card = query.get("message") or {}
        tg_message_id, text = card.get("message_id"), card.get("text")
        if not isinstance(tg_message_id, int) or not isinstance(text, str):
            return
        # Telegram gives the text without its markup; the time-left line goes.
        shown = "\n".join(line for line in text.split("\n") if not line.startswith(("⏳", "⌛")))
        _remember(self._asked, message_id, _Asked(tg_message_id, escape(shown)), _MAX_TRACKED)

    async def _answered_elsewhere(self, event: Event) -> None:
        await self._close(event.data.messageId, _verdict(event.data, event.received_at / 1000))

    async def _close(self, message_id: str, verdict: str) -> None:
        """Show the outcome under the question and take its buttons away, once."""
        asked = self._asked.get(message_id)
        if asked is None or asked.closed:
            return
        # Its tokens stay: a late tap still reaches answer(), which says who
        # answered first.
        asked.closed = True
        try:
            await self._edit(asked.tg_message_id, f"{asked.html}\n\n{verdict}")
        except BotApiError:
            asked.closed = False  # let the route's retry do it again
            raise
        asked.verdict = verdict

    async def _ignored(self, event: Event) -> None:
        """A denied task went on: a loud message, and the card says so too."""
        await self._send(render_event(event, program=self._several))
        data = event.data
        asked = self._asked.get(data.messageId)
        if asked is None or not asked.closed:
            return
        went_on = f"🚨 <b>It went on anyway</b> (it sent {escape(data.event)})"
        await self._edit(asked.tg_message_id, f"{asked.html}\n\n{asked.verdict}\n{went_on}")

    def _digest(self, event: Event) -> None:
        """Add a line to the program's digest; :meth:`_flush_digests` sends it."""
        if event.event == "progress_update":
            return  # a digest shows what happened, not every step
        if event.event == "loop_start":
            self._runs[event.program] = _Run(event.received_at / 1000)
            line = render_event(event)
        elif event.event == "loop_end":
            line = self._loop_end(event)
        else:
            self._count(event)
            line = render_event(event, duration=self._duration(event))
        now = time.time()
        digest = self._digests.get(event.program)
        if digest is None or now - digest.started >= self.config.digest:
            digest = _Digest(started=now)
            _remember(self._digests, event.program, digest, _MAX_TRACKED)
        digest.lines.append(" · ".join(part for part in line.split("\n") if part))
        del digest.lines[:-_DIGEST_LINES]
        digest.dirty = True

    async def _flush_digests(self) -> None:
        """Send or edit every digest that changed, about once a second."""
        while True:
            await trio.sleep(1.0)
            for program, digest in list(self._digests.items()):
                if not digest.dirty:
                    continue
                text = f"🗞 <b>{escape(program)}</b>\n" + "\n".join(digest.lines)
                digest.dirty = False
                try:
                    if digest.tg_message_id is None:
                        digest.tg_message_id = await self._send(text)
                    else:
                        await self._edit(digest.tg_message_id, text)
                except BotApiError as exc:
                    digest.dirty = True  # next time
                    self._report(f"{exc} (a digest; trying again)")

    def _count(self, event: Event) -> None:
        run = self._runs.get(event.program)
        if run is None or event.event == "task_start":
            return
        lost = event.source == "supervisor" and getattr(event.data, "lost", False) is True
        if event.event == "task_complete":
            run.completed += 1
        elif lost:
            run.lost += 1
        else:
            run.failed += 1

    def _loop_end(self, event: Event) -> str:
        """What the loop did, counted here: loopwork's loop_end carries only its namespace."""
        data = event.data
        namespace = data if isinstance(data, str) else getattr(data, "namespace", None)
        head = "🏁 <b>Loop ended</b>" + (f" · {escape(str(namespace))}" if namespace else "")
        if self._several:
            head = f"<code>{escape(event.program)}</code> {head}"
        run = self._runs.pop(event.program, None)
        if run is None:
            return head
        took = format_duration(max(0.0, event.received_at / 1000 - run.started))
        counts = f"{run.completed} completed · {run.failed} failed"
        if run.lost:
            counts += f" · {run.lost} lost"
        return f"{head}\n{counts} · {took}"

    async def _task_card(self, event: Event) -> None:
        """One message per task: sent when it starts, edited when it ends."""
        key = (event.program, str(getattr(event.data, "taskId", None) or ""))
        text = render_event(event, duration=self._duration(event), program=self._several)
        if event.event == "task_start":
            card = _Card(await self._send(text), text, text)
            _remember(self._cards, key, card, _MAX_TRACKED)
            return
        found = self._cards.pop(key, None)
        if found is None:  # started before we looked, or forgotten: say it anew
            await self._send(text)
        else:
            await self._edit(found.tg_message_id, text)

    async def _progress_update(self, event: Event) -> None:
        """The task's card shows its latest step (a message of its own without a card)."""
        task = str(getattr(event.data, "taskId", None) or "")
        key = (event.program, task)
        line = render_progress(event)
        if line is None:
            return  # a bare phase word: nothing a person would read
        card = self._cards.get(key)
        if card is None:
            card = _Card(await self._send(line), "", line)
            _remember(self._cards, key, card, _MAX_TRACKED)
            return
        shown = f"{card.head}\n{line}" if card.head else line
        if shown != card.shown:
            await self._edit(card.tg_message_id, shown)
            card.shown = shown

    # -- the polling side -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive taps and commands (and send digests) until cancelled."""
        async with trio.open_nursery() as nursery:
            if self.config.digest > 0:
                nursery.start_soon(self._flush_digests)
            await nursery.start(self._poll)
            task_status.started()

    async def _poll(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """getUpdates until cancelled; errors back off, never end it."""
        offset: int | None = None
        failures = 0
        started = False
        while True:
            try:
                if not started:
                    # getUpdates is refused while a webhook is set.
                    await self.api.call("deleteWebhook", {}, wait=10)
                    task_status.started()
                    started = True
                timeout = self.config.poll_timeout
                updates = await self.api.call(
                    "getUpdates",
                    {
                        "offset": offset,
                        "timeout": int(timeout),
                        "allowed_updates": ["message", "callback_query"],
                    },
                    wait=timeout + 10,
                )
                failures = 0
            except BotApiError as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    self._report(_poll_problem(exc))
                if not started:
                    task_status.started()
                    started = True
                await trio.sleep(exc.retry_after or min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            for update in updates or ():
                offset = int(update["update_id"]) + 1
                try:
                    await self._handle(update)
                except BotApiError as exc:
                    self._report(f"{exc} (while handling an update)")

    async def _handle(self, update: Mapping[str, Any]) -> None:
        if "callback_query" in update:
            await self._tap(update["callback_query"])
        elif "message" in update:
            await self._command(update["message"])

    def _allowed(self, user: Mapping[str, Any]) -> bool:
        username = str(user.get("username") or "").lower()
        return user.get("id") in self._users or (bool(username) and username in self._names)

    async def _tap(self, query: Mapping[str, Any]) -> None:
        user = query.get("from") or {}
        chat = ((query.get("message") or {}).get("chat") or {}).get("id")
        if chat != self.chat_id or not self._allowed(user):
            self._report(f"telegram: refused a tap from {_who(user)} (not on the allow-list)")
            await self._answer_query(query, "You are not allowed to answer here.", alert=True)
            return
        data = str(query.get("data") or "")
        entry = self._tokens.get(data) or await self._recall(data, query)
        if entry is None:
            await self._answer_query(query, "This request is no longer open.")
            return
        message_id, response = entry
        try:
            answered = await self.backend.answer(
                message_id, response, by=f"telegram:{_handle(user)}"
            )
        except AlreadyAnsweredError as exc:
            await self._answer_query(query, f"Already answered by {exc.by} ({exc.response}).")
            return
        except (QuestionExpiredError, UnknownQuestionError) as exc:
            await self._answer_query(query, f"Too late: {exc}")
            await self._close(message_id, "⌛ <b>No longer open</b>")
            return
        except AnswerError as exc:
            await self._answer_query(query, str(exc), alert=True)
            return
        shown = {"approve": "Approved ✅", "deny": "Denied ❌"}.get(str(answered.decision), "Sent")
        await self._answer_query(query, shown)
        # The question_answered event edits the message too; whichever comes
        # first does it, once.
        await self._close(message_id, _verdict(answered, time.time()))

    async def _answer_query(
        self, query: Mapping[str, Any], text: str, *, alert: bool = False
    ) -> None:
        await self.api.call(
            "answerCallbackQuery",
            {"callback_query_id": query.get("id"), "text": text[:200], "show_alert": alert or None},
        )

    async def _command(self, message: Mapping[str, Any]) -> None:
        text = str(message.get("text") or "").strip()
        chat = (message.get("chat") or {}).get("id")
        if not text.startswith("/") or chat != self.chat_id:
            return
        command, _, argument = text.partition(" ")
        command = command.split("@", 1)[0].lower()
        user = message.get("from") or {}
        if command == "/status":
            await self._send(await self._status_html())
        elif command == "/pending":
            await self._send(await self._pending_html())
        elif command in ("/restart", "/stop"):
            if not self._allowed(user):
                self._report(
                    f"telegram: refused {command} from {_who(user)} (not on the allow-list)"
                )
                await self._send(f"🚫 {escape(_who(user))} may not use {command}.")
                return
            await self._send(await self._control(command, argument.strip()))

    async def _status_html(self) -> str:
        lines = ["<b>Programs</b>"]
        for status in await self.backend.status():
            pid = f" pid {status.pid}" if status.pid else ""
            lines.append(
                f"• <b>{escape(status.name)}</b> {escape(status.state)}{pid} · "
                f"{status.tasks_in_flight} task(s) · {status.pending_questions} pending · "
                f"{status.restarts} restart(s)"
            )
        return "\n".join(lines)

    async def _pending_html(self) -> str:
        pending = await self.backend.pending()
        if not pending:
            return "Nothing is waiting for an answer."
        lines = ["<b>Waiting for an answer</b>"]
        for program, text in pending:
            lines.append(f"• {escape(program)}: {escape(text[:200])}")
        return "\n".join(lines)

    async def _control(self, command: str, name: str) -> str:
        if not name:
            names = escape(", ".join(self.backend.names()))
            return f"Usage: {command} NAME (programs: {names})"
        try:
            await self.backend.control(command.removeprefix("/"), name)
        except (KeyError, ControlError) as exc:
            return f"⚠️ {escape(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc))}"
        verb = "Restarting" if command == "/restart" else "Stopping"
        return f"{verb} <b>{escape(name)}</b>."

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.api.aclose()


def _newsworthy(event: Event) -> bool:
    """State changes a person wants on their phone: crashes, restarts, giving up."""
    data = event.data
    if data.to in ("backoff", "fatal"):
        return True
    if data.to == "exited":
        return "code 0" not in data.reason
    return data.to == "stopping" and "restart" in data.reason


_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


def _remember(table: dict[_Key, _Value], key: _Key, value: _Value, limit: int) -> None:
    """Set ``table[key]`` as the most recent entry; forget the oldest beyond ``limit``."""
    table.pop(key, None)
    table[key] = value
    while len(table) > limit:
        del table[next(iter(table))]


def _keyboard(buttons: Sequence[tuple[str, str]]) -> dict[str, Any] | None:
    if not buttons:
        return None
    return {
        "inline_keyboard": [[{"text": label, "callback_data": data}] for label, data in buttons]
    }


def _verdict(answer: QuestionAnsweredData, at: float) -> str:
    """``✅ approve by @alice at 14:03:22``: the line under an answered question.

    In the chat, ``telegram:@alice`` is just ``@alice``.
    """
    icon = {"approve": "✅", "deny": "❌"}.get(str(answer.decision), "💬")
    decision = escape(answer.decision or answer.response or "(an empty line)")
    who = escape(answer.by.removeprefix("telegram:"))
    return f"{icon} <b>{decision}</b> by {who} at {time.strftime('%H:%M:%S', time.localtime(at))}"


def _who(user: Mapping[str, Any]) -> str:
    """``@mallory (id 4242)``, or ``id 4242`` without a username: who was refused.

    A username can be changed and then taken by someone else; the numeric id
    cannot, so a refusal names both, and the id is what goes on the allow-list.
    """
    user_id = user.get("id")
    ident = f"id {user_id}" if type(user_id) is int else None
    username = _printable(user.get("username"))
    if username and ident:
        return f"@{username} ({ident})"
    if username:
        return f"@{username}"
    return ident or "someone"


def _handle(user: Mapping[str, Any]) -> str:
    """``@alice``, or the numeric id without a username: who answered, in short."""
    username = _printable(user.get("username"))
    if username:
        return f"@{username}"
    user_id = user.get("id")
    return str(user_id) if type(user_id) is int else "someone"


def _printable(value: object) -> str:
    """A username fit for one line of text: control characters dropped, bounded."""
    if not isinstance(value, str):
        return ""
    return "".join(ch for ch in value if ch.isprintable())[:64]
