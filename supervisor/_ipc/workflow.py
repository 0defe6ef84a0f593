"""Workflow files and the planning of a run, without any I/O but the file itself.

A workflow is a TOML file ``workflows/NAME.toml`` in ts-ipc's directory::

    # written by `ts-ipc workflow`; edit freely
    name = "deploy-full"

    [[step]]
    name = "build"              # optional, default "step-N" (1-based); unique
    session = "claude-blacklist"
    command = "npm run build"
    # after = ["..."]           # steps this one waits for; default: the previous step
    # when = "success"          # success | failure | always
    # timeout = 600             # seconds; over it the step is interrupted (exit 124)

TOML rather than the original's JSON so a person can read and edit the file;
every key is checked, and an unknown key is an error because it is almost
always a typo (``sesion``) that would otherwise be silently ignored. Errors are
one line naming the file and the key: ``deploy.toml: step[2].session: missing``.

A step's ``command`` is **one shell command line**, typed into the session's
pane as a person would type it, followed by a suffix that reports its exit
status (see :mod:`.run`). So it must be complete on its own and leave the end
of the line to the suffix: no newline, no unterminated quote, no ``#``
comment, and no trailing ``&``, ``|``, ``;`` or ``\\``. :func:`check_command`
enforces this with a small lexer that knows quotes and escapes; it is
conservative (``$(a # b)`` is refused although the shell would accept it).

The planning (:func:`plan`) is pure: given each step's state so far it says
which steps start now, which are skipped because their ``when`` does not hold,
and which will not run because the run is stopping after a failure.
"""

from __future__ import annotations

import math
import os
import tempfile
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal, cast

from .._core.errors import WorkflowError

__all__ = [
    "WHEN",
    "Decision",
    "Step",
    "StepState",
    "When",
    "Workflow",
    "WorkflowError",
    "check_command",
    "check_workflow_name",
    "define_workflow",
    "dump_workflow",
    "exit_status",
    "load_workflow",
    "parse_spec",
    "parse_workflow",
    "plan",
    "toml_string",
    "workflow_path",
    "workflows_dir",
    "write_workflow",
]

When = Literal["success", "failure", "always"]
WHEN: tuple[When, ...] = ("success", "failure", "always")

_TOP_KEYS = ("name", "step")
_STEP_KEYS = ("name", "session", "command", "after", "when", "timeout")
_HEADER = """\
# written by `ts-ipc workflow`; edit freely
#
# Each [[step]] has a session and a command (one shell command line), and may have:
#   name = "build"       unique; default "step-N" (1-based)
#   after = ["build"]    steps it waits for; default: the previous step; [] = start at once
#   when = "success"     success (all of `after` succeeded) | failure (any failed) | always
#   timeout = 600        seconds; a step over it is interrupted (C-c) and counts as exit 124
"""


@dataclass(frozen=True, slots=True)
class Step:
    """One command to type into one session, and when to do it."""

    name: str
    session: str
    command: str
    after: tuple[str, ...] = ()
    when: When = "success"
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Workflow:
    """A named set of steps, in file order (which is also a valid run order)."""

    name: str
    steps: tuple[Step, ...]
    path: Path | None = field(default=None, compare=False)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


class StepState(Enum):
    """Where one step of a run stands; the values are what the store records."""

    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    NOT_RUN = "not_run"

    @property
    def label(self) -> str:
        """How the summary table shows it: ``timed out``, ``not run``."""
        return self.value.replace("_", " ")

    @property
    def finished(self) -> bool:
        return self not in (StepState.PENDING, StepState.RUNNING)

    @property
    def failed(self) -> bool:
        return self in (StepState.FAILED, StepState.TIMED_OUT)


# -- names and commands ------------------------------------------------------------


def _printable(text: str) -> bool:
    return text.isprintable() and text.strip() == text and text != ""


def check_workflow_name(name: str) -> str:
    """``name`` if it can name a file in ``workflows/``; else a :class:`WorkflowError`."""
    if not _printable(name):
        raise WorkflowError(
            f"workflow name {name!r}: must be printable, without surrounding spaces"
        )
    if "/" in name or name.startswith("."):
        raise WorkflowError(f"workflow name {name!r}: must not contain '/' or start with '.'")
    return name


def _check_session(session: str) -> str | None:
    """Why ``session`` cannot be a tmux session name, or None."""
    if not _printable(session):
        return "must be a non-empty printable name"
    if ":" in session or "." in session:
        return "tmux session names cannot contain ':' or '.'"
    return None


_OPERATOR_CHARS = frozenset(";&|()<>")
_TRAILING_OPERATORS = ("&", "|", ";")


def check_command(command: str) -> str | None:
    """Why ``command`` is not one complete shell command line, or None.

    The exit-status suffix is appended after ``; `` on the same line, so the
    line must end where a ``;`` can follow and nothing may hide the suffix
    (a comment) or swallow it (an open quote, a trailing backslash).
    """
    if not command.strip():
        return "empty"
    if not command.isprintable():
        return "must be one line without control characters (a tab would complete)"
    problem = _scan_line(command)
    if problem is not None:
        return problem
    tail = command.rstrip()
    if tail.endswith(_TRAILING_OPERATORS) and not tail.endswith(("\\&", "\\|", "\\;")):
        return f"must not end with {tail[-1]!r} (the exit status is reported after the line)"
    return None


def _scan_line(line: str) -> str | None:
    """Find an open quote, a trailing backslash or a ``#`` comment outside quotes."""
    quote = ""
    escaped = False
    previous = " "
    for char in line:
        if escaped:
            escaped = False
        elif quote == "'":
            if char == "'":
                quote = ""
        elif char == "\\":
            escaped = True
        elif quote == '"':
            if char == '"':
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (previous.isspace() or previous in _OPERATOR_CHARS):
            return "must not contain a '#' comment (it would hide the exit-status report)"
        previous = char
    if escaped:
        return "must not end with '\\'"
    if quote:
        return f"has an unterminated {quote} quote"
    return None


# -- parsing -----------------------------------------------------------------------


def workflows_dir(store_dir: Path) -> Path:
    """Where the workflow files of the store in ``store_dir`` live (``Store.workflows_dir``)."""
    return store_dir / "workflows"


def workflow_path(store_dir: Path, name: str) -> Path:
    """``STORE_DIR/workflows/NAME.toml``, once ``name`` is known to be a safe file name."""
    return workflows_dir(store_dir) / f"{check_workflow_name(name)}.toml"


def load_workflow(path: Path) -> Workflow:
    """Read and check the workflow file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowError(f"{path.name}: no such workflow") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"{path.name}: cannot read: {exc}") from None
    workflow = parse_workflow(text, source=path.name, default_name=path.stem)
    return Workflow(workflow.name, workflow.steps, path)


def parse_workflow(text: str, *, source: str, default_name: str | None = None) -> Workflow:
    """Check the TOML ``text``; errors name ``source`` (the file name) and the key.

    ``default_name`` is the name the file's location gives it (its stem): the
    ``name`` key may be left out, and if present must agree with it.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkflowError(f"{source}: not valid TOML: {exc}") from None
    return _workflow_from(data, source, default_name)


def _fail(source: str, key: str, problem: str) -> WorkflowError:
    return WorkflowError(f"{source}: {key}: {problem}")


def _workflow_from(data: Mapping[str, Any], source: str, default_name: str | None) -> Workflow:
    for key in data:
        if key not in _TOP_KEYS:
            raise _fail(source, key, f"unknown key (expected one of: {', '.join(_TOP_KEYS)})")
    name = data.get("name", default_name)
    if name is None:
        raise _fail(source, "name", "missing")
    if not isinstance(name, str):
        raise _fail(source, "name", "must be a string")
    try:
        check_workflow_name(name)
    except WorkflowError as exc:
        raise _fail(source, "name", str(exc)) from None
    if default_name is not None and name != default_name:
        raise _fail(source, "name", f"{name!r} does not match the file name {default_name!r}")
    raw_steps = data.get("step")
    if raw_steps is None:
        raise _fail(source, "step", "missing (a workflow needs at least one [[step]])")
    if not isinstance(raw_steps, list) or not all(isinstance(s, dict) for s in raw_steps):
        raise _fail(source, "step", "must be an array of tables ([[step]])")
    if not raw_steps:
        raise _fail(source, "step", "empty (a workflow needs at least one [[step]])")
    steps = _steps_from(cast(list[dict[str, Any]], raw_steps), source)
    _check_acyclic(steps, source)
    return Workflow(name, steps)


def _steps_from(raw_steps: list[dict[str, Any]], source: str) -> tuple[Step, ...]:
    steps: list[Step] = []
    where: dict[str, int] = {}
    for number, raw in enumerate(raw_steps, start=1):
        step = _step_from(raw, number, steps[-1].name if steps else None, source)
        if step.name in where:
            raise _fail(
                source,
                f"step[{number}].name",
                f"duplicate {step.name!r} (also step[{where[step.name]}])",
            )
        where[step.name] = number
        steps.append(step)
    for number, step in enumerate(steps, start=1):
        for dependency in step.after:
            if dependency not in where:
                raise _fail(source, f"step[{number}].after", f"unknown step {dependency!r}")
    return tuple(steps)


def _step_from(raw: Mapping[str, Any], number: int, previous: str | None, source: str) -> Step:
    prefix = f"step[{number}]"
    for key in raw:
        if key not in _STEP_KEYS:
            raise _fail(
                source, f"{prefix}.{key}", f"unknown key (expected one of: {', '.join(_STEP_KEYS)})"
            )
    name = _string(raw, "name", prefix, source, default=f"step-{number}")
    if not _printable(name):
        raise _fail(source, f"{prefix}.name", "must be printable, without surrounding spaces")
    session = _string(raw, "session", prefix, source)
    problem = _check_session(session)
    if problem is not None:
        raise _fail(source, f"{prefix}.session", problem)
    command = _string(raw, "command", prefix, source)
    problem = check_command(command)
    if problem is not None:
        raise _fail(source, f"{prefix}.command", problem)
    after = _after(raw, prefix, source, name, default=() if previous is None else (previous,))
    when = _string(raw, "when", prefix, source, default="success")
    if when not in WHEN:
        raise _fail(source, f"{prefix}.when", f"{when!r} is not one of: {', '.join(WHEN)}")
    if when == "failure" and not after:
        raise _fail(source, f"{prefix}.when", "'failure' needs steps in `after` to watch")
    timeout = _timeout(raw, prefix, source)
    return Step(name, session, command, after, when, timeout)


def _string(
    raw: Mapping[str, Any], key: str, prefix: str, source: str, *, default: str | None = None
) -> str:
    value = raw.get(key, default)
    if value is None:
        raise _fail(source, f"{prefix}.{key}", "missing")
    if not isinstance(value, str):
        raise _fail(source, f"{prefix}.{key}", "must be a string")
    return value


def _after(
    raw: Mapping[str, Any], prefix: str, source: str, name: str, *, default: tuple[str, ...]
) -> tuple[str, ...]:
    if "after" not in raw:
        return default
    value = raw["after"]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail(source, f"{prefix}.after", "must be a list of step names")
    if name in value:
        raise _fail(source, f"{prefix}.after", f"a step cannot wait for itself ({name!r})")
    if len(set(value)) != len(value):
        raise _fail(source, f"{prefix}.after", "lists a step twice")
    return tuple(value)


def _timeout(raw: Mapping[str, Any], prefix: str, source: str) -> float | None:
    value = raw.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(source, f"{prefix}.timeout", "must be a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise _fail(source, f"{prefix}.timeout", "must be a positive number of seconds")
    return float(value)


def _check_acyclic(steps: Sequence[Step], source: str) -> None:
    """A cycle in ``after`` would leave its steps waiting forever: refuse it."""
    number = {step.name: index for index, step in enumerate(steps, start=1)}
    try:
        _run_order(steps)
    except _Cycle as cycle:
        raise _fail(
            source, f"step[{number[cycle.names[-2]]}].after", f"cycle {' → '.join(cycle.names)}"
        ) from None


class _Cycle(Exception):
    def __init__(self, names: list[str]) -> None:
        super().__init__(names)
        self.names = names


def _run_order(steps: Sequence[Step]) -> list[Step]:
    """The steps with each one after its ``after`` steps, otherwise in file order."""
    by_name = {step.name: step for step in steps}
    order: list[Step] = []
    done: set[str] = set()
    for root in steps:
        path: list[str] = []
        stack: list[tuple[Step, Iterator[str]]] = [(root, iter(root.after))]
        path.append(root.name)
        while stack and root.name not in done:
            step, dependencies = stack[-1]
            dependency = next(dependencies, None)
            if dependency is None:
                stack.pop()
                path.pop()
                done.add(step.name)
                order.append(step)
            elif dependency in path:
                raise _Cycle([*path[path.index(dependency) :], dependency])
            elif dependency not in done:
                path.append(dependency)
                stack.append((by_name[dependency], iter(by_name[dependency].after)))
    return order


# -- writing -----------------------------------------------------------------------

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for char in text:
        escape = _ESCAPES.get(char)
        if escape is not None:
            out.append(escape)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def dump_workflow(workflow: Workflow) -> str:
    """The workflow as readable TOML; keys equal to their defaults are left out."""
    lines = [_HEADER, f"name = {toml_string(workflow.name)}"]
    previous: str | None = None
    for number, step in enumerate(workflow.steps, start=1):
        lines += ["", "[[step]]"]
        if step.name != f"step-{number}":
            lines.append(f"name = {toml_string(step.name)}")
        lines.append(f"session = {toml_string(step.session)}")
        lines.append(f"command = {toml_string(step.command)}")
        if step.after != (() if previous is None else (previous,)):
            lines.append(f"after = [{', '.join(toml_string(name) for name in step.after)}]")
        if step.when != "success":
            lines.append(f"when = {toml_string(step.when)}")
        if step.timeout is not None:
            lines.append(f"timeout = {_toml_number(step.timeout)}")
        previous = step.name
    return "\n".join(lines) + "\n"


def _toml_number(value: float) -> str:
    """``600`` for whole seconds (as a person writes it), else Python's exact repr."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def write_workflow(store_dir: Path, workflow: Workflow) -> Path:
    """Write ``workflow`` to its file (directory 0700, file 0600), atomically."""
    directory = workflows_dir(store_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = workflow_path(store_dir, workflow.name)
    # mkstemp: a name of its own (two writers never share it), created 0600.
    descriptor, name = tempfile.mkstemp(dir=directory, prefix=f".{workflow.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(dump_workflow(workflow))
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)
    return path


def parse_spec(spec: str, number: int = 1) -> Step:
    """``'SESSION:COMMAND'`` (split at the first ``:``) as step ``step-NUMBER``."""
    session, colon, command = spec.partition(":")
    where = f"step {number} {spec!r}"
    if not colon:
        raise WorkflowError(f"{where}: expected SESSION:COMMAND")
    problem = _check_session(session)
    if problem is not None:
        raise WorkflowError(f"{where}: session: {problem}")
    problem = check_command(command)
    if problem is not None:
        raise WorkflowError(f"{where}: command: {problem}")
    return Step(f"step-{number}", session, command)


def define_workflow(store_dir: Path, name: str, specs: list[str]) -> Path:
    """Write a sequential workflow from ``'SESSION:COMMAND'`` specs; return its path.

    ``store_dir`` is the store's directory (``Store.home``); the file goes to
    ``store_dir/workflows/NAME.toml``, replacing one of that name.
    """
    check_workflow_name(name)
    if not specs:
        raise WorkflowError(f"workflow {name!r}: needs at least one SESSION:COMMAND step")
    steps: list[Step] = []
    for number, spec in enumerate(specs, start=1):
        step = parse_spec(spec, number)
        after = () if not steps else (steps[-1].name,)
        steps.append(Step(step.name, step.session, step.command, after))
    return write_workflow(store_dir, Workflow(name, tuple(steps)))


# -- planning ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now: steps to start, and steps settled without running (with why)."""

    start: tuple[str, ...] = ()
    skip: tuple[tuple[str, str], ...] = ()
    not_run: tuple[tuple[str, str], ...] = ()


def plan(workflow: Workflow, states: Mapping[str, StepState], *, keep_going: bool) -> Decision:
    """Decide every pending step that can be decided, given ``states`` (missing = pending).

    A step waits until each step in its ``after`` has finished; then it starts
    if its ``when`` holds and is skipped otherwise. Without ``keep_going``,
    once any step has failed no ``when = "success"`` step starts any more
    (they are "not run"); ``failure`` and ``always`` steps still run, since
    they exist for exactly that case. Steps are visited dependencies first,
    so a skip settles its dependents in the same call.
    """
    known = {step.name: states.get(step.name, StepState.PENDING) for step in workflow.steps}
    stopping = not keep_going and next(
        (name for name, state in known.items() if state.failed), None
    )
    start: list[str] = []
    skip: list[tuple[str, str]] = []
    not_run: list[tuple[str, str]] = []
    for step in _run_order(workflow.steps):
        if known[step.name] is not StepState.PENDING:
            continue
        if stopping and step.when == "success":
            known[step.name] = StepState.NOT_RUN
            not_run.append((step.name, f"the run stopped after {stopping!r} failed"))
            continue
        if not all(known[name].finished for name in step.after):
            continue
        reason = _why_not(step, known)
        if reason is None:
            known[step.name] = StepState.RUNNING
            start.append(step.name)
        else:
            known[step.name] = StepState.SKIPPED
            skip.append((step.name, reason))
    return Decision(tuple(start), tuple(skip), tuple(not_run))


def _why_not(step: Step, known: Mapping[str, StepState]) -> str | None:
    """Why ``step.when`` does not hold now that its dependencies have finished."""
    if step.when == "always":
        return None
    failed = [name for name in step.after if known[name].failed]
    if step.when == "failure":
        return None if failed else "none of its `after` steps failed"
    if failed:
        return f"{failed[0]!r} failed"
    unsuccessful = [name for name in step.after if known[name] is not StepState.OK]
    if unsuccessful:
        return f"{unsuccessful[0]!r} did not run ({known[unsuccessful[0]].label})"
    return None


def exit_status(finished: Iterable[tuple[StepState, int | None]]) -> int:
    """A run's exit status from its steps in finish order: 0, or the first failure's code."""
    for state, code in finished:
        if state is StepState.TIMED_OUT:
            return 124
        if state is StepState.FAILED:
            return code if code else 1
    return 0
