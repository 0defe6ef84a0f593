"""The sans-IO frame decoder: the rules of the format and its two invariants."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from supervisor import Frame, FrameDecoder, MalformedFrame, Output, validate_payload
from supervisor._core.frames import DecodedItem
from supervisor.lowlevel import LineEndRemoved, Rejected

Item = DecodedItem[object]


def json_validator(payload: bytes) -> object:
    """A small validator: any JSON object with "type": "ipc"."""
    try:
        value = json.loads(payload)
    except ValueError as exc:
        return Rejected("json", str(exc))
    if not isinstance(value, dict) or value.get("type") != "ipc":
        return Rejected("type", "not ipc")
    return value


def decode(chunks: Sequence[bytes], max_frame_bytes: int = 1 << 20) -> list[Item]:
    decoder: FrameDecoder[object] = FrameDecoder(json_validator, max_frame_bytes=max_frame_bytes)
    items: list[Item] = []
    for chunk in chunks:
        items.extend(decoder.feed(chunk))
    items.extend(decoder.close())
    return items


def merged(items: list[Item]) -> list[Item]:
    """Join adjacent Output items, which chunking may split differently."""
    result: list[Item] = []
    for item in items:
        if isinstance(item, Output) and result and isinstance(result[-1], Output):
            result[-1] = Output(result[-1].data + item.data)
        elif not (isinstance(item, Output) and not item.data):
            result.append(item)
    return result


def plain(items: list[Item]) -> bytes:
    return b"".join(item.data for item in items if isinstance(item, Output))


def reassembled(items: list[Item]) -> bytes:
    parts = []
    for item in items:
        if isinstance(item, Output):
            parts.append(item.data)
        elif isinstance(item, Frame | LineEndRemoved):
            parts.append(item.raw)
    return b"".join(parts)


def frame(event: str = "task_start", **data: object) -> bytes:
    body = json.dumps({"type": "ipc", "event": event, "data": data}, ensure_ascii=False)
    return b"__IPC_START__" + body.encode() + b"__IPC_END__"


def test_frame_alone_on_its_line_takes_its_newline() -> None:
    """A frame on a line of its own leaves no blank line behind."""
    items = decode([b"before\n" + frame(taskId="A") + b"\nafter\n"])
    assert plain(items) == b"before\nafter\n"
    assert [type(i) for i in items] == [Output, Frame, LineEndRemoved, Output]


def test_frame_alone_takes_crlf_under_a_pty() -> None:
    """Under a pty frames end with \\r\\n; both bytes go with the frame."""
    items = decode([frame() + b"\r\nnext\r\n"])
    assert plain(items) == b"next\r\n"
    assert LineEndRemoved(b"\r\n") in items


def test_frame_mid_line_keeps_text_and_line_ending() -> None:
    """A frame inside a line is cut out; the text around it and the newline stay."""
    items = decode([b"text " + frame() + b" more\n"])
    assert plain(items) == b"text  more\n"


def test_frame_after_text_keeps_newline() -> None:
    """A frame that follows text on its line (as loopwork's DEMO-004) keeps the newline."""
    items = decode([b"Done: DEMO-004" + frame() + b"\n" + frame() + b"\n"])
    assert plain(items) == b"Done: DEMO-004\n"
    assert sum(isinstance(i, Frame) for i in items) == 2


def test_consecutive_frames_on_one_line_leave_no_blank_line() -> None:
    """Two frames back to back at a line start remove the line entirely."""
    assert plain(decode([b"a\n" + frame() + frame() + b"\nb"])) == b"a\nb"


def test_pretty_multiline_payload() -> None:
    """AI agents write the JSON over several lines with whitespace around it."""
    body = b'\n{\n  "type": "ipc",\r\n  "event": "question",\n  "data": {"question": "Q?"}\n}\n'
    items = decode([b"__IPC_START__" + body + b"__IPC_END__\n"])
    frames = [i for i in items if isinstance(i, Frame)]
    assert len(frames) == 1
    assert plain(items) == b""


def test_marker_split_at_every_byte() -> None:
    """Markers and payload may be split at any byte, including inside UTF-8."""
    data = b"x\xc3\xa9\n" + frame(title="caf\u00e9 \u2603") + b"\ny"
    whole = merged(decode([data]))
    for cut in range(len(data) + 1):
        assert merged(decode([data[:cut], data[cut:]])) == whole
    assert merged(decode([data[i : i + 1] for i in range(len(data))])) == whole


def test_new_start_inside_open_frame() -> None:
    """An earlier START that never closed becomes plain output; the new one opens."""
    data = b"__IPC_START__{broken " + frame() + b"\n"
    items = decode([data])
    assert plain(items) == b"__IPC_START__{broken \n"
    invalid = [i for i in items if isinstance(i, MalformedFrame)]
    assert [(i.reason, i.offset) for i in invalid] == [("unterminated", 0)]
    assert sum(isinstance(i, Frame) for i in items) == 1


def test_end_without_start_is_plain() -> None:
    """A stray END marker is ordinary output."""
    assert plain(decode([b"a __IPC_END__ b"])) == b"a __IPC_END__ b"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json}", "json"),
        (b"[1, 2]", "type"),
        (b'{"type": "other"}', "type"),
        (b"\xff\xfe", "json"),
    ],
)
def test_invalid_frame_stays_visible(payload: bytes, reason: str) -> None:
    """An invalid frame's bytes go to the output unchanged, with its line ending."""
    raw = b"__IPC_START__" + payload + b"__IPC_END__"
    items = decode([b"ok\n" + raw + b"\n"])
    assert plain(items) == b"ok\n" + raw + b"\n"
    (invalid,) = [i for i in items if isinstance(i, MalformedFrame)]
    assert invalid.reason == reason
    assert invalid.offset == 3
    assert invalid.excerpt.startswith("__IPC_START__")


def test_schema_error_names_the_field_path() -> None:
    """With the real models, a wrong field type is a schema error naming the field."""
    decoder = FrameDecoder(validate_payload)
    raw = frame("task_complete", taskId="A", duration="abc")
    items = decoder.feed(raw) + decoder.close()
    (invalid,) = [i for i in items if isinstance(i, MalformedFrame)]
    assert invalid.reason == "schema"
    assert invalid.detail.startswith("data.duration:")


def test_unterminated_at_end_of_stream() -> None:
    """An open frame at end of stream is flushed as output and reported."""
    items = decode([b'a\n__IPC_START__{"type":'])
    assert plain(items) == b'a\n__IPC_START__{"type":'
    assert [i.reason for i in items if isinstance(i, MalformedFrame)] == ["unterminated"]


def test_partial_marker_at_end_of_stream_is_output() -> None:
    """A held-back partial marker comes out at close."""
    decoder: FrameDecoder[object] = FrameDecoder(json_validator)
    assert plain(decoder.feed(b"abc__IPC_ST")) == b"abc"
    assert decoder.buffered_bytes == 8
    assert plain(decoder.close()) == b"__IPC_ST"


def test_oversize_frame_is_output_and_memory_stays_bounded() -> None:
    """A frame above the cap is reported once, passed through, never fully buffered."""
    cap = 1000
    decoder: FrameDecoder[object] = FrameDecoder(json_validator, max_frame_bytes=cap)
    items: list[Item] = list(decoder.feed(b"__IPC_START__"))
    peak = 0
    for _ in range(500):
        items.extend(decoder.feed(b"x" * 100))
        peak = max(peak, decoder.buffered_bytes)
    items.extend(decoder.feed(b"__IPC_END__\n" + frame() + b"\n"))
    items.extend(decoder.close())
    assert peak <= cap + 64
    assert [i.reason for i in items if isinstance(i, MalformedFrame)] == ["oversize"]
    assert plain(items) == b"__IPC_START__" + b"x" * 50000 + b"__IPC_END__\n"
    assert sum(isinstance(i, Frame) for i in items) == 1


def test_payload_exactly_at_cap_is_accepted() -> None:
    """The cap is inclusive: a payload of max_frame_bytes bytes is a frame."""
    body = b'{"type":"ipc","pad":"' + b"y" * 100 + b'"}'
    items = decode([b"__IPC_START__" + body + b"__IPC_END__"], max_frame_bytes=len(body))
    assert sum(isinstance(i, Frame) for i in items) == 1
    items = decode([b"__IPC_START__" + body + b"__IPC_END__"], max_frame_bytes=len(body) - 1)
    assert [i.reason for i in items if isinstance(i, MalformedFrame)] == ["oversize"]


def test_offsets_count_from_stream_start() -> None:
    """Frame offsets are byte positions in the whole stream, across feeds."""
    items = decode([b"12345", b"6789\n" + frame()])
    (found,) = [i for i in items if isinstance(i, Frame)]
    assert found.offset == 10


def test_feed_after_close_is_an_error() -> None:
    """The decoder refuses input after close()."""
    decoder: FrameDecoder[object] = FrameDecoder(json_validator)
    decoder.close()
    with pytest.raises(RuntimeError):
        decoder.feed(b"x")


# -- properties ------------------------------------------------------------

_pieces = st.sampled_from(
    [
        b"__IPC_START__",
        b"__IPC_END__",
        b"__IPC_",
        b"_",
        b"\n",
        b"\r\n",
        b"\r",
        b" ",
        b"text",
        b"\xc3\xa9",
        b"\xe2\x98",
        b'{"type":"ipc","event":"log","data":{"message":"m"}}',
        b'{"type":"ipc","event":"task_start"}',
        b"{bad",
        frame(taskId="T"),
        b"\n" + frame() + b"\r\n",
    ]
)
streams = st.one_of(
    st.lists(_pieces, max_size=40).map(b"".join),
    st.binary(max_size=200),
)


@st.composite
def chunkings(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = draw(streams)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return data, [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(chunkings(), st.sampled_from([16, 40, 1 << 20]))
@example((b"__IPC_START__IPC_END__", [b"__IPC_START__", b"IPC_END__"]), 1 << 20)
@example(
    (b"__IPC_START__a__IPC_START__IPC_END__", [b"__IPC_START__a__IPC_START__", b"IPC_END__"]),
    1 << 20,
)
def test_any_chunking_gives_the_same_items(case: tuple[bytes, list[bytes]], cap: int) -> None:
    """Feeding the stream in any pieces gives the items of feeding it whole."""
    data, chunks = case
    assert merged(decode(chunks, cap)) == merged(decode([data], cap))


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(chunkings(), st.sampled_from([16, 40, 1 << 20]))
def test_nothing_is_lost(case: tuple[bytes, list[bytes]], cap: int) -> None:
    """Plain output, frames' bytes and removed line endings rebuild the input."""
    data, chunks = case
    assert reassembled(decode(chunks, cap)) == data


@settings(max_examples=300)
@given(st.lists(st.text(max_size=20), max_size=5), st.text(max_size=30))
def test_valid_frames_survive_any_surrounding_text(titles: list[str], text: str) -> None:
    """Every well-formed frame is found, whatever plain text surrounds it."""
    # A marker inside the payload ends the frame there (emit escapes it).
    assume("__IPC_" not in text and not any("__IPC_" in t for t in titles))
    data = b"".join(text.encode() + b"\n" + frame(title=t) + b"\n" for t in titles)
    found = [i for i in decode([data]) if isinstance(i, Frame)]
    assert [f.message["data"]["title"] for f in found] == titles  # type: ignore[index]
