"""``ts-ipc migrate``: bring the original's subscriptions and workflows over.

The original keeps ``~/.config/ts/ipc/subscriptions.json`` and
``workflows/NAME.json``, written with jq by a shell script, so their exact
shape varied between its versions. Accepted here:

subscriptions.json
    ``{"EVENT": [{"session": S, "action": A}, ...]}``, ``{"EVENT": ["S", ...]}``
    (action ``notify``), ``{"EVENT": {"S": "A"}}``, a list of
    ``{"session", "event", "action"}`` objects, or any of these under a
    top-level ``"subscriptions"`` key.
workflows/NAME.json
    ``{"name": N, "steps": [...]}`` or a bare list of steps, each step
    ``"SESSION:COMMAND"`` or ``{"session": S, "command": C}``.

Each session's ``*.data`` file is imported as that session's data messages,
one per line. The original's queue is not: its messages carry no outcome to
continue from. Anything else is a one-line error naming the file and where
in it; nothing is half-imported from a file that has an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._core.errors import MigrationError
from .store import ACTIONS, Store, Subscription

__all__ = ["MigrationError", "migrate", "read_subscriptions", "read_workflow_steps"]


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise MigrationError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise MigrationError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from None


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise MigrationError(f"{where}: expected a non-empty string, found {json.dumps(value)}")
    return value


def _action(value: Any, where: str) -> str:
    action = "notify" if value is None else _text(value, where)
    if action not in ACTIONS:
        raise MigrationError(f"{where}: unknown action {action!r} (actions: {', '.join(ACTIONS)})")
    return action


def read_subscriptions(path: Path) -> list[Subscription]:
    """The subscriptions in the original's ``subscriptions.json``."""
    document = _load(path)
    if isinstance(document, dict) and "subscriptions" in document and len(document) == 1:
        document = document["subscriptions"]
    found: list[Subscription] = []
    if isinstance(document, list):
        for index, item in enumerate(document):
            where = f"{path}: [{index}]"
            if not isinstance(item, dict):
                raise MigrationError(f"{where}: expected an object with session and event")
            found.append(
                Subscription(
                    _text(item.get("session"), f"{where}.session"),
                    _text(item.get("event"), f"{where}.event"),
                    _action(item.get("action"), f"{where}.action"),
                )
            )
        return found
    if not isinstance(document, dict):
        raise MigrationError(f"{path}: expected an object or a list of subscriptions")
    for event, subscribers in document.items():
        where = f"{path}: {event}"
        if isinstance(subscribers, dict):
            for session, action in subscribers.items():
                found.append(Subscription(session, event, _action(action, f"{where}.{session}")))
        elif isinstance(subscribers, list):
            for index, item in enumerate(subscribers):
                spot = f"{where}[{index}]"
                if isinstance(item, str):
                    found.append(Subscription(_text(item, spot), event, "notify"))
                elif isinstance(item, dict):
                    session = _text(item.get("session"), f"{spot}.session")
                    found.append(Subscription(session, event, _action(item.get("action"), spot)))
                else:
                    raise MigrationError(f"{spot}: expected a session name or an object")
        else:
            raise MigrationError(f"{where}: expected a list or an object of subscribers")
    return found


def read_workflow_steps(path: Path) -> list[str]:
    """The steps of one of the original's workflow files, as ``SESSION:COMMAND``."""
    document = _load(path)
    steps = document.get("steps") if isinstance(document, dict) else document
    if not isinstance(steps, list) or not steps:
        raise MigrationError(f"{path}: steps: expected a non-empty list")
    specs = []
    for index, step in enumerate(steps):
        where = f"{path}: steps[{index}]"
        if isinstance(step, str):
            if ":" not in step:
                raise MigrationError(f"{where}: expected SESSION:COMMAND, found {step!r}")
            specs.append(step)
        elif isinstance(step, dict):
            session = _text(step.get("session"), f"{where}.session")
            command = _text(step.get("command"), f"{where}.command")
            specs.append(f"{session}:{command}")
        else:
            raise MigrationError(f"{where}: expected SESSION:COMMAND or an object")
    return specs


def migrate(store: Store, origin: Path) -> list[str]:
    """Import everything from ``origin``; return a report, a line per item."""
    from .workflow import WorkflowError, define_workflow

    if not origin.is_dir():
        raise MigrationError(f"{origin}: no such directory (the original's ~/.config/ts/ipc)")
    report = []
    subscriptions_file = origin / "subscriptions.json"
    if subscriptions_file.exists():
        subscriptions = read_subscriptions(subscriptions_file)
        for subscription in subscriptions:
            store.subscribe(subscription)
        report.append(f"✓ {len(subscriptions)} subscriptions from {subscriptions_file}")
    workflows = sorted((origin / "workflows").glob("*.json"))
    for path in workflows:
        specs = read_workflow_steps(path)
        try:
            written = define_workflow(store.home, path.stem, specs)
        except WorkflowError as exc:
            raise MigrationError(f"{path}: {exc}") from None
        report.append(f"✓ workflow {path.stem} ({len(specs)} steps): {written}")
    for path in sorted(origin.glob("*.data")):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
        for line in lines:
            store.enqueue("ts-ipc-migrate", path.stem, "data", line)
        if lines:
            from .deliver import deliver_waiting

            deliver_waiting(store, [path.stem])
        report.append(f"✓ {len(lines)} data lines for {path.stem} from {path}")
    if not report:
        report.append(f"nothing to import in {origin}")
    return report
