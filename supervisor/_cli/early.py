"""Start the command before the rest of supervise is imported.

``supervise -- CMD`` spends ~200 ms importing trio, pydantic and its own
models before it can start CMD, and CMD (``npx loopwork`` boots for a
second) would wait for all of it. Here, right after the command line is
parsed and before anything heavy is imported, CMD is forked onto its pty
(:func:`supervisor._process.spawn.prestart`); its output waits in the pty
until the program's runner adopts it.

Only when the command line leaves no doubt about what the child gets, and
no setting that could still be refused: a command, and options from
:data:`_EARLY_OPTIONS` (none of them brings a secret supervise withholds
from the child, none is a number pydantic could refuse). Anything else (a
config file, Telegram, a route, metrics, ``--no-pty``) starts the child
the usual way, once everything is checked. The runner adopts the early
child only if the spec it computes from the validated configuration is equal
(:func:`~supervisor._process.spawn.take_prestarted`), and what goes wrong
after the start (the journal cannot be opened, say) kills the early child's
group (:func:`~supervisor._process.spawn.discard_prestarted`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._core.errors import ConfigError
from .._core.program_name import default_program_name
from .._paths import (
    control_dir,
    default_socket_path,
    instance_name_problem,
    prepare_control_dir,
    working_directory,
)
from .._process.spawn import ChildSpec, become_subreaper, child_environment, prestart
from .terminal import terminal_settings

__all__ = ["early_instance", "start_early"]

# Options that leave the child's spec as the command line says and that the
# configuration cannot refuse once argparse has taken them.
_EARLY_OPTIONS = frozenset(
    {"command", "name", "cwd", "env", "instance", "events", "quiet", "no_journal", "journal"}
    | {"keep_frames", "forward_eof", "actionable_frames", "on_approval_ignored", "restart"}
    | {"stall_action", "task_timeout_action", "answers.approve", "answers.deny"}
    | {"answers.approval_timeout", "backoff.jitter", "log.timestamps"}
)

_instance: str | None = None


def early_instance() -> str | None:
    """The instance name the early child was given, to keep it if still free."""
    return _instance


def start_early(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """Start the command of ``args`` now if nothing can change it; whether it started."""
    global _instance
    spec = _early_spec(parser, args)
    if spec is None:
        return False
    # What the child orphans from its first moment (a daemon it forks off
    # with setsid) is re-parented to supervise, to be stopped with it.
    become_subreaper()
    if not prestart(spec):
        return False
    assert spec.env is not None
    _instance = spec.env.get("IPC_SUPERVISOR")
    return True


def _early_spec(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ChildSpec | None:
    given = {
        dest
        for dest, value in vars(args).items()
        if dest in _EARLY_OPTIONS or value != parser.get_default(dest)
    }
    if not given <= _EARLY_OPTIONS:
        return None
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    name = getattr(args, "name", None)
    if not command or not command[0] or name == "" or args.journal == "":
        return None  # errors the full command line reports
    cwd = Path(args.cwd).expanduser() if getattr(args, "cwd", None) is not None else None
    program = name or default_program_name(command, working_directory(cwd))
    instance = args.instance or program
    if instance_name_problem(instance) is not None:
        return None
    directory = control_dir()
    try:
        prepare_control_dir(directory)
    except ConfigError:
        return None  # supervise runs without `ctl` then, or reports it
    if args.instance is not None:
        if (directory / f"{instance}.sock").exists():
            return None  # it may be in use: an error the control server reports
    else:
        instance = default_socket_path(directory, program).stem
    env = child_environment(dict(getattr(args, "env", ())), (), (), instance)
    return ChildSpec.for_program(
        command, env, str(cwd) if cwd is not None else None, True, terminal_settings()
    )
