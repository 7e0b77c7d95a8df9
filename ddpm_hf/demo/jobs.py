"""The demo's jobs: a pipeline call run in a worker thread and followed from the page, and whose job is whose.

A job belongs to the browser session that started it (Gradio's session hash): Stop ends and reports only that
visitor's job, and no visitor sees another's progress.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..pipeline import DDPMPaperPipeline

LIVE_EVERY_S = 0.25  # how often the page gets the running job's latest step


class Job:
    """A pipeline call run in a worker thread and followed through the pipeline's step callback
    (`callback_on_step_end`): the callback records the latest step and ends the call once the job is cancelled
    (diffusers' `pipe._interrupt`)."""

    def __init__(self, total: int) -> None:
        self.total = total
        # (steps done, t, the step's tensors), replaced whole by the worker so the page never reads a mix of steps
        self.latest: tuple[int, Any, dict[str, torch.Tensor]] | None = None
        self.cancelled = threading.Event()

    @property
    def done(self) -> int:
        return 0 if self.latest is None else self.latest[0]

    def status(self) -> str:
        """The running job's status line: how far it is."""
        return "starting…" if self.latest is None else f"step {self.done} of {self.total}…"

    def callback(self, pipe: DDPMPaperPipeline, i: int, t: Any, tensors: dict[str, torch.Tensor]) -> dict:
        self.latest = (i + 1, t, tensors)
        if self.cancelled.is_set():
            pipe._interrupt = True
        return {}

    def follow(
        self,
        call: Callable[[], Any],
        frame: Callable[[Job], tuple],
        progress: Callable[[Job], None] | None = None,
    ) -> Iterator[tuple]:
        """Run `call()` in a worker, yielding `frame(self)` every `LIVE_EVERY_S` while it runs (a generator, so that
        the page can cancel it: closing it stops the worker after its current step); `progress(self)` is told of
        each step. Returns `call()`'s result, or raises its error."""
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                result["value"] = call()
            except BaseException as e:
                result["error"] = e

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(LIVE_EVERY_S)
                if progress is not None and self.latest is not None:
                    progress(self)
                if worker.is_alive():
                    yield frame(self)
        finally:
            self.cancelled.set()  # cancelled (the generator closed): the call ends after its current step
        if "error" in result:
            raise result["error"]
        return result["value"]


class VisitorJobs:
    """Each visitor's latest job in each tab, by session: what that visitor's Stop reports. The oldest sessions are
    forgotten past `keep`, so a crowd cannot grow the table without bound."""

    def __init__(self, keep: int = 1024) -> None:
        self.keep = keep
        self._jobs: OrderedDict[tuple[str, str], Job] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, session: str, tab: str, total: int) -> Job:
        """A new job of `session` in `tab`, replacing its previous one there."""
        job = Job(total)
        with self._lock:
            self._jobs[(session, tab)] = job
            self._jobs.move_to_end((session, tab))
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
        return job

    def get(self, session: str, tab: str) -> Job | None:
        with self._lock:
            return self._jobs.get((session, tab))

    def forget(self, session: str) -> None:
        """Drop a session's jobs (its page was closed)."""
        with self._lock:
            for key in [key for key in self._jobs if key[0] == session]:
                del self._jobs[key]

    def __len__(self) -> int:
        return len(self._jobs)
