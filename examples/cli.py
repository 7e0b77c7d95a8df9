"""What the example scripts share: their model and dataset arguments, loading the pipeline, saving image grids."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.checks import non_negative_int, positive_int  # noqa: F401 (the scripts' argparse types)
from ddpm_hf.data import ImageDataset, ImageMismatchError, load_image_dataset
from ddpm_hf.data import network_images as data_network_images
from ddpm_hf.grid import image_grid
from ddpm_hf.identity import folder_weights_sha256 as weights_sha256  # noqa: F401 (the scripts')
from ddpm_hf.pixels import to_pil, uint8_to_pil
from ddpm_hf.reporting import get_logger

if TYPE_CHECKING:
    import datasets

logger = get_logger("ddpm_hf.examples")
DEFAULT_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def add_device_argument(parser: argparse.ArgumentParser, default: str = DEFAULT_DEVICE) -> None:
    parser.add_argument("--device", default=default, help=f"where the networks run (default: {default})")


def add_model_arguments(
    parser: argparse.ArgumentParser,
    seed: int | None = 0,
    device: str = DEFAULT_DEVICE,
    group: argparse._MutuallyExclusiveGroup | None = None,
) -> None:
    """--model (required, unless it goes into `group`, one of its alternatives), --revision, --seed and --device;
    `seed=None` leaves --seed to the script's settings, which declare it themselves."""
    if group is None:
        parser.add_argument("--model", required=True, help="a saved pipeline folder or a Hub repo id")
    else:
        group.add_argument("--model", help="a saved pipeline folder or a Hub repo id")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    if seed is not None:
        parser.add_argument("--seed", type=int, default=seed)
    add_device_argument(parser, device)


def load_pipeline(args: argparse.Namespace) -> DDPMPaperPipeline:
    """The pipeline of --model at --revision, on --device."""
    return DDPMPaperPipeline.from_pretrained(args.model, revision=args.revision).to(args.device)


def add_output_arguments(parser: argparse.ArgumentParser, script: str, **files: str) -> None:
    """--output_dir (default outputs/SCRIPT, never the working directory itself), where the script writes `files`
    (flag → file name, e.g. output="samples.png"); each file's flag (--output ...) can still name its own path."""
    parser.add_argument(
        "--output_dir", default=str(Path("outputs") / script), help="the folder outputs go to (default: %(default)s)"
    )
    for flag, name in files.items():
        parser.add_argument(f"--{flag}", default=None, help=f"write this file here instead of OUTPUT_DIR/{name}")
    parser.set_defaults(output_files=files)


def output_path(args: argparse.Namespace, flag: str, create: bool = True) -> Path:
    """Where output `flag` goes: the path its own flag names, else OUTPUT_DIR/its file name; its folder exists
    unless `create=False` (a job that makes its folders itself, so that a refused run leaves none behind)."""
    path = Path(getattr(args, flag) or Path(args.output_dir) / args.output_files[flag])
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def add_data_arguments(parser: argparse.ArgumentParser, split: str = "test", convert: bool = True) -> None:
    """--dataset_name or --train_data_dir, then --split and --image_column: what `load_split` reads; and
    --convert_images, unless the script converts every image itself (`convert=False`)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset_name", help="a Hub dataset id, a local dataset path, or sklearn-digits")
    source.add_argument("--train_data_dir", help="a folder of images (datasets' imagefolder)")
    parser.add_argument("--split", default=split)
    parser.add_argument("--image_column", default=None, help="default: image or img, whichever exists")
    if convert:
        add_convert_argument(parser)


def add_convert_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--convert_images",
        action="store_true",
        help="resize, center-crop and convert the dataset's images to the network's size and channels, as training "
        "does (without it, images that differ from the network's are refused: a bound or an interpolation of "
        "converted images is not one of the dataset's)",
    )


def load_split(args: argparse.Namespace, cache_dir: str | None = None) -> tuple[datasets.Dataset, str]:
    """The dataset split that the `add_data_arguments` arguments name (undecoded), and its image column."""
    return load_image_dataset(args.dataset_name, args.train_data_dir, args.split, args.image_column, cache_dir)


def network_images(ds: datasets.Dataset, column: str, pipe: DDPMPaperPipeline, convert: bool) -> ImageDataset:
    """A dataset's images as uint8 [C, H, W] tensors at the network's resolution and channels
    (`ddpm_hf.data.network_images`): images unlike the network's are refused before any work unless --convert_images,
    and then the conversion is said."""
    try:
        images, note = data_network_images(ds, column, pipe.unet.config, convert)
    except ImageMismatchError as e:
        raise SystemExit(str(e)) from None
    if note:
        logger.info(note)
    return images


def add_bound_arguments(parser: argparse.ArgumentParser) -> None:
    """The bound's examples (bits/dim, rate–distortion): the first --num_images images, --batch_size pairs a pass."""
    parser.add_argument("--num_images", type=positive_int, default=1000, help="the first N images of the split")
    parser.add_argument("--batch_size", type=positive_int, default=256, help="(image, timestep) pairs per forward pass")


def load_images(args: argparse.Namespace, pipe: DDPMPaperPipeline, indices: list[int]) -> torch.Tensor:
    """The dataset's images at `indices` as uint8 [N, C, H, W], at the network's resolution and channels."""
    ds, column = load_split(args)
    bad = [i for i in indices if not 0 <= i < len(ds)]
    if bad:
        raise SystemExit(f"image index {bad[0]} is out of range: the {args.split} split has {len(ds)} images")
    images = network_images(ds, column, pipe, args.convert_images)
    try:
        return torch.stack([images[i] for i in indices])
    except ImageMismatchError as e:
        raise SystemExit(f"{e}: pass --convert_images to resize and convert images as training does") from None


def save_grid(
    images: torch.Tensor | list[Image.Image], path: str, cols: int | None = None, scale: int = 1, pad: int | None = None
) -> None:
    """Save images as one PNG, in rows of `cols` (default: as square as possible), each enlarged `scale` times.

    `images`: PIL images, or a tensor [N, C, H, W] of uint8 pixels or of floats on the network's [-1, 1] scale.
    `pad`: pixels between images, mid-gray (default: 1 when enlarged, else none).
    """
    if isinstance(images, torch.Tensor):
        images = uint8_to_pil(images) if images.dtype == torch.uint8 else to_pil(images)
    pad = (1 if scale > 1 else 0) if pad is None else pad
    image_grid(images, cols=cols, pad=pad, scale=scale).save(path)
