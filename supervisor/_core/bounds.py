"""Limits on what a child's strings can make supervise keep.

A child names its events, namespaces and tasks as it likes, and an AI agent
decides what the child prints. Each distinct name that becomes a metric label
value is a series kept for ever and sent on every scrape (200,000 event names
would be a 12 MB scrape), so every label whose values come from the child
admits a bounded number of them per program, first come first kept; the rest
fold into the one value :data:`OTHER`, and each fold is counted
(``supervise_label_values_folded_total``) so that it shows.

The limits, per program:

- :data:`MAX_EVENT_NAMES` event names: the protocol has about ten, loopwork
  sends about fifteen, so a hundred leaves room for any real child's own
  events and still keeps one program's frame counters to a page of a scrape.
- :data:`MAX_NAMESPACES` namespaces: namespaces name projects or task
  queues, of which a run has a few; fifty times the five task counters and
  the duration histogram stays a few thousand series at most.
- :data:`MAX_CHANNELS` answer channels (``ctl``, ``sdk``, ``telegram`` ...):
  the channels are supervise's, the bound only guards what ``ctl`` callers
  may name themselves.
- a value longer than :data:`MAX_LABEL_LENGTH` characters also folds: a
  single label value must not make a scrape large either.

Tables keyed by the child's task ids are bounded in their own modules (the
task table, the Telegram chat's progress messages).
"""

from __future__ import annotations

from collections import defaultdict

__all__ = [
    "MAX_CHANNELS",
    "MAX_EVENT_NAMES",
    "MAX_LABEL_LENGTH",
    "MAX_NAMESPACES",
    "OTHER",
    "LabelFold",
]

OTHER = "other"
"""The label value that stands for every value beyond a label's limit."""
MAX_EVENT_NAMES = 100
MAX_NAMESPACES = 50
MAX_CHANNELS = 20
MAX_LABEL_LENGTH = 128


class LabelFold:
    """The values of one label, at most ``limit`` per program; the rest are :data:`OTHER`.

    Args:
        label: the label's name, as ``supervise_label_values_folded_total`` shows it.
        limit: distinct values kept per program.
    """

    def __init__(self, label: str, limit: int) -> None:
        self.label = label
        self.limit = limit
        self.folded: defaultdict[str, int] = defaultdict(int)
        """Per program: how many times a value was counted as :data:`OTHER`."""
        self._kept: dict[str, set[str]] = {}

    def __call__(self, program: str, value: str) -> str:
        """``value`` if it is kept for ``program`` (or there is room for it), else OTHER."""
        kept = self._kept.get(program)
        if kept is None:
            kept = self._kept[program] = set()
        if value in kept:
            return value
        if len(kept) < self.limit and len(value) <= MAX_LABEL_LENGTH:
            kept.add(value)
            return value
        self.folded[program] += 1
        return OTHER
