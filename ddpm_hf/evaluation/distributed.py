"""The processes of an evaluation (one, or N under `accelerate launch`) and its one progress bar.

Work is split by shard, never by image within a batch, so what a process computes does not depend on how many
processes there are. The progress bar lives on the main process and counts the images of every process: each
process writes its own count to a small file (atomically) as it goes, which the main process sums.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, parse_flag_from_env

from ..errors import SetupError
from ..publish import write_file
from ..reporting import progress_bar

_T = TypeVar("_T")


class Processes:
    """This process's place among the evaluation's processes (accelerate's `PartialState`), and their device.

    Under `accelerate launch --num_processes N` (GPUs, or CPU processes with `ACCELERATE_USE_CPU=true --multi_gpu`)
    there are N; under plain `python`, one. `device="cpu"` (or ACCELERATE_USE_CPU) joins the CPU processes over
    gloo; otherwise each process takes its own GPU.
    """

    def __init__(self, device: str | torch.device | None = None) -> None:
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        on_cpu = device is not None and torch.device(device).type == "cpu"
        # One process needs no gloo group, and leaves accelerate's shared state as the rest of a program expects it.
        self.state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or (on_cpu and launched > 1))
        if launched != self.state.num_processes:
            # Without this, each of the launched processes would believe itself alone and do the whole job.
            raise SetupError(
                f"{launched} processes were launched but accelerate joined {self.state.num_processes}: launch CPU "
                "processes with ACCELERATE_USE_CPU=true (or --device cpu), GPU processes with --multi_gpu"
            )
        if device is None or (self.state.num_processes > 1 and torch.device(device).type == self.state.device.type):
            self.device = self.state.device  # each process its own GPU (cuda:LOCAL_RANK), not all on cuda:0
        else:
            self.device = torch.device(device)

    @property
    def rank(self) -> int:
        return self.state.process_index

    @property
    def count(self) -> int:
        return self.state.num_processes

    @property
    def is_main(self) -> bool:
        return self.state.is_main_process

    def barrier(self) -> None:
        self.state.wait_for_everyone()

    def share(self, value: _T) -> _T:
        """The main process's `value`, on every process (a picklable object)."""
        if self.count == 1:
            return value
        box = [value]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def mine(self, items: list[_T]) -> list[_T]:
        """This process's share of a list that every process holds: items rank, rank + N, rank + 2N, ..."""
        return items[self.rank :: self.count]


class JobProgress:
    """One progress bar, on the main process, for the images of every process (done of all, rate, ETA).

    Every process calls `advance(n)` as it finishes images; `finish()` on the main process waits until all the
    processes' images are done (then the caller meets the others at a barrier).
    """

    POLL_SECONDS = 0.2

    def __init__(self, folder: str | Path, processes: Processes, total: int, desc: str = "evaluation") -> None:
        self.folder, self.processes, self.total = Path(folder), processes, total
        self.done = 0
        self.bar = progress_bar(total=total, desc=desc, unit="img", dynamic_ncols=True) if processes.is_main else None

    def _path(self, rank: int) -> Path:
        return self.folder / f"rank-{rank}.json"

    def _others(self) -> int:
        total = 0
        for rank in range(1, self.processes.count):
            try:
                total += json.loads(self._path(rank).read_text())["done"]
            except (FileNotFoundError, ValueError, KeyError):
                pass  # not started yet
        return total

    def _refresh(self) -> None:
        done = self.done + self._others()
        self.bar.update(done - self.bar.n)

    def advance(self, images: int) -> None:
        self.done += images
        if self.bar is not None:
            self._refresh()
        else:
            write_file(self._path(self.processes.rank), json.dumps({"done": self.done}).encode())

    def finish(self) -> None:
        if self.bar is None:
            return
        while self.done + self._others() < self.total:
            time.sleep(self.POLL_SECONDS)
            self._refresh()
        self._refresh()
        self.bar.close()

    @staticmethod
    def reset(folder: str | Path) -> None:
        """Clear the counts of a previous run (main process, before the others start)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for path in folder.glob("rank-*.json"):
            path.unlink()
