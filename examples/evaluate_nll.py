"""Evaluate the variational bound in bits/dim on test images (Table 1's NLL column), on one process or many, resumable.

python examples/evaluate_nll.py --model runs/cifar10 --dataset_name cifar10 --split test --num_images 10000
accelerate launch --multi_gpu --num_processes 8 examples/evaluate_nll.py --model runs/cifar10 --dataset_name ...
python examples/evaluate_nll.py --model runs/digits --dataset_name sklearn-digits --split test --num_images 64
python examples/evaluate_nll.py --model runs/digits-analytic --dataset_name sklearn-digits --num_inference_steps 10

Prints the mean bound with its standard error over images and writes a JSON with the per-term means. Image i's
bound draws its noise from a generator seeded `seed + i`, so each image's value, and the mean ± s.e., are the same
for any number of processes. The variance is the pipeline's scheduler's (σ² = β, β̃, or Analytic-DPM's
from examples/analytic_variance.py); --num_inference_steps bounds the respaced chain of that many steps.
Per-image results are written shard by shard to OUTPUT_DIR/nll/ (OUTPUT: OUTPUT_DIR/nll.json): the same command
after a crash bounds only the missing images; a changed model, scheduler, seed, data, clipping, step count or
batch size (the noise is drawn batch_size pairs at a time) is refused.
"""

from __future__ import annotations

import argparse

from cli import (
    add_data_arguments,
    add_model_arguments,
    add_output_arguments,
    output_path,
)

from ddpm_hf.evaluation import EvaluationError, StoreMismatchError, evaluate_bound
from ddpm_hf.evaluation.runner import BoundEvaluationSettings
from ddpm_hf.settings import add_arguments, pick


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser, seed=None)
    add_data_arguments(parser)
    add_arguments(parser, BoundEvaluationSettings, skip=("clip_denoised",))
    parser.add_argument("--no_clip", action="store_true", help="do not clip x̂_0 (the reference clips)")
    add_output_arguments(parser, "evaluate_nll", output="nll.json")
    args = parser.parse_args(argv)
    try:  # every setting checked before any work, by the library's own checks
        settings = BoundEvaluationSettings(**pick(vars(args), BoundEvaluationSettings), clip_denoised=not args.no_clip)
    except EvaluationError as e:
        raise SystemExit(str(e)) from None

    output = output_path(args, "output", create=False)
    try:
        report = evaluate_bound(
            args.model,
            revision=args.revision,
            device=args.device,
            dataset=args.dataset_name,
            data_dir=args.train_data_dir,
            split=args.split,
            image_column=args.image_column,
            convert_images=args.convert_images,
            output_dir=args.output_dir,
            output=output,
            settings=settings,
        )
    except (EvaluationError, StoreMismatchError) as e:
        raise SystemExit(str(e)) from None
    if report is None:  # not the main process
        return None
    stderr = "n/a (one image)" if report["bpd_stderr"] is None else f"{report['bpd_stderr']:.4f}"
    print(
        f"{report['bpd']:.4f} ± {stderr} bits/dim over {report['num_images']} images "
        f"({report['seconds']:.1f} s, {report['images_made']} bounded now); wrote {output}"
    )
    return report


if __name__ == "__main__":
    main()
