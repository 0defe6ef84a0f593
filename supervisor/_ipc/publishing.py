"""Publishing an event to ts-ipc subscribers: one queued message per subscriber.

Shared by ``ts-ipc publish``, workflow runs and supervise's agent. Standard
library only unless a subscription has a filter (the filter language needs
pydantic, imported then).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from .store import ACTION_KIND, DEFAULT_TTL, Message, Store, Subscription

__all__ = ["matching", "publish"]


def publish(
    store: Store,
    source: str,
    event: str,
    data: str,
    *,
    ttl: float = DEFAULT_TTL,
    accepts: Callable[[str], bool] | None = None,
    body_for: Callable[[Subscription], str] | None = None,
    from_child: bool = False,
    if_busy: str = "wait",
) -> list[Message]:
    """Queue one message per subscriber of ``event``; log PUBLISH for each.

    ``accepts(filter)`` says whether a subscription's filter takes the
    event, ``body_for(subscription)`` what its message says (``data`` by
    default); by default the filter sees ``{event, program: source, data:
    {message: data}}``. A supervised child's event (``from_child``) never
    becomes a command line unless the subscription allows it: the child is
    not trusted.
    """
    if accepts is None:

        def accepts(source_text: str) -> bool:
            from .filtering import accepts_publish

            return accepts_publish(source_text, event, source, data)

    queued = []
    for subscription in matching(store.subscriptions(), event, accepts):
        kind = ACTION_KIND[subscription.action]
        refused = kind == "command" and from_child and not subscription.allow_child_commands
        message = store.enqueue(
            source,
            subscription.session,
            kind,
            data if body_for is None else body_for(subscription),
            origin="publish",
            event=event,
            ttl=ttl,
            if_busy=if_busy,
            state="failed" if refused else "queued",
            last_error=(
                "not run: the text comes from a supervised program's event"
                " (subscribe with --allow-child-commands to run it)"
                if refused
                else None
            ),
        )
        store.log(
            "PUBLISH",
            f"{source} [{event}] → {subscription.session}",
            {"from": source, "event": event, "to": subscription.session, "id": message.id},
        )
        queued.append(message)
    return queued


def matching(
    subscriptions: list[Subscription], event: str, accepts: Callable[[str], bool]
) -> list[Subscription]:
    """The subscriptions whose glob names ``event`` and whose filter ``accepts``."""
    return [
        s
        for s in subscriptions
        if fnmatch.fnmatchcase(event, s.event) and (not s.filter or accepts(s.filter))
    ]
