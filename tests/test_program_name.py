"""The default program name is what the command runs, never its interpreter.

Table tests pin the rule on real command lines; a property checks that any
chain of launchers and options in front of a script still names the script,
and that the name is always a valid program name.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor import ProgramConfig
from supervisor._config import _PROGRAM_NAME
from supervisor._core.program_name import LAUNCHERS, default_program_name

CWD = "/home/ada/proj"


@pytest.mark.parametrize(
    ("command", "name"),
    [
        ("bun /home/ada/loopwork/src/index.ts run", "loopwork"),
        ("bun run ../loopwork/src/index.ts", "loopwork"),
        ("npx @loopwork-ai/loopwork", "loopwork"),
        ("npx -y @loopwork-ai/loopwork@1.2.3 run", "loopwork"),
        ("bunx --bun loopwork@latest", "loopwork"),
        ("python examples/fake_loopwork.py", "fake_loopwork"),
        ("python3.11 -X dev -u tool.py --flag", "tool"),
        ("python3 -m pytest -q", "pytest"),
        ("python -m loopwork.__main__", "loopwork"),
        ("python -m http.server 8000", "http"),
        ("node dist/cli.js", "proj"),
        ("node --require ts-node/register index.js", "proj"),
        ("node ./packages/agent/bin/main.mjs", "agent"),
        ("deno run -A --config deno.json main.ts", "proj"),
        ("tsx watch src/server.ts", "proj"),
        ("ts-node -P tsconfig.json scripts/deploy.ts", "deploy"),
        ("env A=B -u HOME bun run x.ts", "x"),
        ("env -S 'loopwork run'", "loopwork"),
        ("sh -c 'loopwork run'", "loopwork"),
        ("bash -lc 'exec python3 -u worker.py'", "worker"),
        ("sh -c 'LOOPWORK_IPC=true bun src/index.ts'", "proj"),
        ("zsh ./scripts/nightly.sh", "nightly"),
        ("nohup nice -n 5 ./bin/loopwork", "loopwork"),
        ("timeout -s KILL 10 node srv.mjs", "srv"),
        ("uv run --with rich python tool.py", "tool"),
        ("uv run -m mypkg.cli", "mypkg"),
        ("uvx ruff==0.6.0 check", "ruff"),
        ("npm --prefix ../loopwork start", "loopwork"),
        ("npm run build:watch", "build-watch"),
        ("pnpm dlx create-vite", "create-vite"),
        ("yarn dlx @scope/tool", "tool"),
        ("npx tsx src/index.ts", "proj"),
        ("ruby -I lib bin/rake", "rake"),
        ("perl -I lib script.pl", "script"),
        ("/usr/local/bin/claude --print", "claude"),
        ("./run.sh", "proj"),
        ("cat", "cat"),
        ("'weird name!'", "weird-name"),
        ("python -c 'print(1)'", "python"),
        ("bash", "bash"),
        ("/usr/bin/python3", "python3"),
        ("'!!!'", "program"),
    ],
)
def test_default_names(command: str, name: str) -> None:
    config = ProgramConfig(command=command)
    assert default_program_name(config.command, CWD) == name


def test_the_working_directory_is_the_programs() -> None:
    """A generic script names the directory it runs in: ``cwd`` when set."""
    config = ProgramConfig(command="node index.js", cwd=Path("/srv/billing"))
    assert config.program_name == "billing"
    assert ProgramConfig(command="node index.js", name="api").program_name == "api"


_SIMPLE_LAUNCHERS = sorted(
    name for name, launcher in LAUNCHERS.items() if not launcher.positional and not launcher.package
)
_word = st.text(st.sampled_from("abcxyz_-."), min_size=1, max_size=8)
_target = st.from_regex(r"\A[a-z][a-z0-9_]{0,10}\Z").filter(
    lambda stem: (
        stem not in LAUNCHERS
        and stem not in {"index", "main", "cli", "run", "app"}
        and stem not in {"server", "start"}
        # A bare word a launcher reads as its own subcommand (``bun x``).
        and not any(stem in launcher.subcommands for launcher in LAUNCHERS.values())
    )
)


@st.composite
def _launched(draw: st.DrawFn) -> tuple[list[str], str]:
    """A script behind any chain of launchers, each with harmless flags."""
    stem = draw(_target)
    directory = draw(st.lists(_word, max_size=3))
    suffix = draw(st.sampled_from(["", ".py", ".ts", ".js", ".sh"]))
    script = "/".join(["."] * bool(directory) + [*directory, stem + suffix])
    command = [script, *draw(st.lists(_word.map(lambda w: "-" + w), max_size=2))]
    for launcher in draw(st.lists(st.sampled_from(_SIMPLE_LAUNCHERS), min_size=1, max_size=4)):
        flags = draw(st.lists(st.sampled_from(["-u", "-B", "--quiet", "-v"]), max_size=2))
        if launcher == "env":
            # env's -u takes a value (``env -u NAME``): not a harmless flag there.
            flags = [flag for flag in flags if flag != "-u"]
            flags = [*flags, *draw(st.lists(st.just("A=b"), max_size=2))]
        if launcher in ("sh", "bash", "zsh") and draw(st.booleans()):
            command = [launcher, "-c", shlex.join(command)]
        else:
            command = [launcher, *flags, *command]
    return command, stem


@given(_launched())
def test_launchers_in_front_never_name_the_program(case: tuple[list[str], str]) -> None:
    command, stem = case
    assert default_program_name(command, CWD) == stem


@given(st.lists(st.text(max_size=20), min_size=1, max_size=6), st.text(max_size=30))
def test_the_name_is_always_a_valid_program_name(command: list[str], cwd: str) -> None:
    assert _PROGRAM_NAME.match(default_program_name(command, cwd))
