"""The ``supervise`` command's entry point: answer cheaply what needs little.

``supervise --help``, ``--version`` and a usage error need only the
argument parser (:mod:`supervisor._cli.parser`): they are answered before
trio, pydantic and the supervisor are imported, in tens of milliseconds.
A plain ``supervise -- CMD`` starts CMD at that point too
(:mod:`supervisor._cli.early`), so it boots while supervise imports.

Everything else imports the command line with the cyclic garbage collector
paused. Importing it builds about a thousand classes (trio's, pydantic's and
ours), each allocation-heavy enough to trigger a collection that finds
nothing to free, since everything imported lives as long as the process;
pausing it saves ~20 ms of every start. For the same reason what was
imported is then frozen out of the collector's reach (``gc.freeze``), and
the youngest generation is collected every 5,000 allocations instead of
700: a busy child's frames allocate a few dozen objects each, nearly all
freed by reference counting, so most collections found nothing (64 MiB
with a frame per 2 KiB: 4 % less CPU and 6 % less wall time; latency at
1,000 frames/s did not change measurably). This is the command's process
only: the SDK leaves an application's collector as it is.
"""

from __future__ import annotations

import fcntl
import gc
import sys
from collections.abc import Sequence

# Allocations between collections of the youngest generation (Python's default: 700).
_YOUNGEST_THRESHOLD = 5000

# Subcommands parse their own arguments (in their own modules).
_SUBCOMMANDS = frozenset({"ctl", "events", "check-config", "hub"})


def _standard_streams_open() -> bool:
    for fd in (0, 1, 2):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            return False
    return True


def _parse_lightly(argv: Sequence[str]) -> int | None:
    """The exit status of ``--help``, ``--version`` or a usage error; None otherwise.

    Only with every standard stream open: the full command line knows how
    to give argparse a stream to write to when one is closed. When the
    command line is a run that leaves no doubt about the child, the child is
    started here already (:mod:`supervisor._cli.early`).
    """
    if (argv[:1] and argv[0] in _SUBCOMMANDS) or not _standard_streams_open():
        return None
    from .parser import build_parser

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    from .early import start_early

    start_early(parser, args)
    return None


def main() -> int:
    """Run ``supervise`` with ``sys.argv``; return its exit status."""
    argv = sys.argv[1:]
    if argv[:1] == ["ipc"]:
        # ts-ipc's commands; send and publish import neither trio nor pydantic.
        from .._ipc.cli import main as ipc

        return ipc(argv[1:], prog="supervise ipc")
    status = _parse_lightly(argv)
    if status is not None:
        return status
    try:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            from .main import main as run
        finally:
            gc.freeze()
            _, middle, oldest = gc.get_threshold()
            gc.set_threshold(_YOUNGEST_THRESHOLD, middle, oldest)
            if was_enabled:
                gc.enable()
        return run(argv)
    finally:
        # A child started early that no runner adopted does not run on alone.
        from .._process.spawn import discard_prestarted
        from .early import release_early_control, release_early_metrics

        discard_prestarted()
        release_early_control()
        release_early_metrics()
