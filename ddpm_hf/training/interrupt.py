"""Stopping on a signal without losing work.

Clusters stop jobs with SIGTERM (preemption, time limits) and people press Ctrl-C (SIGINT). Either asks the run to
stop after the step in progress: the loop saves a checkpoint on every process and ends with `TrainingInterrupted`.
A second signal ends the process at once, by that signal, except within `DUPLICATE_WINDOW_S` of the first: launchers
(`accelerate launch`, `torchrun`) forward the signal they receive to the processes that already got it from the
terminal or the scheduler, and that copy must not count as the user insisting.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import torch
import torch.distributed as dist
from accelerate import Accelerator

from ..errors import DDPMError
from ..reporting import EVERY_PROCESS, get_logger

logger = get_logger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
DUPLICATE_WINDOW_S = 1.0


class TrainingInterrupted(DDPMError, RuntimeError):
    """The run stopped on a signal after saving a checkpoint; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopOnSignal:
    """Within the block, SIGTERM and SIGINT set a flag that `agreed()` turns into one decision for every process."""

    def __init__(
        self,
        accelerator: Accelerator,
        doing: str = "finishing this step and saving a checkpoint",
        local: bool = False,
    ) -> None:
        """`doing`: what a first signal makes the run do, as it is told; `local`: this process decides alone (work
        that only the main process does, such as the final grid), with no collective to set up."""
        self.received: int | None = None
        self.doing = doing
        self._first_at = 0.0
        self._previous: dict[int, object] = {}
        several = accelerator.num_processes > 1 and dist.is_available() and dist.is_initialized()
        self._several = several and not local
        self._group = None
        if self._several and dist.get_backend() != "gloo":
            # The flag is agreed on over a CPU group: no device sync, whatever the training backend.
            self._group = dist.new_group(backend="gloo")
        self._flag = torch.zeros(1, dtype=torch.int32)
        self._work = None

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._work is not None:
            self._work.wait()  # every process started this reduction; finish it before the group is used again
            self._work = None
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.received is None:
            self.received, self._first_at = signum, now
            # Each process that got the signal says so: a job's processes are not always all signalled.
            logger.warning(
                f"{signal.Signals(signum).name}: {self.doing}; signal again to stop at once", extra=EVERY_PROCESS
            )
        elif now - self._first_at > DUPLICATE_WINDOW_S:
            for sig in SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(signum)

    def agreed(self) -> int | None:
        """The signal to stop for, the same on every process, asked at the end of each step.

        One process decides alone. Several take the maximum of their flags with an asynchronous reduction started
        at the end of the previous step and read here, so no process waits on the others within a step; they stop
        together, at most one step after the first signal arrived.
        """
        if not self._several:
            return self.received
        decided = None
        if self._work is not None:
            self._work.wait()
            decided = int(self._flag.item()) or None
        self._flag.fill_(self.received or 0)
        self._work = dist.all_reduce(self._flag, op=dist.ReduceOp.MAX, group=self._group, async_op=True)
        return decided


def launcher_flags(script: str, parent_cmdline: list[str] | None = None) -> list[str] | None:
    """The options `accelerate launch` was given before `script` (e.g. `--cpu --num_processes 1`), read from the
    launching process's command line (the parent's, on Linux); None when the run was not started by it."""
    if parent_cmdline is None:
        try:
            with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
                parent_cmdline = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            return None
    launch = next((i for i, a in enumerate(parent_cmdline) if a == "launch" and i > 0), None)
    if launch is None or not any("accelerate" in Path(a).name for a in parent_cmdline[:launch]):
        return None
    rest = parent_cmdline[launch + 1 :]
    at = next((i for i, a in enumerate(rest) if Path(a).name == Path(script).name), None)
    return rest[:at] if at is not None else None


def resume_command(argv: list[str] | None = None, parent_cmdline: list[str] | None = None) -> str:
    """The command line that continues this run: as it was started (`python SCRIPT`, or `accelerate launch` with its
    own flags), with `--resume_from_checkpoint latest`."""
    argv = list(sys.argv if argv is None else argv)
    if not argv or not argv[0].endswith(".py"):
        return "the same training command with --resume_from_checkpoint latest"
    kept, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg == "--resume_from_checkpoint":
            skip = True
        elif not arg.startswith("--resume_from_checkpoint="):
            kept.append(arg)
    flags = launcher_flags(argv[0], parent_cmdline)
    launcher = ["python"] if flags is None else ["accelerate", "launch", *flags]  # as it was started
    return shlex.join([*launcher, argv[0], *kept, "--resume_from_checkpoint", "latest"])
