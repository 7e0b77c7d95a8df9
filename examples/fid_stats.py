"""Compute and cache the reference statistics (feature mean and covariance) of a dataset, on one process or many,
resumable.

python examples/fid_stats.py --dataset_name ../shared/data/cifar10 --split train --output cifar10_train.npz
accelerate launch --multi_gpu --num_processes 8 examples/fid_stats.py --dataset_name ... --output cifar10_train.npz
python examples/fid_stats.py --dataset_name ../shared/data/cifar10 --save_features --output cifar10_train.npz
python examples/fid_stats.py --dataset_name ../shared/data/cifar10 --extractor dinov2 --output cifar10_dinov2.npz
python examples/fid_stats.py --train_data_dir my_images/ --resolution 64 --output mine.npz

The .npz (mu, sigma as pytorch-fid writes them, plus the image count, the feature extractor and its weights' id,
the dataset and the split) is what `examples/evaluate.py --reference` (Inception) or `--reference_dinov2` (DINOv2)
and `python -m ddpm_hf.evaluation.fid` read: `ddpm_hf.evaluation.reference_statistics` computes it (see there).
`--save_features` also writes the features themselves (OUTPUT without .npz + `.features.npy`), which
`evaluate.py --metrics precision_recall` compares the samples with. Each image's features are kept shard by shard in
OUTPUT_DIR/EXTRACTOR/ (default OUTPUT_DIR: outputs/fid_stats; OUTPUT: OUTPUT_DIR/statistics.npz): the same command
after a crash extracts only the missing images, and another dataset or feature network there is refused.
"""

import argparse
import time

from cli import (
    add_data_arguments,
    add_device_argument,
    add_output_arguments,
    output_path,
)

from ddpm_hf.evaluation import FIDStatistics
from ddpm_hf.evaluation.dinov2 import EncoderWeightsError
from ddpm_hf.evaluation.reference import ReferenceSettings, features_path, push_reference, reference_statistics
from ddpm_hf.hub import HubUploadError, check_repo_id
from ddpm_hf.settings import add_arguments, pick


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, split="train", convert=False)
    add_arguments(parser, ReferenceSettings)
    add_device_argument(parser)
    parser.add_argument("--cache_dir", default=None, help="the datasets cache (default: datasets')")
    add_output_arguments(parser, "fid_stats", output="statistics.npz")
    parser.add_argument(
        "--push_to_hub", default=None, metavar="REPO_ID", help="also upload it to this Hub dataset repo, with a card"
    )
    args = parser.parse_args(argv)
    try:  # every setting checked before any work, by the library's own checks
        args.settings = ReferenceSettings(**pick(vars(args), ReferenceSettings))
        if args.push_to_hub:
            check_repo_id(args.push_to_hub, "--push_to_hub")  # before the features are computed
    except ValueError as e:
        parser.error(str(e))
    return args


def main(argv: list[str] | None = None) -> FIDStatistics | None:
    args = parse_args(argv)
    start = time.perf_counter()
    output = output_path(args, "output", create=False)
    try:
        stats = reference_statistics(
            args.dataset_name,
            data_dir=args.train_data_dir,
            split=args.split,
            image_column=args.image_column,
            output_dir=args.output_dir,
            output=output,
            device=args.device,
            cache_dir=args.cache_dir,
            settings=args.settings,
        )
    except EncoderWeightsError as error:
        raise SystemExit(str(error)) from error
    if stats is None:  # not the main process
        return None
    features = f" (features: {features_path(output)})" if args.save_features else ""
    print(
        f"wrote {args.extractor} statistics of {stats.num_images} images to {output}{features} in "
        f"{time.perf_counter() - start:.1f} s"
    )
    if args.push_to_hub:
        try:
            address = push_reference(output, args.push_to_hub)
        except HubUploadError as e:
            raise SystemExit(f"push failed: {e}") from None
        print(f"pushed to {address} (pass it as evaluate.py --reference)")
    return stats


if __name__ == "__main__":
    main()
