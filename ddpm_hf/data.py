"""Image datasets for training and evaluation: `datasets` sources decoded and scaled to [-1, 1] as the paper does."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from .errors import DDPMError, InputError, MissingFileError
from .pixels import scale_to_model

if TYPE_CHECKING:  # imported where used: `import ddpm_hf` (and sampling) needs no `datasets`
    import datasets

DIGITS = "sklearn-digits"  # scikit-learn's bundled 8×8 digits: data that needs no download
# Its splits: the first 1,500 digits to train on, the last 297 held out (each class 27 to 33 times).
DIGITS_SPLITS = {"train": slice(0, 1500), "test": slice(1500, None)}
# Splits whose images changed between versions, for runs saved before a run recorded its data's fingerprint:
# (dataset, split) -> (the version that changed it, its image count before, the split holding those images now).
REDEFINED_SPLITS = {(DIGITS, "train"): ("0.3.0", 1797, "train+test"), (DIGITS, "test"): ("0.3.0", 1797, "train+test")}
IMAGE_COLUMNS = ("image", "img")


class BadImageError(DDPMError, ValueError):
    """An image that cannot be decoded; the message names its file (or its row when it has none)."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where


def digits_dataset(split: str = "train") -> datasets.Dataset:
    """A split of scikit-learn's 1,797 8×8 digits (values 0..16) as 8-bit grayscale PNGs with their labels:
    "train" (the first 1,500), "test" (the last 297, held out) or "train+test"."""
    import datasets
    from sklearn.datasets import load_digits

    names = split.split("+")  # datasets' syntax: "train+test" is all 1,797, in their order (before 0.3, "train")
    if not all(name in DIGITS_SPLITS for name in names):
        raise InputError(f"{DIGITS} has the splits {sorted(DIGITS_SPLITS)} (and 'train+test'), not {split!r}")
    digits = load_digits()
    index = np.concatenate([np.arange(len(digits.target))[DIGITS_SPLITS[name]] for name in names])
    pixels = np.round(digits.images[index] * (255.0 / 16.0)).astype(np.uint8)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    return datasets.Dataset.from_dict(
        {"image": [Image.fromarray(p, mode="L") for p in pixels], "label": digits.target[index].tolist()},
        features=features,
    )


def load_image_dataset(
    dataset_name: str | None = None,
    train_data_dir: str | None = None,
    split: str = "train",
    image_column: str | None = None,
    cache_dir: str | None = None,
    config_name: str | None = None,
    token: bool | str | None = None,
) -> tuple[datasets.Dataset, str]:
    """Load images lazily from a Hub id or local path (`load_dataset`: parquet, imagefolder, arrow...), a
    `save_to_disk` folder, a folder of images (`train_data_dir`), or the bundled `sklearn-digits`. `token` is the Hub
    token for a Hub dataset (None: the stored login; False: none).

    Returns the dataset with its image column left undecoded (decoding happens per item in `decode_image`, so a
    corrupt file is reported by name) and the name of that column.
    """
    import datasets

    if (dataset_name is None) == (train_data_dir is None):
        raise InputError("pass exactly one of dataset_name and train_data_dir")
    if dataset_name == DIGITS:
        ds = digits_dataset(split)
    elif dataset_name is not None and any(
        os.path.isfile(os.path.join(dataset_name, f)) for f in ("state.json", "dataset_dict.json")
    ):
        ds = datasets.load_from_disk(dataset_name)  # a folder written by `Dataset.save_to_disk`
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    elif train_data_dir is not None:
        if not os.path.isdir(train_data_dir):
            raise MissingFileError(f"train_data_dir {train_data_dir}: no such folder")
        try:
            ds = datasets.load_dataset("imagefolder", data_dir=train_data_dir, split=split, cache_dir=cache_dir)
        except (ValueError, FileNotFoundError) as e:  # datasets: 'Instruction "train" corresponds to no data!'
            raise InputError(
                f"train_data_dir {train_data_dir} holds no images that datasets' imagefolder reads (for split "
                f"{split!r}: images directly inside it, or in subfolders; .png, .jpg, ...): {e}"
            ) from e
    else:
        ds = datasets.load_dataset(dataset_name, config_name, split=split, cache_dir=cache_dir, token=token)
    if image_column is None:
        found = [c for c in IMAGE_COLUMNS if c in ds.column_names]
        if not found:
            raise InputError(f"no image column among {ds.column_names}; pass image_column")
        image_column = found[0]
    elif image_column not in ds.column_names:
        raise InputError(f"image_column {image_column!r} not in {ds.column_names}")
    if not isinstance(ds.features[image_column], datasets.Image):
        raise InputError(f"column {image_column!r} holds {ds.features[image_column]}, not images")
    return ds.cast_column(image_column, datasets.Image(decode=False)), image_column


def decode_image(item: dict[str, Any], index: int) -> Image.Image:
    """Decode one undecoded `datasets.Image` entry ({"bytes", "path"}), naming the file if it is unreadable."""
    where = item.get("path") or f"row {index}"
    try:
        source = io.BytesIO(item["bytes"]) if item.get("bytes") is not None else item["path"]
        image = Image.open(source)
        image.load()
        return image
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError...) for bad files
        raise BadImageError(f"cannot read image {where}: {e}", where) from e


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit images (PNG's 16-bit grayscale opens as `I;16` or `I`) rescaled to 8-bit `L`; Pillow's
    own conversion would clip every value above 255 to white. Other modes pass unchanged."""
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0  # floats in [0, 1] or already 0..255
    else:
        scale = 255.0 / 65535.0 if image.mode.startswith("I;16") or (values.size and values.max() > 255) else 1.0
    return Image.fromarray(np.clip(np.round(values * scale), 0, 255).astype(np.uint8), mode="L")


def to_tensor(image: Image.Image, resolution: int, channels: int) -> torch.Tensor:
    """[C, H, W] uint8: converted to `channels` (1: L, 3: RGB), shorter side resized to `resolution`, center-cropped."""
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, got {channels}")
    image = to_8bit(image).convert("L" if channels == 1 else "RGB")
    if image.size != (resolution, resolution):
        scale = resolution / min(image.size)
        size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
        left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.uint8).reshape(resolution, resolution, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def image_channels(image: Image.Image) -> int:
    """The colour channels an image holds as the network sees them: 1 for grayscale modes, 3 for any colour one."""
    return 1 if image.mode in ("1", "L", "LA", "I", "F") or image.mode.startswith("I;16") else 3


def describe(width: int, height: int, channels: int) -> str:
    """An image format in words, e.g. '32×32 colour'."""
    return f"{width}×{height} {'grayscale' if channels == 1 else 'colour'}"


def conversion(image: Image.Image, resolution: int, channels: int) -> str | None:
    """What `to_tensor` would change in `image` beyond reading it (its size, its channels), in words; None if
    nothing."""
    if image.size == (resolution, resolution) and image_channels(image) == channels:
        return None
    return f"{describe(*image.size, image_channels(image))} to {describe(resolution, resolution, channels)}"


class ImageMismatchError(DDPMError, ValueError):
    """An image whose size or channels differ from the network's, where converting it was not asked for."""


class BadImage(NamedTuple):
    """What `ImageDataset` yields for an unreadable image it skips: which file (or row), and why."""

    where: str
    reason: str


class ImageDataset(torch.utils.data.Dataset):
    """uint8 [C, H, W] tensors from an undecoded `datasets` image column; a `BadImage` for an unreadable one when
    skipping.

    `convert=True` (training's way) resizes, crops and converts every image to `resolution` and `channels`;
    `convert=False` (measuring a network on a dataset) raises `ImageMismatchError` for an image that would need it.
    """

    def __init__(
        self,
        ds: datasets.Dataset,
        image_column: str,
        resolution: int,
        channels: int,
        skip_bad_images: bool = False,
        convert: bool = True,
    ) -> None:
        self.ds, self.column = ds, image_column
        self.resolution, self.channels, self.skip_bad_images = resolution, channels, skip_bad_images
        self.convert = convert

    def __len__(self) -> int:
        return len(self.ds)

    def decode(self, index: int) -> Image.Image:
        return decode_image(self.ds[index][self.column], index)

    def conversion(self, index: int = 0) -> str | None:
        """What reading image `index` converts (see `conversion`), or None."""
        return conversion(self.decode(index), self.resolution, self.channels)

    def __getitem__(self, index: int) -> torch.Tensor | BadImage:
        try:
            image = self.decode(index)
        except BadImageError as e:
            if self.skip_bad_images:
                return BadImage(e.where, str(e))
            raise
        if not self.convert and conversion(image, self.resolution, self.channels):
            where = self.ds[index][self.column].get("path") or f"row {index}"
            network = describe(self.resolution, self.resolution, self.channels)
            raise ImageMismatchError(
                f"image {where} is {describe(*image.size, image_channels(image))}, the network takes {network}"
            )
        return to_tensor(image, self.resolution, self.channels)


def network_images(
    ds: datasets.Dataset, column: str, unet_config: Any, convert: bool = False
) -> tuple[ImageDataset, str | None]:
    """A dataset's images as uint8 [C, H, W] tensors at the network's resolution and channels, and a note of the
    conversion when `convert` asks for one. Images of another size or channels are refused (`ImageMismatchError`,
    from the first image, before any work; later ones when read) unless `convert`: a measurement on converted
    images is not one of the dataset's."""
    size, channels = unet_config.sample_size, unet_config.in_channels
    images = ImageDataset(ds, column, size, channels, convert=convert)
    first = images.decode(0) if len(images) else None
    if first is None or conversion(first, size, channels) is None:
        return images, None
    have, takes = describe(*first.size, image_channels(first)), describe(size, size, channels)
    if not convert:
        raise ImageMismatchError(
            f"the dataset's images are {have}, the network takes {takes}: measure it on data like its training "
            "data, or ask for the images to be resized and converted as training does (--convert_images)"
        )
    return images, f"note: converting the dataset's {have} images to {takes} (--convert_images)"


def images_to_model(images: Any, resolution: int, channels: int) -> torch.Tensor:
    """A batch [B, C, H, W] on the [-1, 1] scale from PIL images, uint8 arrays or float tensors already in [-1, 1].

    Accepts a PIL image or a list of them; a uint8 numpy array HWC / NHWC (or a list of HWC); a uint8 tensor CHW /
    NCHW (as `ImageDataset` yields); a float tensor CHW / NCHW in [-1, 1]. PIL images are converted, resized and
    cropped as for training; arrays and tensors must already be `channels` × `resolution` × `resolution`.
    """
    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor)):
        images = [images] if isinstance(images, Image.Image) or images.ndim == 3 else list(images)
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise InputError(f"expected images (PIL, uint8 arrays or tensors), got {type(images).__name__}")
    batch = torch.stack([_one_image_to_model(image, resolution, channels) for image in images])
    if batch.shape[1:] != (channels, resolution, resolution):
        raise InputError(f"images must be {channels}×{resolution}×{resolution} (C×H×W), got {tuple(batch.shape[1:])}")
    return batch


def _one_image_to_model(image: Any, resolution: int, channels: int) -> torch.Tensor:
    if isinstance(image, Image.Image):
        return scale_to_model(to_tensor(image, resolution, channels))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3:
            raise InputError(f"numpy images must be uint8 HWC, got {image.dtype} of shape {image.shape}")
        return scale_to_model(torch.from_numpy(image.copy()).permute(2, 0, 1))
    if isinstance(image, torch.Tensor) and image.ndim == 3:
        if image.dtype == torch.uint8:
            return scale_to_model(image)
        if image.is_floating_point():
            low, high = float(image.min()), float(image.max())
            if low < -1.0 or high > 1.0:
                raise InputError(f"float images must lie in [-1, 1], got values in [{low}, {high}]")
            return image.float()
    raise InputError(f"cannot use {type(image).__name__} {getattr(image, 'shape', '')} as an image")
