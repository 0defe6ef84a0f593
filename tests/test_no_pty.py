"""``--no-pty``: a child on pipes goes through the same states as one on a pty."""

from __future__ import annotations

import re
import subprocess
import time

import httpx
from conftest import SUPERVISE, finish, popen, read_until, supervise
from prometheus_client.parser import text_string_to_metric_families
from test_prometheus import read_stderr_until


def test_a_child_on_pipes_reaches_running() -> None:
    """supervise --no-pty: ``ctl status`` says running and ``supervise_program_up`` is 1."""
    proc = popen(
        [
            *SUPERVISE,
            "--no-pty",
            "--instance",
            "nopty",
            "--metrics-port",
            "0",
            "--",
            "sh",
            "-c",
            "echo READY; sleep 30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    seen = read_stderr_until(proc, rb"metrics at \S+/metrics\n")
    match = re.search(rb"metrics at (\S+)\n", seen)
    assert match is not None
    read_until(proc, b"READY")
    # The state changes just after the spawn; READY may come first.
    deadline = time.monotonic() + 10
    while True:
        status = supervise("ctl", "--instance", "nopty", "status", timeout=10)
        assert status.returncode == 0, status.stderr
        if re.search(rb"^echo +running ", status.stdout, re.MULTILINE):
            break
        assert time.monotonic() < deadline, status.stdout
    response = httpx.get(match.group(1).decode(), timeout=5)
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    (up,) = families["supervise_program_up"].samples
    assert (up.labels, up.value) == ({"program": "echo"}, 1.0)  # sh -c names its script
    running = [
        sample
        for sample in families["supervise_program_state"].samples
        if sample.labels["state"] == "running"
    ]
    assert [sample.value for sample in running] == [1.0]
    proc.terminate()
    code, _, _ = finish(proc)
    assert code == 143
