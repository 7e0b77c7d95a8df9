"""Subprocesses for tests, bounded in time.

Each child starts its own session, so that the launcher and every worker it starts form one process group. A child
that outlives its time is killed with its whole group and the test fails with the end of its output and the
processes that were still alive. The test fails instead of blocking the test run: a hung `accelerate launch`
(a worker waiting in a collective for a peer that is gone) otherwise holds a pipe open for the collective's 30-minute
timeout, and the CI run is lost. `kill_leftovers` (an autouse fixture in conftest.py) kills whatever a test started
and did not wait for.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Sequence

import pytest

TIMEOUT_S = 600  # the slowest child (a two-process training run on a loaded 2-core machine) takes about 90 s
_started: list[subprocess.Popen] = []


def start(command: Sequence[str], **kwargs) -> subprocess.Popen:
    """`subprocess.Popen` in a new session (its own process group), remembered so that it is killed after the test."""
    process = subprocess.Popen(list(map(str, command)), start_new_session=True, **kwargs)
    _started.append(process)
    return process


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process's whole group: the launcher and the workers it started."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def still_running(process: subprocess.Popen) -> str:
    """`ps` lines for the processes of `process`'s group, to say where a hang was."""
    ps = subprocess.run(["ps", "-o", "pid,stat,etime,args", "-g", str(process.pid)], capture_output=True, text=True)
    return ps.stdout.strip() or "(none)"


def fail_timed_out(process: subprocess.Popen, timeout: float, output: str) -> None:
    alive = still_running(process)
    kill_group(process)
    pytest.fail(
        f"{shlex.join(map(str, process.args))} did not finish within {timeout:.0f} s and was killed.\n"
        f"Still running then:\n{alive}\nIts output ended with:\n{output[-4000:]}",
        pytrace=False,
    )


def wait(process: subprocess.Popen, timeout: float = TIMEOUT_S, output: str = "") -> int:
    """`process.wait`, failing the test (and killing the group) after `timeout` seconds."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        fail_timed_out(process, timeout, output)


def run(command: Sequence[str], *, timeout: float = TIMEOUT_S, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(command, capture_output=True, text=True, **kwargs)` that cannot hang the test run."""
    kwargs.setdefault("text", True)
    if kwargs.pop("capture_output", True):
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
    process = start(command, **kwargs)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        partial = e.stderr or ""  # bytes even in text mode, on some Python versions
        fail_timed_out(process, timeout, partial.decode(errors="replace") if isinstance(partial, bytes) else partial)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


class Watched:
    """A child whose stdout and stderr are read as they come (a pipe nobody reads fills and blocks the child)."""

    def __init__(self, command: Sequence[str], **kwargs) -> None:
        self.process = start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, into), daemon=True)
            for stream, into in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, into: list[str]) -> None:
        for chunk in iter(lambda: stream.read(64), ""):
            into.append(chunk)
            self.on_output()

    def on_output(self) -> None:
        """Called after each chunk of output; subclasses watch progress here."""

    def stderr(self) -> str:
        return "".join(self.err)

    def finish(self, timeout: float = TIMEOUT_S) -> tuple[int, str]:
        """Wait for the child to end (failing the test after `timeout` s); its exit code and whole stdout."""
        code = wait(self.process, timeout, self.stderr())
        for reader in self._readers:
            reader.join(30)  # a grandchild that escaped the group could hold the pipe: do not wait on it for ever
        return code, "".join(self.out)


def started() -> int:
    """How many children `start` has started so far: pass it to `kill_leftovers` to end only the later ones."""
    return len(_started)


def kill_leftovers(since: int = 0) -> None:
    """Kill the group of every child started with `start` (the `since`-th on) that is still running. A test's own
    children go; those of a module fixture started before it (a server the module's tests share) stay."""
    while len(_started) > since:
        process = _started.pop()
        if process.poll() is None:
            kill_group(process)
