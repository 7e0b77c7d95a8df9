"""Peak memory of the FID statistics of N samples: float64 sums read shard by shard from the sample store (what
examples/evaluate.py does) against holding every feature in memory and calling np.cov (what it did before).

    python benchmarks/eval_memory.py                       # 5,000 and 50,000 samples of 2048-d features
    python benchmarks/eval_memory.py --counts 2000 20000 --dim 2048 --shard_size 256

Random float32 features stand in for Inception's (the memory does not depend on their values) and are written once
per count into a `SampleStore`-layout folder. Each measurement then runs in a fresh process, so that none inherits
another's allocations; the figure is the process's peak resident set above its size before the computation.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ddpm_hf.evaluation.frechet import FIDStatistics
from ddpm_hf.evaluation.jobs import feature_sums
from ddpm_hf.evaluation.store import ShardStore

NAME = "inception-benchmark"
SIDES = {"sums": "float64 sums, shard by shard (evaluate.py)", "all": "every feature in memory, np.cov (before)"}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def write_store(folder: Path, count: int, dim: int, shard_size: int) -> None:
    """A store of `count` random feature rows, shard by shard (never all in memory)."""
    store = ShardStore(folder, {"kind": "benchmark", "count": count, "dim": dim}, shard_size)
    store.create()
    rng = np.random.default_rng(0)
    for shard in store.missing(count):
        store.write(shard, {NAME: rng.random((len(shard), dim), dtype=np.float32)})


def measure(folder: Path, count: int, side: str) -> dict[str, float]:
    """Peak bytes above the starting point while computing the statistics one way, and the seconds it took."""
    store = ShardStore(folder, {})
    start_rss, start = rss_bytes(), time.perf_counter()
    if side == "sums":
        stats = FIDStatistics.from_sums(feature_sums(store, NAME, count))
    else:
        stats = FIDStatistics.from_features(np.concatenate([np.array(b) for b in store.blocks(NAME, count)]))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {"peak_bytes": peak - start_rss, "seconds": seconds, "trace": float(np.trace(stats.sigma))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--shard_size", type=int, default=256)
    parser.add_argument("--side", choices=list(SIDES), help=argparse.SUPPRESS)  # a child process's measurement
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(measure(Path(args.folder), args.counts[0], args.side)))
        return

    print(f"features {args.dim}-d float32, shards of {args.shard_size}; peak memory above the start, per side")
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.counts:
            folder = Path(tmp) / f"n{count}"
            write_store(folder, count, args.dim, args.shard_size)
            results = {}
            for side in SIDES:
                child = [sys.executable, __file__, "--side", side, "--folder", str(folder), "--counts", str(count)]
                out = subprocess.run(child, capture_output=True, text=True, check=True).stdout
                results[side] = json.loads(out.strip().splitlines()[-1])
            assert abs(results["sums"]["trace"] / results["all"]["trace"] - 1) < 1e-9  # the same statistics
            for side, label in SIDES.items():
                r = results[side]
                print(f"N = {count:>7,}  {label:<45} {r['peak_bytes'] / 2**20:8.1f} MiB  {r['seconds']:6.1f} s")


if __name__ == "__main__":
    main()
