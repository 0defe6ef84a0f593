"""Per-program log files: whole lines, timestamps, rotation, reopen."""

from __future__ import annotations

from pathlib import Path

from conftest import supervise
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor._logfile import LineLog


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_lines_are_never_cut(chunks: list[bytes]) -> None:
    """Whatever the chunking, the log holds exactly the input, rotated only between lines."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.log"
        log = LineLog(path, max_bytes=64, backups=1000)
        for chunk in chunks:
            log.write(chunk)
        log.close()
        files = sorted(Path(folder).glob("p.log.*"), key=lambda p: -int(p.suffix[1:]))
        parts = [f.read_bytes() for f in [*files, path]]
    data = b"".join(chunks)
    expected = data if not data or data.endswith(b"\n") else data + b"\n"
    assert b"".join(parts) == expected
    for part in parts[:-1]:
        assert part.endswith(b"\n")


def test_supervise_log_file_with_timestamps_and_rotation(tmp_path: Path) -> None:
    """--log-file gets the plain output without frames, stamped, rotated at whole lines."""
    log = tmp_path / "child.log"
    script = (
        "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.05; done; "
        'echo \'__IPC_START__{"type":"ipc","event":"log","data":{"message":"m"}}__IPC_END__\'; '
        "printf unfinished"
    )
    result = supervise(
        "--log-file",
        str(log),
        "--log-timestamps",
        "--log-max-bytes",
        "100",
        "--log-backups",
        "10",
        "--",
        "sh",
        "-c",
        script,
    )
    assert result.returncode == 0
    rotated = sorted(tmp_path.glob("child.log.*"), key=lambda p: -int(p.suffix[1:]))
    assert rotated, "the log was not rotated"
    text = b"".join(p.read_bytes() for p in [*rotated, log]).decode()
    lines = text.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        *(f"line {i}" for i in range(1, 7)),
        "unfinished",
    ]
    assert all(line[:4].isdigit() and line[10] == "T" for line in lines)
    assert "__IPC_" not in text


def test_log_reopen_follows_external_rotation(tmp_path: Path) -> None:
    """After the file is moved away, reopen() starts a new file at the old path."""
    path = tmp_path / "p.log"
    log = LineLog(path)
    log.write(b"one\n")
    path.rename(tmp_path / "p.log.old")
    log.reopen()
    log.write(b"two\n")
    log.close()
    assert (tmp_path / "p.log.old").read_bytes() == b"one\n"
    assert path.read_bytes() == b"two\n"


def test_ctl_reopen_logs(tmp_path: Path) -> None:
    """supervise ctl reopen-logs makes a running program write to a fresh file."""
    import subprocess

    from conftest import SUPERVISE, child, finish, popen, read_until

    log = tmp_path / "p.log"
    proc = popen(
        [*SUPERVISE, "--instance", "logs", "--log-file", str(log), "--", *child("winsize")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    read_until(proc, b"READY")
    log.rename(tmp_path / "p.log.1")
    reopened = supervise("ctl", "--instance", "logs", "reopen-logs")
    assert reopened.stdout == b"reopened logs of: winsize\n"
    assert proc.stdin is not None
    proc.stdin.write(b"quit\n")
    proc.stdin.flush()
    status, _, _ = finish(proc)
    assert status == 0
    assert b"READY" in (tmp_path / "p.log.1").read_bytes()
    assert log.exists()
