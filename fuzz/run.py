"""Coverage-guided fuzzing of every parser that takes outside input (atheris).

    pip install -e '.[fuzz]'
    python fuzz/run.py TARGET [libFuzzer options, e.g. -max_total_time=300 -workers=2]

Targets: ``decoder`` (frame decoder + frame models, any chunking), ``journal``
(event lines read back from the journal), ``control`` (control-socket request
lines), ``config`` (TOML configuration files), ``filter`` (filter
expressions), ``route`` (``--route`` / ``--notify`` shortcuts). Each target
checks the parser's contract: items or one clean error, never another
exception; the decoder also checks that no byte is lost or reordered. A
failing input is written by libFuzzer as ``crash-*``; run the target again
with that file as its argument to reproduce it. The same contracts run in CI,
bounded, as hypothesis tests (``tests/test_fuzz_*.py``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from supervisor._config import load_config
    from supervisor._control.server import _parse as parse_control_request
    from supervisor._control.server import _RequestError
    from supervisor._core.errors import ConfigError, FilterError
    from supervisor._core.events import Event
    from supervisor._core.filter import compile_filter
    from supervisor._core.frames import Frame, FrameDecoder, LineEndRemoved, MalformedFrame, Output
    from supervisor._core.messages import validate_payload
    from supervisor._routing.config import parse_route_shortcut


def _decoder(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    cuts = sorted(provider.ConsumeIntListInRange(provider.ConsumeIntInRange(0, 8), 0, 4096))
    stream = provider.ConsumeBytes(provider.remaining_bytes())
    decoder = FrameDecoder(validate_payload, max_frame_bytes=512)
    items = []
    start = 0
    for cut in [*cuts, len(stream)]:
        cut = min(max(cut, start), len(stream))
        items += decoder.feed(stream[start:cut])
        start = cut
    items += decoder.close()
    # An invalid frame's bytes come as Output right before it.
    rebuilt = b"".join(
        item.raw for item in items if isinstance(item, Output | Frame | LineEndRemoved)
    )
    assert not any(isinstance(item, MalformedFrame) and item.offset > len(stream) for item in items)
    assert rebuilt == stream, "the decoder lost or reordered bytes"


def _journal(data: bytes) -> None:
    try:
        event = Event.from_json(data)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return  # what Journal.read skips and reports
    assert Event.from_json(event.to_json()).seq == event.seq


def _control(data: bytes) -> None:
    try:
        request = parse_control_request(data)
    except _RequestError:
        return
    assert isinstance(request, dict)


_CONFIG = Path(tempfile.mkdtemp(prefix="fuzzcfg")) / "supervise.toml"


def _config(data: bytes) -> None:
    _CONFIG.write_bytes(data)
    try:
        load_config(_CONFIG, environ={})
    except ConfigError as exc:
        assert "\n" not in str(exc), "a configuration error is one line"  # noqa: PT017


def _filter(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        compile_filter(text)
    except FilterError as exc:
        assert "\n" not in str(exc).strip(), "a filter error is one line"  # noqa: PT017


def _route(data: bytes) -> None:
    try:
        parse_route_shortcut(data.decode("utf-8", "replace"))
    except (ValueError, ConfigError):
        return


TARGETS: dict[str, Callable[[bytes], None]] = {
    "decoder": _decoder,
    "journal": _journal,
    "control": _control,
    "config": _config,
    "filter": _filter,
    "route": _route,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python fuzz/run.py {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv[1]]
    os.environ.setdefault("PYTHONHASHSEED", "0")
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
