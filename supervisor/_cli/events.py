"""``supervise events``: print the journaled events of a supervise instance.

Reads the instance's journal (see :mod:`supervisor._routing.journal`) read-only, so
it works whether or not supervise is running, and prints each event as its
stored JSON line. With ``--follow`` it keeps polling for new rows, like
``tail -f``, until Control-C or until its reader goes away (``| head``).

Unlike ``supervise ctl tail``, which sees only what happens while it is
connected and loses events when it falls behind, this replays from any seq
and never drops one.

Exit status: 0 on success (also after Control-C while following), 1 when the
journal cannot be read, 2 for usage errors (no journal, an ambiguous choice,
bad options).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from .._core.errors import ConfigError
from .._paths import state_dir, validate_instance_name
from .._routing.journal import Journal, instance_of, journal_path
from .terminal import warn

__all__ = ["build_parser", "main"]

USAGE_ERROR = 2
READ_ERROR = 1
DEFAULT_POLL = 0.25
# Events per query: bounds memory however far back --since reaches.
_PAGE = 1000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supervise events",
        description="Print journaled events as JSON lines, optionally following new ones.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--instance",
        metavar="NAME",
        help="the supervise instance whose journal to read (default: the only journal)",
    )
    which.add_argument("--journal", metavar="PATH", type=Path, help="a journal file to read")
    parser.add_argument(
        "--since",
        metavar="SEQ",
        type=int,
        default=0,
        help="print events after this seq (default: all that are kept)",
    )
    parser.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new events until Control-C"
    )
    parser.add_argument(
        "--pattern", metavar="GLOB", help="event glob (task_*) or PROGRAM:EVENT glob"
    )
    parser.add_argument(
        "--poll",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_POLL,
        help=f"how often --follow looks for new events (default: {DEFAULT_POLL:g})",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Run ``supervise events`` with ``argv`` (the arguments after ``events``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.since < 0:
            parser.error("--since: a seq is 0 or more")
        if not args.poll > 0:
            parser.error("--poll: must be more than 0 seconds")
    except SystemExit as exc:  # --help, usage errors
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    try:
        path = find_journal(args.instance, args.journal)
        journal = Journal.open(path, readonly=True)
    except ConfigError as exc:
        warn(str(exc))
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130
    try:
        _print_events(journal, args.since, args.pattern, args.follow, args.poll)
    except sqlite3.Error as exc:
        warn(f"{path}: cannot read the journal: {exc}")
        return READ_ERROR
    except KeyboardInterrupt:
        return 0 if args.follow else 130
    except BrokenPipeError:
        _discard_stdout()
    finally:
        journal.close()
    return 0


def find_journal(instance: str | None, journal: Path | None) -> Path:
    """The journal to read: the given file, the instance's, or the only one there is.

    Raises:
        ConfigError: the file or the instance's journal does not exist, or
            there is not exactly one journal to choose from.
    """
    if journal is not None:
        if not journal.exists():
            raise ConfigError(str(journal), "no such journal")
        return journal
    directory = state_dir()
    found = sorted(directory.glob("*.journal.db"))
    names = ", ".join(instance_of(path) for path in found)
    if instance is not None:
        path = journal_path(validate_instance_name(instance, "--instance"), directory)
        if not path.exists():
            hint = f" (journals: {names})" if names else ""
            raise ConfigError(f"--instance {instance}", f"no journal at {path}{hint}")
        return path
    if not found:
        raise ConfigError(str(directory), "no journal here; give --instance or --journal")
    if len(found) > 1:
        raise ConfigError(str(directory), f"several journals ({names}): pick one with --instance")
    return found[0]


def _print_events(
    journal: Journal, since: int, pattern: str | None, follow: bool, poll: float
) -> None:
    out = sys.stdout.buffer
    since = _print_new(journal, since, pattern, out)
    while follow:
        time.sleep(poll)
        since = _print_new(journal, since, pattern, out)


def _print_new(journal: Journal, since: int, pattern: str | None, out: BinaryIO) -> int:
    """Print the events after ``since`` that are there now; return the seq printed up to.

    Reading up to a :meth:`~Journal.last_seq` taken first lets the next poll
    start after every row already looked at, even those the pattern skipped.
    """
    upto = journal.last_seq()
    while since < upto:
        page = journal.read_lines(since, _PAGE, pattern=pattern, until=upto)
        out.write(b"".join(item.line + b"\n" for item in page))
        out.flush()
        if len(page) < _PAGE:
            break
        since = page[-1].seq
    return max(since, upto)


def _discard_stdout() -> None:
    """After the reader went away (``| head``), keep Python's exit flush quiet."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
