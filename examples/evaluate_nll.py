"""Evaluate the variational bound in bits/dim on test images (Table 1's NLL column), on one process or many, resumable.

python examples/evaluate_nll.py --model runs/cifar10 --dataset_name cifar10 --split test --num_images 10000
accelerate launch --multi_gpu --num_processes 8 examples/evaluate_nll.py --model runs/cifar10 --dataset_name ...
python examples/evaluate_nll.py --model runs/digits --dataset_name sklearn-digits --split train --num_images 64

Prints the mean bound with its standard error over images and writes a JSON with the per-term means. Image i's
bound draws its noise from a generator seeded `seed + i`, so each image's value, and the mean ± s.e., are the same
for any number of processes. Per-image results are written shard by shard to --shard_dir (default: OUTPUT without
.json + `_shards/`): the same command after a crash bounds only the missing images; a changed model, seed, data,
clipping or batch size (the noise is drawn batch_size pairs at a time) is refused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cli import (
    add_bound_arguments,
    add_data_arguments,
    add_model_arguments,
    add_output_arguments,
    load_split,
    network_images,
    open_job,
    output_path,
    positive_int,
    weights_sha256,
)

from ddpm_hf.evaluation.distributed import JobProgress
from ddpm_hf.evaluation.jobs import BoundSettings, Timings, bound_shards, bound_summary
from ddpm_hf.evaluation.store import ShardStore, StoreMismatchError
from ddpm_hf.pipeline import NonFiniteSampleError


def shard_dir(output: str) -> Path:
    path = Path(output)
    return path.with_name((path.name[:-5] if path.name.endswith(".json") else path.name) + "_shards")


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    add_data_arguments(parser)
    add_bound_arguments(parser)
    parser.add_argument("--no_clip", action="store_true", help="do not clip x̂_0 (the reference clips)")
    parser.add_argument("--shard_size", type=positive_int, default=None, help="images per shard (default: 64)")
    parser.add_argument("--shard_dir", default=None, help="default: OUTPUT without .json, plus _shards")
    add_output_arguments(parser, "evaluate_nll", output="nll.json")
    args = parser.parse_args(argv)

    procs, pipe, folder, _ = open_job(args)
    ds, column = load_split(args)
    if args.num_images > len(ds):
        raise SystemExit(f"--num_images {args.num_images} is out of range: the {args.split} split has {len(ds)} images")
    images = network_images(ds, column, pipe, args.convert_images)
    settings = BoundSettings(args.seed, args.batch_size, clip_denoised=not args.no_clip)
    identity = {
        "kind": "nll",
        "model_weights_sha256": weights_sha256(folder),
        "seed": args.seed,
        "dataset": args.dataset_name or args.train_data_dir,
        "split": args.split,
        "clip_denoised": settings.clip_denoised,
        "batch_size": args.batch_size,  # the noise is drawn in chunks of this many (image, t) pairs
        "precision": settings.precision,
    }
    output = output_path(args, "output")
    store = ShardStore(args.shard_dir or shard_dir(output), identity, args.shard_size, default_shard_size=64)
    try:
        store.check()
    except StoreMismatchError as error:
        raise SystemExit(str(error)) from error
    procs.barrier()
    progress_dir, missing = store.root / ".progress", None
    if procs.is_main:
        store.create()
        JobProgress.reset(progress_dir)
        missing = store.missing(args.num_images)
    procs.barrier()
    missing = procs.share(missing)

    start = time.perf_counter()
    progress = JobProgress(progress_dir, procs, sum(len(shard) for shard in missing), desc="bits/dim")
    try:
        bound_shards(pipe, store, procs.mine(missing), images, settings, progress, Timings())
    except NonFiniteSampleError as e:
        raise SystemExit(f"{e} Nothing was written.") from None
    progress.finish()
    procs.barrier()
    if not procs.is_main:
        return None
    seconds = time.perf_counter() - start

    summary = bound_summary(store, args.num_images)
    report = {
        "model": args.model,
        "dataset": identity["dataset"],
        "split": args.split,
        "clip_denoised": settings.clip_denoised,
        "seed": args.seed,
        **summary,
        "num_processes": procs.count,
        "images_made": sum(len(shard) for shard in missing),  # by this run; the rest were found in the shards
        "seconds": seconds,
    }
    with open(output, "w") as f:
        json.dump(report, f, indent=1)
    stderr = "n/a (one image)" if report["bpd_stderr"] is None else f"{report['bpd_stderr']:.4f}"
    print(
        f"{report['bpd']:.4f} ± {stderr} bits/dim over {report['num_images']} images "
        f"({seconds:.1f} s, {report['images_made']} bounded now); wrote {output}"
    )
    return report


if __name__ == "__main__":
    main()
