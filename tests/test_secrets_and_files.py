"""Secrets and files: what the child inherits, and which files supervise trusts.

The child is not trusted: it must not see the secrets supervise itself uses,
and nobody but the user may control the journal, the control socket or the
names they are found by. Every test runs the real ``supervise`` command (or
the SDK) on real children and real files.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import ROOT, SUPERVISE, child, clean_env, finish, popen, read_until, supervise
from telegram_stub import telegram_stub
from test_webhook import http_stub

from supervisor import JournalConfig, ProgramConfig, Supervisor
from supervisor._core.events import Event
from supervisor._core.messages import parse_message
from supervisor._routing.config import FileRouteConfig
from supervisor._routing.journal import SCHEMA_VERSION, Journal
from supervisor._supervisor import _Sequence

AS_ROOT = pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
NOBODY = 65534


def env_lines(output: bytes) -> dict[str, str]:
    """``NAME=value`` lines of ``env`` output (pty newlines included)."""
    found = {}
    for line in output.decode(errors="replace").replace("\r", "").splitlines():
        name, equals, value = line.partition("=")
        if equals:
            found[name.split("| ")[-1].strip()] = value
    return found


# -- 1. secrets the child does not inherit -------------------------------------------


def test_telegram_token_and_webhook_secret_are_not_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`supervise --telegram --webhook URL -- sh -c env` shows neither secret."""
    with telegram_stub(token="4242:TELEGRAM-SECRET") as bot, http_stub(tmp_path) as hook:
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", bot.token)
        monkeypatch.setenv("TELEGRAM_CHAT_ID", "5")
        monkeypatch.setenv("SUPERVISE_WEBHOOK_SECRET", "hook-secret-value")
        monkeypatch.setenv("UNRELATED_SETTING", "kept")
        proc = popen(
            [
                *SUPERVISE,
                "--no-journal",
                "--telegram",
                "--telegram-api-url",
                bot.api_url,
                "--webhook",
                hook.url(),
                "--",
                "sh",
                "-c",
                "env; echo ENV-DONE",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        status, out, err = finish(proc, timeout=60)
    assert status == 0, err
    assert b"ENV-DONE" in out
    env = env_lines(out)
    assert env["UNRELATED_SETTING"] == "kept"
    assert "TELEGRAM_BOT_TOKEN" not in env
    assert "SUPERVISE_WEBHOOK_SECRET" not in env
    assert b"TELEGRAM-SECRET" not in out
    assert b"hook-secret-value" not in out
    # supervise itself still used both.
    assert hook.requests()
    assert headers_signed(hook.requests()[0])


def headers_signed(request: dict[str, Any]) -> bool:
    return any(name.lower() == "x-signature-256" for name, _ in request["headers"])


def test_pass_env_and_env_let_a_secret_through_on_purpose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--pass-env hands the inherited secret on; --env sets a value of its own."""
    monkeypatch.setenv("SUPERVISE_WEBHOOK_SECRET", "hook-secret-value")
    with http_stub(tmp_path) as hook:
        passed = supervise(
            "--no-journal", "--webhook", hook.url(), "--pass-env", "SUPERVISE_WEBHOOK_SECRET",
            "--", "sh", "-c", "env",
        )  # fmt: skip
        overridden = supervise(
            "--no-journal", "--webhook", hook.url(), "--env", "SUPERVISE_WEBHOOK_SECRET=mine",
            "--", "sh", "-c", "env",
        )  # fmt: skip
    assert env_lines(passed.stdout)["SUPERVISE_WEBHOOK_SECRET"] == "hook-secret-value"
    assert env_lines(overridden.stdout)["SUPERVISE_WEBHOOK_SECRET"] == "mine"


def test_config_file_secrets_are_kept_per_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis password_env and a webhook secret_env of the file: withheld unless pass_env."""
    monkeypatch.setenv("REDIS_PW", "redis-secret-value")
    monkeypatch.setenv("HOOK_KEY", "hook-secret-value")
    config = tmp_path / "sec.toml"
    config.write_text(
        "drain_timeout = 0\n"
        '[programs.plain]\ncommand = ["sh", "-c", "env"]\nrestart = "no"\n'
        '[programs.trusted]\ncommand = ["sh", "-c", "env"]\nrestart = "no"\n'
        'pass_env = ["REDIS_PW"]\n'
        '[[routes]]\nname = "r"\nsink = { type = "redis", url = "redis://127.0.0.1:1/0",'
        ' password_env = "REDIS_PW" }\n'
        '[[routes]]\nname = "h"\nevents = ["nothing"]\n'
        'sink = { type = "webhook", url = "http://127.0.0.1:1/", secret_env = "HOOK_KEY" }\n'
    )
    checked = supervise("check-config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.decode().splitlines()[1] == (
        "kept from the programs: REDIS_PW, HOOK_KEY (passed on to trusted: REDIS_PW)"
    )
    result = supervise("--no-journal", "--config", str(config))
    lines = result.stdout.decode().replace("\r", "").splitlines()
    plain = [line for line in lines if line.startswith("plain")]
    trusted = [line for line in lines if line.startswith("trusted")]
    assert any("PATH=" in line for line in plain), result.stdout
    assert not any("REDIS_PW" in line or "HOOK_KEY" in line for line in plain)
    assert any(line.endswith("REDIS_PW=redis-secret-value") for line in trusted)
    assert not any("HOOK_KEY" in line for line in trusted)


@pytest.mark.parametrize("name", ["", "A=B", "1X", "has space"])
def test_pass_env_names_are_checked(tmp_path: Path, name: str) -> None:
    """A pass_env entry that cannot be a variable name is one line naming the key."""
    config = tmp_path / "bad.toml"
    config.write_text(f"[programs.a]\ncommand = 'true'\npass_env = [{json.dumps(name)}]\n")
    result = supervise("check-config", str(config))
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"supervise: {config}: programs.a.pass_env: {name!r} is not an environment variable name\n"
    )


# -- 2. the journal's file and directory ---------------------------------------------


def test_symlink_at_the_journal_path_is_refused(tmp_path: Path) -> None:
    """Neither supervise nor `events` follows it; its target is never created."""
    target, link = tmp_path / "target.db", tmp_path / "j.db"
    link.symlink_to(target)
    result = supervise("--journal", str(link), "--", "echo", "ran")
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.decode() == f"supervise: {link}: is a symlink; refusing to follow it\n"
    assert not target.exists()
    target.write_bytes(b"")
    read = supervise("events", "--journal", str(link))
    assert read.returncode == 2
    assert read.stderr.decode() == f"supervise: {link}: is a symlink; refusing to follow it\n"


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_symlink_beside_the_journal_is_refused(tmp_path: Path, suffix: str) -> None:
    """SQLite's companion files are checked too, before SQLite opens them."""
    path = tmp_path / "j.db"
    Journal.open(path).close()
    companion = tmp_path / f"j.db{suffix}"
    companion.unlink(missing_ok=True)
    companion.symlink_to(tmp_path / "elsewhere")
    result = supervise("--journal", str(path), "--", "true")
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"supervise: {companion}: is a symlink; refusing to follow it\n"
    )
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_journal_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    """Whoever can write the directory could swap the journal: refused, nothing created."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    result = supervise("--journal", str(shared / "j.db"), "--", "echo", "ran")
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.decode() == (
        f"supervise: {shared}: the directory is writable by others; refusing to use it\n"
    )
    assert list(shared.iterdir()) == []


def test_journal_file_others_can_write_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journal.open(path).close()
    path.chmod(0o666)
    result = supervise("--journal", str(path), "--", "true")
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"supervise: {path}: the file is writable by others; refusing to use it\n"
    )


@AS_ROOT
def test_journal_of_another_user_is_refused(tmp_path: Path) -> None:
    """A journal someone else pre-created (to read or inject events) is not used or read."""
    path = tmp_path / "j.db"
    Journal.open(path).close()
    os.chown(path, NOBODY, NOBODY)
    expected = f"supervise: {path}: the file belongs to uid {NOBODY}; refusing to use it\n"
    for result in (
        supervise("--journal", str(path), "--", "true"),
        supervise("events", "--journal", str(path)),
    ):
        assert result.returncode == 2
        assert result.stderr.decode() == expected
    os.chown(path, 0, 0)
    directory = tmp_path / "theirs"
    directory.mkdir()
    os.chown(directory, NOBODY, NOBODY)
    result = supervise("--journal", str(directory / "j.db"), "--", "true")
    assert result.stderr.decode() == (
        f"supervise: {directory}: the directory belongs to uid {NOBODY}; refusing to use it\n"
    )


def test_default_state_directory_is_private(tmp_path: Path) -> None:
    """The state directory supervise creates for its journals is 0700."""
    env = {**clean_env(), "XDG_STATE_HOME": str(tmp_path / "state")}
    run = subprocess.run(
        [*SUPERVISE, "--", "true"], env=env, cwd=ROOT, capture_output=True, check=False, timeout=60
    )
    assert run.returncode == 0, run.stderr
    directory = tmp_path / "state" / "ipc-supervisor"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "true.journal.db").stat().st_mode) == 0o600


# -- 3. ctl does not follow a swapped control directory ----------------------------


@pytest.fixture
def runtime_dirs() -> Iterator[tuple[Path, Path]]:
    """Two short runtime directories: where supervise runs, and where ctl looks."""
    roots = (Path(tempfile.mkdtemp(prefix="ipcA")), Path(tempfile.mkdtemp(prefix="ipcB")))
    yield roots
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


def test_ctl_refuses_a_symlinked_control_directory(runtime_dirs: tuple[Path, Path]) -> None:
    """A control directory swapped for a symlink to one holding a live socket is refused."""
    theirs, ours = runtime_dirs
    env = {**clean_env(), "XDG_RUNTIME_DIR": str(theirs)}
    proc = subprocess.Popen(
        [*SUPERVISE, "--instance", "victim", "--", *child("signals")],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        read_until(proc, b"READY")
        ctl_env = {**clean_env(), "XDG_RUNTIME_DIR": str(ours)}

        def ctl(*args: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [*SUPERVISE, "ctl", *args], env=ctl_env, cwd=ROOT, capture_output=True,
                timeout=30, check=False,
            )  # fmt: skip

        (ours / "ipc-supervisor").symlink_to(theirs / "ipc-supervisor")
        expected = f"supervise: {ours / 'ipc-supervisor'}: is a symlink; refusing to follow it\n"
        for args in (("--instance", "victim", "status"), ("status",)):
            refused = ctl(*args)
            assert (refused.returncode, refused.stdout) == (1, b""), refused.stderr
            assert refused.stderr.decode() == expected
        # The same directory under its own name is ours and answers.
        ctl_env["XDG_RUNTIME_DIR"] = str(theirs)
        assert ctl("--instance", "victim", "status").returncode == 0
    finally:
        proc.terminate()
        finish(proc)


@AS_ROOT
def test_ctl_refuses_a_socket_of_another_user(runtime_dirs: tuple[Path, Path]) -> None:
    """A socket in our directory that another user owns is not talked to."""
    root, _ = runtime_dirs
    env = {**clean_env(), "XDG_RUNTIME_DIR": str(root)}
    proc = subprocess.Popen(
        [*SUPERVISE, "--instance", "victim", "--", *child("signals")],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        read_until(proc, b"READY")
        sock = root / "ipc-supervisor" / "victim.sock"
        os.chown(sock, NOBODY, NOBODY)
        refused = subprocess.run(
            [*SUPERVISE, "ctl", "--instance", "victim", "status"], env=env, cwd=ROOT,
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        assert refused.returncode == 1
        assert refused.stderr.decode() == (
            f"supervise: {sock}: the file belongs to uid {NOBODY}; refusing to use it\n"
        )
    finally:
        proc.terminate()
        finish(proc)


# -- 4. instance names ---------------------------------------------------------------

BAD_NAMES = [
    ("../x", "it starts with '.'"),
    ("", "it is empty"),
    ("a/b", "it contains '/'"),
    ("a\x1bb", "it contains a control character"),
    ("x" * 101, "it is longer than 100 characters"),
]


@pytest.mark.parametrize(("name", "problem"), BAD_NAMES)
@pytest.mark.parametrize(
    "command",
    [("--instance", "{}", "--", "echo", "ran"), ("ctl", "--instance", "{}", "status"),
     ("events", "--instance", "{}")],
    ids=["supervise", "ctl", "events"],
)  # fmt: skip
def test_bad_instance_names_are_refused_alike(
    command: tuple[str, ...], name: str, problem: str
) -> None:
    result = supervise(*(name if part == "{}" else part for part in command))
    assert (result.returncode, result.stdout) == (2, b"")
    shown = repr(name if len(name) <= 40 else name[:40] + "...")
    assert result.stderr.decode() == (
        f"supervise: --instance: {shown} is not an instance name: {problem}\n"
    )


def test_instance_names_from_files_and_programs_are_checked(tmp_path: Path) -> None:
    """A file's `instance`, its stem, and a program name used as the instance."""
    config = tmp_path / "c.toml"
    config.write_text("instance = '../up'\n[programs.a]\ncommand = 'true'\n")
    result = supervise("check-config", str(config))
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"supervise: {config}: instance: '../up' is not an instance name: it starts with '.'\n"
    )
    hidden = tmp_path / ".hidden.toml"
    hidden.write_text("[programs.a]\ncommand = 'true'\n")
    result = supervise("--config", str(hidden))
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"supervise: {hidden}: instance (the file's stem): '.hidden' is not an instance "
        "name: it starts with '.'\n"
    )
    result = supervise("--name", "a/b", "--", "echo", "ran")
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.decode() == (
        "supervise: --instance (by default the program's name): 'a/b' is not an instance "
        "name: it contains '/'\n"
    )


# -- 5. seqs are never reused after failed journal writes ---------------------------


def frames_child(count: int) -> ProgramConfig:
    script = "".join(
        f'echo \'__IPC_START__{{"type":"ipc","event":"task_start","data":{{"taskId":"T{i}"}}}}'
        "__IPC_END__'\n"
        for i in range(count)
    )
    return ProgramConfig(command=("sh", "-c", script), name="frames")


class _FullDiskSupervisor(Supervisor):
    """The journal's disk fills up as soon as the run has opened it."""

    def _open_journal(self) -> None:
        super()._open_journal()
        assert self.journal is not None
        # SQLITE_FULL on every append that needs a page: disk full, as SQLite reports it.
        db = self.journal.journal._db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")


async def run_once(journal: Path, events: Path, *, full: bool = False) -> list[str]:
    """One SDK run of a child printing frames; ``full``: the journal's disk is full."""
    reports: list[str] = []
    sup = (_FullDiskSupervisor if full else Supervisor)(
        [frames_child(20)],
        routes=[
            FileRouteConfig.model_validate(
                {"name": "f", "sink": {"type": "file", "path": str(events)}}
            )
        ],
        journal=JournalConfig(path=journal),
        outputs={"frames": None},
        report=reports.append,
    )
    with trio.fail_after(20):
        await sup.run()
    return reports


async def test_seqs_handed_out_before_a_failed_write_are_never_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal, first, second = tmp_path / "j.db", tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    await run_once(journal, tmp_path / "0.jsonl")
    await run_once(journal, first, full=True)
    # The router logs it (the CLI's handler prints it as "supervise: journal: ...").
    logged = [r.getMessage() for r in caplog.records if r.name == "supervisor._routing.router"]
    expected = "journal: cannot write events: database or disk is full (events are still routed)"
    assert expected in logged
    with Journal.open(journal) as opened:
        stored = opened.last_seq()
    routed = [json.loads(line)["seq"] for line in first.read_text().splitlines()]
    # A first small batch may still fit in the pages the journal has; the
    # rest of the run's seqs were handed out and never stored.
    failed = [seq for seq in routed if seq > stored]
    assert failed
    assert routed == sorted(routed)
    await run_once(journal, second)
    later = [json.loads(line)["seq"] for line in second.read_text().splitlines()]
    assert later
    assert min(later) > max(failed)


def test_sequence_reserves_the_next_block_before_handing_it_out(tmp_path: Path) -> None:
    """Each block is reserved in the journal before its first seq goes out."""
    with Journal.open(tmp_path / "j.db") as journal:
        reserved: list[int] = []

        def reserve(upto: int) -> None:
            journal.reserve_seqs(upto)
            reserved.append(upto)

        sequence = _Sequence(journal.next_seq(), block=10)
        sequence.reserve_with(reserve, print)
        assert reserved == [10]
        seqs = [next(sequence) for _ in range(25)]
        assert seqs == list(range(1, 26))
        assert reserved == [10, 20, 30]
        assert journal.next_seq() == 31


def test_a_failed_reservation_is_one_line_and_numbering_goes_on() -> None:
    reports: list[str] = []

    def reserve(upto: int) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    sequence = _Sequence(1, block=5)
    sequence.reserve_with(reserve, reports.append)
    assert [next(sequence) for _ in range(3000)] == list(range(1, 3001))
    assert reports == ["journal: cannot reserve seqs up to 5: database or disk is full"]


def test_journal_of_the_previous_schema_is_upgraded(tmp_path: Path) -> None:
    """A version 1 journal (no reserved_seq) opens, keeps its events and numbers on."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, program TEXT NOT NULL,"
        " event TEXT NOT NULL, received_at INTEGER NOT NULL, message_id TEXT, line BLOB NOT NULL);"
        "CREATE TABLE routes (name TEXT PRIMARY KEY, delivered_seq INTEGER NOT NULL);"
        "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, route TEXT NOT NULL,"
        " seq INTEGER NOT NULL, error TEXT NOT NULL, failed_at INTEGER NOT NULL,"
        " attempts INTEGER NOT NULL, line BLOB NOT NULL);"
        "CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), last_seq INTEGER NOT NULL,"
        " bytes INTEGER NOT NULL);"
        "INSERT INTO meta VALUES (1, 41, 0);"
        "PRAGMA application_id = 1229996874; PRAGMA user_version = 1;"
    )
    db.close()
    path.chmod(0o600)
    with Journal.open(path, readonly=True) as old:
        assert old.last_seq() == 41
    with Journal.open(path) as journal:
        assert journal.next_seq() == 42
        journal.reserve_seqs(500)
        assert journal.next_seq() == 501
        event = Event(501, "p", 0, "child", parse_message({"type": "ipc", "event": "x"}))
        journal.append([event])
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
