"""Telegram message texts: escaping, safe cutting at 4096, and the rate limiter."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters.telegram import RateLimiter
from adapters.telegram_format import (
    MAX_MESSAGE,
    cut_html,
    escape,
    render_event,
    render_progress,
    render_question,
    time_left,
)
from supervisor import Event
from supervisor._core.events import Source
from supervisor._core.messages import parse_message

_PARTS = re.compile(r"<(/?)([a-z-]+)[^>]*>|&(#\d+|lt|gt|amp|quot);|&|<|>|[^<>&]+")


def well_formed(text: str) -> bool:
    """Balanced tags, and every & starts a known entity (what Telegram insists on)."""
    stack: list[str] = []
    for match in _PARTS.finditer(text):
        token = match.group(0)
        if match.group(2):
            if match.group(1):
                if not stack or stack.pop() != match.group(2):
                    return False
            else:
                stack.append(match.group(2))
        elif token in ("&", "<", ">"):
            return False
    return not stack


def visible(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text)


def event(name: str, source: Source = "child", **data: Any) -> Event:
    return Event(
        1, "loop", 1_000, source, parse_message({"type": "ipc", "event": name, "data": data})
    )


texts = st.text(alphabet=st.sampled_from("ab <>&é😀\n\"'"), max_size=300)


@settings(max_examples=400)
@given(
    st.lists(st.tuples(st.sampled_from(["b", "i", "code", "pre", ""]), texts), max_size=30),
    st.integers(20, 600),
)
def test_cut_html_is_short_and_well_formed(pieces: list[tuple[str, str]], limit: int) -> None:
    text = "".join(
        f"<{tag}>{escape(body)}</{tag}>" if tag else escape(body) for tag, body in pieces
    )
    cut = cut_html(text, limit)
    assert len(cut) <= limit
    assert well_formed(cut)
    if len(text) <= limit:
        assert cut == text
    else:
        assert cut.endswith("…") or re.search(r"…(</[a-z]+>)+$", cut)
        # What is kept is a prefix of the visible text.
        assert visible(text).startswith(visible(cut).rstrip("…").removesuffix("…"))


def test_cut_never_splits_an_entity_or_a_tag() -> None:
    text = "<b>" + "&amp;" * 2000 + "</b>"
    cut = cut_html(text, 4096)
    assert len(cut) <= 4096
    assert cut.endswith("&amp;…</b>")
    assert well_formed(cut)


@settings(max_examples=200)
@given(title=st.text(max_size=200), error=st.text(max_size=3000))
def test_child_text_never_breaks_the_markup(title: str, error: str) -> None:
    failed = event("task_failed", taskId="<T&1>", title=title, error=error)
    text = render_event(failed)
    assert well_formed(text)
    assert len(text) <= MAX_MESSAGE
    assert "<b>&lt;T&amp;1&gt;</b>" in text


def test_messages_for_each_kind() -> None:
    assert render_event(event("task_start", taskId="F-1", title="Login")) == "▶️ <b>F-1</b> Login"
    done = render_event(
        event("task_complete", taskId="F-1", title="Login", duration=3.0), duration=110
    )
    assert done == "✅ <b>F-1</b> Login\n<i>took 1m50s</i>"
    lost = render_event(
        event(
            "task_failed", "supervisor", taskId="F-2", error="process exited with code 3", lost=True
        )
    )
    assert lost.startswith("💀 <b>F-2</b> <i>(lost)</i>\n<pre>process exited with code 3</pre>")
    assert render_progress(
        event("progress_update", taskId="F-1", progress=0.45, message="tests")
    ) == ("⏳ <b>F-1</b> 45% tests")
    text, choices = render_question(
        event("approval_request", action="delete", description="rm -rf build/", severity="high")
    )
    assert text.splitlines() == [
        "⚠️ <b>Approval needed</b>",
        "<b>Action:</b> delete",
        "rm -rf build/",
        "<b>Severity:</b> high",
        "<i>loop</i>",
    ]
    assert choices == [("✅ Approve", "approve"), ("❌ Deny", "deny")]
    text, choices = render_question(
        event(
            "question",
            question="Which format?",
            options=[{"id": "iso", "label": "ISO 8601"}, {"id": "us"}],
        )
    )
    assert text.startswith("❓ <b>Which format?</b>")
    assert choices == [("ISO 8601", "iso"), ("us", "us")]


def test_rate_limiter_spaces_messages() -> None:
    limiter = RateLimiter(per_chat=1.0, rate=30.0)
    now = time.monotonic()
    waits = [limiter.reserve(1, now) for _ in range(3)]
    assert waits == pytest.approx([0.0, 1.0, 2.0])
    # Another chat only waits for the global spacing.
    assert limiter.reserve(2, now) == pytest.approx(1 / 30)
    many = RateLimiter(per_chat=0.0, rate=30.0)
    assert many.reserve(1, now + 10) == 0
    assert [round(many.reserve(chat, now + 10), 4) for chat in range(2, 5)] == [
        round(1 / 30, 4),
        round(2 / 30, 4),
        round(3 / 30, 4),
    ]


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (30, "⏳ <b>19s</b> to answer"),  # 19.8 s: whole seconds, as a clock shows
        (5, "⌛ <b>no time left</b> to answer"),
        (0, None),
        (None, None),
    ],
)
def test_time_left_counts_from_receipt_and_ignores_meaningless_figures(
    timeout: float | None, expected: str | None
) -> None:
    data: dict[str, Any] = {"question": "Proceed?"}
    if timeout is not None:
        data["timeout"] = timeout
    message = parse_message({"type": "ipc", "event": "question", "data": data})
    event = Event(1, "loop", 1_000_000, "child", message)  # received at t = 1000 s
    assert time_left(event, now=1010.2) == expected


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), float("-inf")])
def test_a_timeout_that_is_no_number_never_reaches_a_card(timeout: float) -> None:
    data = {"question": "Proceed?", "timeout": timeout}
    with pytest.raises(ValidationError, match="finite number"):
        parse_message({"type": "ipc", "event": "question", "data": data})
