"""Command-line plumbing shared by the analysis examples: model and dataset arguments, loading, saving grids."""

from __future__ import annotations

import argparse

import torch

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.analysis import to_pil
from ddpm_hf.data import ImageDataset, load_image_dataset
from ddpm_hf.grid import image_grid


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a saved pipeline folder or a Hub repo id")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def add_data_arguments(parser: argparse.ArgumentParser, split: str = "test") -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset_name", help="a Hub dataset id, a local dataset path, or sklearn-digits")
    source.add_argument("--train_data_dir", help="a folder of images")
    parser.add_argument("--split", default=split)
    parser.add_argument("--image_column", default=None, help="default: image or img, whichever exists")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_bound_arguments(parser: argparse.ArgumentParser) -> None:
    """The bound's examples (bits/dim, rate–distortion): the first --num_images images, --batch_size pairs a pass."""
    parser.add_argument("--num_images", type=positive_int, default=1000, help="the first N images of the split")
    parser.add_argument("--batch_size", type=int, default=256, help="(image, timestep) pairs per forward pass")


def load_pipeline(args: argparse.Namespace) -> DDPMPaperPipeline:
    pipe = DDPMPaperPipeline.from_pretrained(args.model, revision=args.revision)
    return pipe.to(args.device)


def load_images(args: argparse.Namespace, pipe: DDPMPaperPipeline, indices: list[int]) -> torch.Tensor:
    """The dataset's images at `indices` as uint8 [N, C, H, W], at the network's resolution and channels."""
    ds, column = load_image_dataset(args.dataset_name, args.train_data_dir, args.split, args.image_column)
    bad = [i for i in indices if not 0 <= i < len(ds)]
    if bad:
        raise SystemExit(f"image index {bad[0]} is out of range: the {args.split} split has {len(ds)} images")
    images = ImageDataset(ds, column, pipe.unet.config.sample_size, pipe.unet.config.in_channels)
    return torch.stack([images[i] for i in indices])


def save_grid(rows: list[torch.Tensor], path: str, scale: int = 1) -> None:
    """Save images [-1, 1] as one PNG, one row per tensor [N, C, H, W]; scale > 1 enlarges (nearest) and spaces them."""
    pictures = [p for row in rows for p in to_pil(row)]
    image_grid(pictures, cols=len(pictures) // len(rows), pad=1 if scale > 1 else 0, scale=scale).save(path)
