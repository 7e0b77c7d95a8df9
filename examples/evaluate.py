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

from cli import add_model_arguments

from ddpm_hf.evaluation import EvaluationError, StoreMismatchError, evaluate
from ddpm_hf.evaluation.report import EvaluationSettings
from ddpm_hf.evaluation.runner import GRID_FILE, REPORT_FILE
from ddpm_hf.settings import add_arguments, pick


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser, seed=None)  # --seed is one of the settings
    # Every setting's flag, default and help come from EvaluationSettings, as `evaluate`'s keywords do.
    add_arguments(parser.add_argument_group("evaluation settings"), EvaluationSettings)
    parser.add_argument(
        "--output_dir", default="outputs/evaluate", help="the folder outputs go to (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:  # every setting checked before any work, by the library's own checks
        args.settings = EvaluationSettings(**pick(vars(args), EvaluationSettings))
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
