"""The one way a job runs sharded and resumable over processes: `run_sharded`. `evaluate`, `evaluate_bound`, the Γ
estimate and reference statistics are its callers.

A job keeps its results per shard of image indices in `ShardStore`s inside its output folder, one store per part
(OUTPUT_DIR/samples, OUTPUT_DIR/nll, ...), and its live progress in OUTPUT_DIR/.progress. `run_sharded`

1. checks every store on every process (another run's results are refused before any work),
2. lets the main process create the stores and list the shards each part lacks (`plan`), which every process gets,
3. deals the missing shards to the processes (rank, rank + N, ...) and runs `work` on this process's share, with
   one progress bar on the main process counting every process's images,
4. turns a non-finite network output into an `EvaluationError` that says what was not written (the shards finished
   before it are kept, so the same call resumes after the cause is fixed),
5. meets the other processes, and returns the plan on the main process (None on the others), which then reads the
   results back from the stores.

    plan = run_sharded(procs, [store], lambda: {"nll": store.missing(n)}, work, OUTPUT_DIR, desc="bits/dim")
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from ..pipeline import NonFiniteSampleError
from .distributed import JobProgress, Processes
from .report import EvaluationError
from .store import Shard, ShardStore

PROGRESS_DIR = ".progress"

Plan = dict[str, list[Shard]]  # part name → the shards of that part still to make


def run_sharded(
    procs: Processes,
    stores: Sequence[ShardStore],
    plan: Callable[[], Plan],
    work: Callable[[Plan, JobProgress], None],
    output_dir: str | Path,
    *,
    desc: str,
    unwritten: str = "Nothing was written.",
) -> Plan | None:
    """Run `work(mine, progress)` on this process's share `mine` of the shards `plan()` lists as missing; `work`
    calls `progress.advance(n)` as it finishes n images. `unwritten` ends the message of a non-finite failure."""
    for store in stores:
        store.check()
    procs.barrier()  # every process has read the manifests before the main process writes one
    progress_dir = Path(output_dir) / PROGRESS_DIR
    planned = None
    if procs.is_main:
        for store in stores:
            store.create()
        JobProgress.reset(progress_dir)
        planned = plan()
    procs.barrier()
    planned = procs.share(planned)

    progress = JobProgress(progress_dir, procs, sum(count(shards) for shards in planned.values()), desc=desc)
    try:
        work({part: procs.mine(shards) for part, shards in planned.items()}, progress)
    except NonFiniteSampleError as e:
        raise EvaluationError(f"{e} {unwritten}") from None
    progress.finish()
    procs.barrier()
    if not procs.is_main:
        return None
    shutil.rmtree(progress_dir, ignore_errors=True)  # live counts: nothing to keep once every process is done
    return planned


def count(shards: list[Shard]) -> int:
    """The images of `shards`."""
    return sum(len(shard) for shard in shards)
