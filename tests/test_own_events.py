"""The table of supervise's own events is complete and needs no imports but its own."""

from __future__ import annotations

import json
import subprocess
import sys

import supervisor
from supervisor._core.events import OWN_EVENTS, _OwnMessage

_DECODE_EVERY_OWN_EVENT = """
import json, sys
from pydantic import ValidationError
from supervisor._core.events import Event
for name in json.loads(sys.argv[1]):
    line = json.dumps({"seq": 1, "program": "p", "received_at": 1, "source": "supervisor",
                       "type": "ipc", "version": "1.0", "event": name, "data": {},
                       "timestamp": 1, "messageId": "m"})
    try:
        print(name, type(Event.from_json(line).message).__name__)
    except ValidationError as refused:
        # The data is empty, so the typed model refuses it (GenericMessage
        # would take it); the error names the model that refused.
        print(name, refused.title)
"""


def _subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    subclasses: list[type] = cls.__subclasses__()
    for sub in subclasses:
        found |= {sub} | _subclasses(sub)
    return found


def test_table_covers_every_own_message_class() -> None:
    import supervisor._cli.main  # noqa: F401  (imports the whole package)

    assert set(OWN_EVENTS.values()) == _subclasses(_OwnMessage)
    for name, cls in OWN_EVENTS.items():
        assert cls.model_fields["event"].default == name


def test_fresh_interpreter_decodes_every_own_event_to_its_class() -> None:
    """Only ``_core.events`` is imported: no router, no control server."""
    names = sorted(OWN_EVENTS)
    done = subprocess.run(
        [sys.executable, "-c", _DECODE_EVERY_OWN_EVENT, json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    decoded = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert set(decoded) == set(names)
    for name in names:
        assert decoded[name] == OWN_EVENTS[name].__name__, name
    assert supervisor  # the subprocess imports the same package as this one
