"""ts-ipc workflows: the file format, the planning, and runs against a real tmux server.

The tmux tests run a private server: ``TMUX_TMPDIR`` points at a directory of
the test's own and ``TMUX`` is removed, so both the runner's plain ``tmux``
and the ``tmux`` the panes' shells run (which the server gives its own
``TMUX``) reach that server and never the developer's. ``TS_IPC_HOME`` is a
temporary directory too. The server is killed in teardown.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from supervisor._ipc.run import EXIT_NO_SESSION, run_workflow, typed_line
from supervisor._ipc.store import Store
from supervisor._ipc.workflow import (
    Step,
    StepState,
    Workflow,
    WorkflowError,
    check_command,
    define_workflow,
    dump_workflow,
    exit_status,
    load_workflow,
    parse_workflow,
    plan,
    toml_string,
    workflow_path,
)

TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")

OK, FAILED, TIMED_OUT = StepState.OK, StepState.FAILED, StepState.TIMED_OUT
SKIPPED, NOT_RUN, RUNNING = StepState.SKIPPED, StepState.NOT_RUN, StepState.RUNNING


def parse(text: str) -> Workflow:
    return parse_workflow(text, source="deploy.toml", default_name="deploy")


# -- the file format -----------------------------------------------------------------

GOOD = """
name = "deploy"

[[step]]
name = "build"
session = "claude-blacklist"
command = "npm run build"

[[step]]
session = "claude-manager"
command = "docker compose up -d"
timeout = 600

[[step]]
name = "lint"
session = "claude-blacklist"
command = "npm run lint"
after = []
when = "always"
timeout = 2.5

[[step]]
name = "cleanup"
session = "claude-manager"
command = "docker compose down"
after = ["build", "step-2"]
when = "failure"
"""


def test_a_good_file_parses_with_its_defaults() -> None:
    workflow = parse(GOOD)
    assert workflow.name == "deploy"
    assert workflow.steps == (
        Step("build", "claude-blacklist", "npm run build"),
        Step("step-2", "claude-manager", "docker compose up -d", ("build",), timeout=600.0),
        Step("lint", "claude-blacklist", "npm run lint", (), "always", 2.5),
        Step("cleanup", "claude-manager", "docker compose down", ("build", "step-2"), "failure"),
    )


def test_the_name_may_be_left_to_the_file() -> None:
    assert parse('[[step]]\nsession = "a"\ncommand = "true"\n').name == "deploy"


STEP = '[[step]]\nsession = "a"\ncommand = "true"\n'

BAD = [
    ('name = "deploy"\n[[step]]\ncommand = "true"\n', "step[1].session: missing"),
    (STEP + '[[step]]\nsession = "b"\n', "step[2].command: missing"),
    (STEP + '[[step]]\nsesion = "b"\ncommand = "x"\n', "step[2].sesion: unknown key"),
    ("steps = 1\n" + STEP, "steps: unknown key"),
    (STEP + 'when = "sometimes"\n', "step[1].when: 'sometimes' is not one of"),
    (STEP + 'when = "failure"\n', "step[1].when: 'failure' needs steps in `after`"),
    (STEP + 'after = ["nope"]\n', "step[1].after: unknown step 'nope'"),
    (STEP + 'after = "step-2"\n', "step[1].after: must be a list"),
    (STEP + 'after = ["step-1"]\n', "step[1].after: a step cannot wait for itself"),
    (
        '[[step]]\nname = "a"\nsession = "s"\ncommand = "x"\nafter = ["b"]\n'
        '[[step]]\nname = "b"\nsession = "s"\ncommand = "y"\n',
        "step[2].after: cycle a → b → a",
    ),
    (
        '[[step]]\nname = "a"\nsession = "s"\ncommand = "x"\nafter = ["c"]\n'
        '[[step]]\nname = "b"\nsession = "s"\ncommand = "y"\nafter = ["a"]\n'
        '[[step]]\nname = "c"\nsession = "s"\ncommand = "z"\nafter = ["b"]\n',
        "cycle a → c → b → a",
    ),
    (STEP + '[[step]]\nname = "step-1"\nsession = "b"\ncommand = "x"\n', "step[2].name: duplicate"),
    (STEP + "timeout = 0\n", "step[1].timeout: must be a positive"),
    (STEP + "timeout = true\n", "step[1].timeout: must be a number"),
    (STEP + 'timeout = "10"\n', "step[1].timeout: must be a number"),
    (STEP + "timeout = inf\n", "step[1].timeout: must be a positive"),
    ('name = "other"\n' + STEP, "name: 'other' does not match the file name 'deploy'"),
    ('name = "deploy"\n', "step: missing"),
    ("step = []\n", "step: empty"),
    ("step = 3\n", "step: must be an array of tables"),
    ('[[step]]\nsession = "a.b"\ncommand = "x"\n', "step[1].session: tmux session names"),
    ('[[step]]\nsession = ""\ncommand = "x"\n', "step[1].session: must be a non-empty"),
    ('[[step]]\nsession = 3\ncommand = "x"\n', "step[1].session: must be a string"),
    ('[[step]]\nsession = "a"\ncommand = "make # all"\n', "step[1].command: must not contain"),
    ('[[step]]\nsession = "a"\ncommand = "sleep 9 &"\n', "step[1].command: must not end with '&'"),
    ('[[step]]\nsession = "a"\ncommand = "a\\nb"\n', "step[1].command: must be one line"),
    ('[[step]]\nsession = "a"\ncommand = "echo \'x"\n', "step[1].command: has an unterminated"),
    ('[[step]]\nsession = "a"\ncommand = "  "\n', "step[1].command: empty"),
    ('[[step]]\nname = " x"\nsession = "a"\ncommand = "t"\n', "step[1].name: must be printable"),
    ("[[step]\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_every_error_is_one_line_naming_the_file_and_the_key(text: str, expected: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        parse(text)
    message = str(caught.value)
    assert message.startswith("deploy.toml: ")
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("echo a#b ${#x} '#' \"#\" \\#", None),
        ("npm test && npm run build", None),
        ("echo 'a;b'; ls", None),
        ("echo done \\;", None),
        ("echo (#)", "comment"),
        ("echo x; # note", "comment"),
        ("ls |", "'|'"),
        ("ls ;", "';'"),
        ("ls \\", "end with '\\'"),
        ('echo "x', "unterminated"),
        ("printf 'a\tb'", "control characters"),
    ],
)
def test_a_command_is_one_complete_shell_line(command: str, problem: str | None) -> None:
    found = check_command(command)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_define_writes_a_private_sequential_file_that_parses_back(tmp_path: Path) -> None:
    path = define_workflow(
        tmp_path, "deploy-full", ["claude-blacklist:npm run build", "claude-manager:echo 'a:b'"]
    )
    assert path == workflow_path(tmp_path, "deploy-full") == tmp_path / "workflows/deploy-full.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert text.startswith("# written by `ts-ipc workflow`; edit freely\n")
    workflow = load_workflow(path)
    assert workflow.steps == (
        Step("step-1", "claude-blacklist", "npm run build"),
        Step("step-2", "claude-manager", "echo 'a:b'", ("step-1",)),
    )


@pytest.mark.parametrize(
    ("name", "specs", "expected"),
    [
        ("deploy", ["no-colon"], "step 1 'no-colon': expected SESSION:COMMAND"),
        ("deploy", ["a:ls", ":ls"], "step 2 ':ls': session: must be a non-empty"),
        ("deploy", ["a:"], "step 1 'a:': command: empty"),
        ("deploy", [], "needs at least one"),
        ("a/b", ["a:ls"], "must not contain '/'"),
        (".hidden", ["a:ls"], "start with '.'"),
        ("bad\x07", ["a:ls"], "printable"),
    ],
)
def test_define_refuses_bad_names_and_specs(
    tmp_path: Path, name: str, specs: list[str], expected: str
) -> None:
    with pytest.raises(WorkflowError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        define_workflow(tmp_path, name, specs)
    assert not (tmp_path / "workflows").exists() or not any((tmp_path / "workflows").iterdir())


def test_dump_round_trips_every_key() -> None:
    workflow = parse(GOOD)
    assert parse(dump_workflow(workflow)) == workflow


def test_load_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match=r"^nope\.toml: no such workflow$"):
        load_workflow(tmp_path / "nope.toml")


@given(st.text())
def test_the_toml_string_writer_round_trips_any_text(text: str) -> None:
    assert tomllib.loads(f"value = {toml_string(text)}\n")["value"] == text


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1).filter(lambda s: s.isprintable()))
def test_any_valid_step_text_survives_define_and_load(command: str) -> None:
    """Whatever passes the checks is written so that it reads back the same."""
    if check_command(command) is not None:
        return
    workflow = Workflow("w", (Step("x y", "sess", command, (), "always", 1.5),))
    assert parse_workflow(dump_workflow(workflow), source="w.toml") == workflow


# -- planning -------------------------------------------------------------------------


def chain(*whens: str, after: dict[str, list[str]] | None = None) -> Workflow:
    """Steps a, b, c, ... in order, each after the previous unless ``after`` says otherwise."""
    steps = []
    for index, when in enumerate(whens):
        name = "abcdefgh"[index]
        default = [] if index == 0 else ["abcdefgh"[index - 1]]
        deps = (after or {}).get(name, default)
        steps.append(Step(name, "s", "true", tuple(deps), when))  # type: ignore[arg-type]
    return Workflow("w", tuple(steps))


def test_a_sequential_chain_starts_one_step_at_a_time_and_stops_after_a_failure() -> None:
    workflow = chain("success", "success", "success")
    assert plan(workflow, {}, keep_going=False).start == ("a",)
    assert plan(workflow, {"a": RUNNING}, keep_going=False).start == ()
    assert plan(workflow, {"a": OK}, keep_going=False).start == ("b",)
    decision = plan(workflow, {"a": OK, "b": FAILED}, keep_going=False)
    assert decision.start == ()
    assert decision.not_run == (("c", "the run stopped after 'b' failed"),)


def test_a_failure_step_runs_only_after_a_failure() -> None:
    workflow = chain("success", "failure", "success")
    after_failure = plan(workflow, {"a": FAILED}, keep_going=False)
    assert after_failure.start == ("b",)
    assert after_failure.not_run == (("c", "the run stopped after 'a' failed"),)
    after_success = plan(workflow, {"a": OK}, keep_going=False)
    assert after_success.start == ()
    # b is skipped, and c, waiting for b, with it.
    assert after_success.skip == (
        ("b", "none of its `after` steps failed"),
        ("c", "'b' did not run (skipped)"),
    )


def test_an_always_step_runs_after_success_failure_and_a_timeout() -> None:
    workflow = chain("success", "always")
    for state in (OK, FAILED, TIMED_OUT):
        assert plan(workflow, {"a": state}, keep_going=False).start == ("b",)


def test_keep_going_runs_what_does_not_depend_on_the_failure() -> None:
    workflow = chain("success", "success", "success", "success", after={"c": ["a"], "d": ["b"]})
    states = {"a": OK, "b": FAILED}
    stopped = plan(workflow, states, keep_going=False)
    assert stopped.start == ()
    assert {name for name, _ in stopped.not_run} == {"c", "d"}
    going = plan(workflow, states, keep_going=True)
    assert going.start == ("c",)
    assert going.skip == (("d", "'b' failed"),)


def test_parallel_roots_start_together_and_a_join_waits_for_all() -> None:
    workflow = chain("success", "success", "success", after={"b": [], "c": ["a", "b"]})
    assert plan(workflow, {}, keep_going=False).start == ("a", "b")
    assert plan(workflow, {"a": OK, "b": RUNNING}, keep_going=False).start == ()
    assert plan(workflow, {"a": OK, "b": OK}, keep_going=False).start == ("c",)


def test_a_step_may_wait_for_one_written_after_it() -> None:
    workflow = chain("success", "success", after={"a": ["b"], "b": []})
    assert plan(workflow, {}, keep_going=False).start == ("b",)
    assert plan(workflow, {"b": FAILED}, keep_going=True).skip == (("a", "'b' failed"),)


def test_the_exit_status_is_that_of_the_first_failure_to_finish() -> None:
    assert exit_status([(OK, 0), (SKIPPED, None), (NOT_RUN, None)]) == 0
    assert exit_status([(OK, 0), (FAILED, 3), (FAILED, 2)]) == 3
    assert exit_status([(TIMED_OUT, 124), (FAILED, 2)]) == 124


def test_the_typed_line_reports_the_status_through_tmux() -> None:
    assert typed_line("make", "ab12") == (
        "make; tmux set -g @tsipc_ab12 $? \\; wait-for -S tsipc_ab12"
    )
    assert "$status" in typed_line("make", "ab12", "fish")


# -- real tmux ------------------------------------------------------------------------


@dataclass
class Server:
    """The test's private tmux server, and the events of the runs made against it."""

    home: Path
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def tmux(self, *args: str, check: bool = True) -> str:
        assert TMUX is not None
        result = subprocess.run(
            [TMUX, *args], capture_output=True, text=True, check=check, timeout=10
        )
        return result.stdout

    def session(self, name: str) -> None:
        self.tmux("-f", os.devnull, "new-session", "-d", "-s", name, "-x", "200", "-y", "50", "sh")

    def screen(self, session: str) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", f"={session}:")

    def current_command(self, session: str) -> str:
        return self.tmux("display-message", "-p", "-t", f"={session}:", "#{pane_current_command}")

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self.events.append((time.monotonic(), name, data))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [data for _, event, data in self.events if event == name]

    def at(self, name: str, step: str) -> float:
        return next(t for t, event, data in self.events if event == name and data["step"] == step)

    async def run(self, text: str, *, keep_going: bool = False, store: Store | None = None) -> int:
        workflow = parse_workflow(text, source="w.toml", default_name="w")
        self.out = io.StringIO()
        with trio.fail_after(30):
            return await run_workflow(
                workflow, keep_going=keep_going, emit=self.emit, out=self.out, store=store
            )


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    sockets = Path(tempfile.mkdtemp(prefix="tsw"))  # short: socket paths are limited
    for name in ("TMUX", "TMUX_PANE", "TS_IPC_TMUX_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TMUX_TMPDIR", str(sockets))
    monkeypatch.setenv("TS_IPC_HOME", str(tmp_path / "ipc"))
    tmux = Server(tmp_path / "ipc")
    try:
        yield tmux
    finally:
        tmux.tmux("kill-server", check=False)
        shutil.rmtree(sockets, ignore_errors=True)


def steps(*bodies: str) -> str:
    return "".join(f"[[step]]\n{body}\n" for body in bodies)


async def at_prompt(server: Server, session: str) -> None:
    with trio.fail_after(10):
        while server.current_command(session).strip() != "sh":
            await trio.sleep(0.02)


@needs_tmux
async def test_a_failing_step_stops_the_run_with_its_exit_status(server: Server) -> None:
    server.session("one")
    server.session("two")
    text = steps(
        'name = "first"\nsession = "one"\ncommand = "echo first-ran"',
        'name = "fails"\nsession = "two"\ncommand = "sh -c \'exit 3\'"',
        'name = "third"\nsession = "one"\ncommand = "echo third-ran"',
    )
    with Store(server.home) as store:
        assert await server.run(text, store=store) == 3
        run_row = store._db.execute("SELECT * FROM runs").fetchone()
        step_rows = store._db.execute("SELECT * FROM steps ORDER BY name").fetchall()
    names = [name for _, name, _ in server.events]
    assert names == [
        "workflow_started",
        "step_started",
        "step_finished",
        "step_started",
        "step_finished",
        "step_skipped",
        "workflow_finished",
    ]
    started = server.named("workflow_started")[0]
    run_id = started["run"]
    assert started == {"workflow": "w", "run": run_id, "steps": ["first", "fails", "third"]}
    first, fails = server.named("step_finished")
    assert {k: first[k] for k in ("step", "session", "command", "exit_code")} == {
        "step": "first",
        "session": "one",
        "command": "echo first-ran",
        "exit_code": 0,
    }
    assert fails["exit_code"] == 3
    assert fails["workflow"] == "w"
    assert fails["run"] == run_id
    assert isinstance(fails["duration"], float)
    assert 0 < fails["duration"] < 5
    assert server.named("step_started")[1] == {
        "workflow": "w",
        "run": run_id,
        "step": "fails",
        "session": "two",
        "command": "sh -c 'exit 3'",
    }
    skipped = server.named("step_skipped")[0]
    assert skipped["step"] == "third"
    assert "fails" in skipped["reason"]
    finished = server.named("workflow_finished")[0]
    assert finished["exit_code"] == 3
    assert (finished["succeeded"], finished["failed"], finished["skipped"]) == (1, 1, 1)
    assert isinstance(finished["duration"], float)
    # The commands were typed into the panes where a person would see them.
    assert "echo first-ran" in server.screen("one")
    assert "\nfirst-ran" in server.screen("one")
    assert "sh -c 'exit 3'; tmux set -g @tsipc_" in server.screen("two")
    assert "third-ran" not in server.screen("one")
    summary = server.out.getvalue().splitlines()
    assert summary[0].split() == ["STEP", "SESSION", "STATUS", "EXIT", "DURATION"]
    assert summary[1].split()[:4] == ["first", "one", "ok", "0"]
    assert summary[2].split()[:4] == ["fails", "two", "failed", "3"]
    assert summary[3].split() == ["third", "one", "not", "run", "-", "-"]
    assert (run_row["id"], run_row["workflow"], run_row["exit_code"]) == (run_id, "w", 3)
    assert run_row["finished"] >= run_row["started"]
    assert [(row["name"], row["state"], row["exit_code"]) for row in step_rows] == [
        ("fails", "failed", 3),
        ("first", "ok", 0),
        ("third", "not_run", None),
    ]


@needs_tmux
async def test_a_step_over_its_timeout_is_interrupted_and_counts_as_124(server: Server) -> None:
    server.session("one")
    began = time.monotonic()
    code = await server.run(steps('session = "one"\ncommand = "sleep 30"\ntimeout = 1'))
    assert code == 124
    assert time.monotonic() - began < 5
    finished = server.named("step_finished")[0]
    assert finished["exit_code"] == 124
    assert 1 <= finished["duration"] < 2
    assert "timed out" in server.out.getvalue()
    await at_prompt(server, "one")
    assert "^C" in server.screen("one")
    assert server.tmux("show-options", "-g").count("@tsipc_") == 0


@needs_tmux
async def test_steps_after_nothing_run_in_parallel(server: Server) -> None:
    server.session("one")
    server.session("two")
    began = time.monotonic()
    text = steps(
        'name = "a"\nsession = "one"\ncommand = "sleep 1"\nafter = []',
        'name = "b"\nsession = "two"\ncommand = "sleep 1"\nafter = []',
    )
    assert await server.run(text) == 0
    assert time.monotonic() - began < 2
    # Each started before the other finished.
    assert server.at("step_started", "a") < server.at("step_finished", "b")
    assert server.at("step_started", "b") < server.at("step_finished", "a")


@needs_tmux
@pytest.mark.parametrize("keep_going", [False, True])
async def test_a_failure_step_cleans_up_and_a_success_step_is_skipped(
    server: Server, tmp_path: Path, keep_going: bool
) -> None:
    """Cleanup runs with or without keep_going; the step that needed success does not.

    Without keep_going the run has stopped, so it is "not run"; with it, its
    condition was checked and did not hold, so it is "skipped".
    """
    server.session("one")
    marker = tmp_path / "cleaned"
    text = steps(
        'name = "build"\nsession = "one"\ncommand = "false"',
        f'name = "cleanup"\nsession = "one"\ncommand = "touch {marker}"\nafter = ["build"]\n'
        'when = "failure"',
        'name = "deploy"\nsession = "one"\ncommand = "echo deployed"\nafter = ["build"]',
        'name = "report"\nsession = "one"\ncommand = "echo reported"\nafter = ["cleanup"]\n'
        'when = "always"',
    )
    assert await server.run(text, keep_going=keep_going) == 1
    assert marker.exists()
    states = {data["step"]: data["exit_code"] for data in server.named("step_finished")}
    assert states == {"build": 1, "cleanup": 0, "report": 0}
    expected = (
        ("deploy", "skipped", "'build' failed")
        if keep_going
        else ("deploy", "not_run", "the run stopped after 'build' failed")
    )
    skipped = server.named("step_skipped")
    assert [(data["step"], data["status"], data["reason"]) for data in skipped] == [expected]
    assert "deployed" not in server.screen("one")


@needs_tmux
async def test_a_command_runs_exactly_as_typed(server: Server, tmp_path: Path) -> None:
    server.session("one")
    target = tmp_path / "out.txt"
    command = (
        f"printf '%s|%s\\n' \"it's $(echo sub)\" 'a;b' > {target}; echo \"$((6 * 7))\" >> {target}"
    )
    assert await server.run(steps(f'session = "one"\ncommand = {toml_string(command)}')) == 0
    assert target.read_text() == "it's sub|a;b\n42\n"
    assert command in server.screen("one")


@needs_tmux
async def test_a_step_waits_while_its_pane_is_busy(server: Server) -> None:
    server.session("one")
    await at_prompt(server, "one")
    # Typed as sl""ept so that "slept" on the screen is the output, not the typing.
    server.tmux("send-keys", "-t", "=one:", 'sleep 0.5; echo sl""ept', "Enter")
    with trio.fail_after(10):
        while server.current_command("one").strip() != "sleep":
            await trio.sleep(0.01)
    assert await server.run(steps('session = "one"\ncommand = "echo after"')) == 0
    duration = server.named("step_finished")[0]["duration"]
    assert duration > 0.3
    screen = server.screen("one")
    # The step was typed after the sleep ended, not into it.
    assert screen.index("slept") < screen.index("echo after;")


@needs_tmux
async def test_a_missing_session_fails_the_step_with_127(server: Server) -> None:
    server.session("one")
    text = steps('session = "absent"\ncommand = "true"')
    assert await server.run(text) == EXIT_NO_SESSION
    finished = server.named("step_finished")[0]
    assert finished["exit_code"] == EXIT_NO_SESSION
    assert "absent" in finished["reason"]


@needs_tmux
async def test_a_pane_that_closes_mid_step_fails_it(server: Server) -> None:
    server.session("keep")
    server.session("gone")
    text = steps('session = "gone"\ncommand = "exit"')
    assert await server.run(text) == EXIT_NO_SESSION
    assert "closed" in server.named("step_finished")[0]["reason"]


@needs_tmux
async def test_steps_in_one_session_take_turns(server: Server, tmp_path: Path) -> None:
    """Two steps that may start at once in one pane do not type over each other."""
    server.session("one")
    log = tmp_path / "log"
    text = steps(
        f'name = "a"\nsession = "one"\ncommand = "echo a >> {log}"\nafter = []',
        f'name = "b"\nsession = "one"\ncommand = "echo b >> {log}"\nafter = []',
    )
    assert await server.run(text) == 0
    assert sorted(log.read_text().split()) == ["a", "b"]
