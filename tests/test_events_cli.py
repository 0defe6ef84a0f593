"""``supervise events``: journaled events as JSON lines, replayed and followed."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import finish, popen, read_until

from supervisor._cli.events import main
from supervisor._core.events import Event
from supervisor._core.messages import parse_message
from supervisor._routing.journal import Journal, journal_path

T0 = 1_795_236_690_000


def make_event(seq: int, program: str = "web", event: str = "task_start") -> Event:
    data = {"message": f"m{seq}"} if event == "log" else {"taskId": f"T-{seq}"}
    fields = {"type": "ipc", "event": event, "data": data, "messageId": f"id-{seq}"}
    return Event(seq, program, T0 + seq, "child", parse_message(fields))


FIRST = [
    make_event(1),
    make_event(2, "db", "task_complete"),
    make_event(3, "web", "log"),
    make_event(4, "db", "task_start"),
]


def jsonl(events: list[Event]) -> bytes:
    return b"".join(event.to_json() + b"\n" for event in events)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private XDG state directory, where instances' journals are looked for."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "ipc-supervisor"


def write_journal(path: Path, events: list[Event]) -> Path:
    with Journal.open(path) as journal:
        journal.append(events)
    return path


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return write_journal(tmp_path / "one.journal.db", FIRST)


def test_prints_every_stored_line(journal: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    """Without options every event is printed as its exact stored line, in seq order."""
    assert main(["--journal", str(journal)]) == 0
    out, err = capfdbinary.readouterr()
    assert out == jsonl(FIRST)
    assert err == b""


def test_since_and_pattern(journal: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    """--since skips what was seen; --pattern filters by event or PROGRAM:EVENT."""
    assert main(["--journal", str(journal), "--since", "2"]) == 0
    assert capfdbinary.readouterr().out == jsonl(FIRST[2:])
    assert main(["--journal", str(journal), "--pattern", "task_*"]) == 0
    assert capfdbinary.readouterr().out == jsonl([FIRST[0], FIRST[1], FIRST[3]])
    assert main(["--journal", str(journal), "--pattern", "db:*", "--since", "2"]) == 0
    assert capfdbinary.readouterr().out == jsonl([FIRST[3]])
    assert main(["--journal", str(journal), "--since", "4"]) == 0
    assert capfdbinary.readouterr().out == b""


def test_many_pages(tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    """More events than one query returns are all printed, once each."""
    many = [make_event(seq) for seq in range(1, 2600)]
    path = write_journal(tmp_path / "big.journal.db", many)
    assert main(["--journal", str(path), "--since", "10"]) == 0
    assert capfdbinary.readouterr().out == jsonl(many[10:])


def test_instance_journal_in_state_dir(
    state: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """The only journal in the state directory is the default; --instance picks one."""
    write_journal(journal_path("web", state), FIRST[:1])
    assert main([]) == 0
    assert capfdbinary.readouterr().out == jsonl(FIRST[:1])
    write_journal(journal_path("db", state), FIRST[1:2])
    assert main(["--instance", "db"]) == 0
    assert capfdbinary.readouterr().out == jsonl(FIRST[1:2])


def one_line_error(capfdbinary: pytest.CaptureFixture[bytes]) -> str:
    out, err = capfdbinary.readouterr()
    assert out == b""
    assert err.startswith(b"supervise: ")
    assert err.count(b"\n") == 1, err
    return err.decode()


def test_choice_of_journal_errors(state: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    """No journal, several, or a missing instance: one line on stderr and exit 2."""
    assert main([]) == 2
    assert "no journal" in one_line_error(capfdbinary)
    write_journal(journal_path("web", state), FIRST[:1])
    write_journal(journal_path("db", state), FIRST[1:2])
    assert main([]) == 2
    assert "several journals (db, web)" in one_line_error(capfdbinary)
    assert main(["--instance", "api"]) == 2
    assert "(journals: db, web)" in one_line_error(capfdbinary)
    assert main(["--journal", str(state / "nope.journal.db")]) == 2
    assert "no such journal" in one_line_error(capfdbinary)


def test_bad_options_and_bad_files(
    tmp_path: Path, journal: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Usage errors and files that are not journals exit 2."""
    assert main(["--journal", str(journal), "--since", "-1"]) == 2
    assert main(["--journal", str(journal), "--poll", "0"]) == 2
    assert main(["--journal", str(journal), "--instance", "x"]) == 2
    capfdbinary.readouterr()
    junk = tmp_path / "junk.journal.db"
    junk.write_bytes(b"not a database at all" * 100)
    assert main(["--journal", str(junk)]) == 2
    assert "junk.journal.db" in one_line_error(capfdbinary)


def events_command(*args: str) -> subprocess.Popen[bytes]:
    return popen(
        [sys.executable, "-m", "supervisor._cli.events", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_follow_prints_new_rows_until_interrupted(journal: Path) -> None:
    """--follow picks up rows appended later and ends quietly, status 0, on Control-C."""
    proc = events_command("--journal", str(journal), "--follow", "--poll", "0.02")
    seen = read_until(proc, FIRST[-1].to_json() + b"\n")
    later = [make_event(5, "db", "log"), make_event(6), make_event(7, "web", "log")]
    with Journal.open(journal) as writer:
        writer.append(later[:1])
        seen += read_until(proc, later[0].to_json() + b"\n")
        writer.append(later[1:])
        seen += read_until(proc, later[-1].to_json() + b"\n")
    proc.send_signal(signal.SIGINT)
    status, out, err = finish(proc)
    assert (status, err) == (0, b"")
    assert seen + out == jsonl(FIRST + later)


def test_follow_with_pattern_skips_other_rows(journal: Path) -> None:
    """Following a pattern prints only matching rows, each once, however many others pass."""
    proc = events_command("--journal", str(journal), "-f", "--poll", "0.02", "--pattern", "log")
    seen = read_until(proc, FIRST[2].to_json() + b"\n")
    with Journal.open(journal) as writer:
        writer.append([make_event(seq) for seq in range(5, 1500)])
        writer.append([make_event(1500, "db", "log")])
    seen += read_until(proc, make_event(1500, "db", "log").to_json() + b"\n")
    proc.send_signal(signal.SIGINT)
    status, out, err = finish(proc)
    assert (status, err) == (0, b"")
    assert seen + out == jsonl([FIRST[2], make_event(1500, "db", "log")])


def test_closed_stdout_ends_quietly(journal: Path) -> None:
    """A reader that goes away (``| head``) ends the follow with status 0 and no noise."""
    proc = events_command("--journal", str(journal), "--follow", "--poll", "0.02")
    read_until(proc, FIRST[-1].to_json() + b"\n")
    assert proc.stdout is not None
    proc.stdout.close()
    with Journal.open(journal) as writer:
        writer.append([make_event(5)])
    status, _, err = finish(proc)
    assert (status, err) == (0, b"")
