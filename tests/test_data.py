"""ddpm_hf.data: datasets sources (parquet, imagefolder, arrow, bundled digits), conversion and bad files."""

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_hf.data import (
    DIGITS,
    BadImage,
    BadImageError,
    ImageDataset,
    ImageMismatchError,
    load_image_dataset,
    scale_to_model,
    to_tensor,
)
from tiny import write_image_folder


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "imgs" / "cls").mkdir(parents=True)
    for i, mode in enumerate(("RGB", "RGBA", "L")):
        shape = (40, 30, len(mode)) if mode != "L" else (40, 30)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(tmp_path / "imgs" / "cls" / f"{i}.png")
    return tmp_path / "imgs"


def test_imagefolder_converts_modes_and_sizes(image_folder):
    ds, column = load_image_dataset(train_data_dir=str(image_folder))
    assert column == "image" and len(ds) == 3
    data = ImageDataset(ds, column, resolution=16, channels=3)
    for i in range(3):
        x = data[i]
        assert x.shape == (3, 16, 16) and x.dtype == torch.uint8
    assert ImageDataset(ds, column, resolution=8, channels=1)[0].shape == (1, 8, 8)


def load_one(tmp_path, image: Image.Image, channels: int) -> np.ndarray:
    """`image` saved as a PNG in a folder and read back as training data at its own size: [H, W, C] uint8."""
    folder = tmp_path / f"{image.mode.replace(';', '_')}-{channels}" / "cls"
    folder.mkdir(parents=True)
    image.save(folder / "image.png")
    ds, column = load_image_dataset(train_data_dir=str(folder.parent))
    x = ImageDataset(ds, column, resolution=image.width, channels=channels)[0]
    assert x.dtype == torch.uint8 and x.shape == (channels, image.height, image.width)
    return x.permute(1, 2, 0).numpy()


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma, L = 0.299 R + 0.587 G + 0.114 B: the grey of an RGB pixel (as PIL's convert("L"))."""
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_modes_convert_to_the_networks_channels(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (16, 16), dtype=np.uint8)  # transparency is dropped, not composited
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    assert np.array_equal(load_one(tmp_path, rgba, 3), rgb)
    assert np.abs(load_one(tmp_path, rgba, 1)[..., 0] - luma(rgb)).max() <= 0.5 + 1e-9

    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    index = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    indexed = Image.fromarray(index, "P")
    indexed.putpalette(palette.flatten().tolist())
    assert np.array_equal(load_one(tmp_path, indexed, 3), palette[index])  # each index looked up in the palette
    assert np.abs(load_one(tmp_path, indexed, 1)[..., 0] - luma(palette[index])).max() <= 0.5 + 1e-9

    gray = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    assert np.array_equal(load_one(tmp_path, Image.fromarray(gray, "L"), 3), np.dstack([gray] * 3))
    assert np.abs(load_one(tmp_path, Image.fromarray(rgb, "RGB"), 1)[..., 0] - luma(rgb)).max() <= 0.5 + 1e-9
    bilevel = Image.fromarray(gray > 127).convert("1")
    assert np.array_equal(load_one(tmp_path, bilevel, 1)[..., 0], np.where(gray > 127, 255, 0))


def test_16_bit_grayscale_is_rescaled_to_8_bits(tmp_path):
    values = np.linspace(0, 65535, 256).round().astype(np.uint16).reshape(16, 16)
    image = Image.fromarray(values)  # a 16-bit grayscale image; as a PNG it opens as I;16
    expected = values / 257.0  # 65535 ↦ 255: the same fraction of full scale in 8 bits
    for channels in (1, 3):
        got = load_one(tmp_path, image, channels)
        assert np.abs(got - expected[..., None]).max() <= 1.0, channels


def test_bad_image_is_named_or_skipped(image_folder):
    (image_folder / "cls" / "broken.png").write_bytes(b"\x89PNG but not really")
    ds, column = load_image_dataset(train_data_dir=str(image_folder))
    data = ImageDataset(ds, column, resolution=16, channels=3)
    bad = next(i for i in range(len(ds)) if ds[i][column]["path"].endswith("broken.png"))
    with pytest.raises(BadImageError, match=r"broken\.png"):
        data[bad]
    skipped = ImageDataset(ds, column, 16, 3, skip_bad_images=True)[bad]
    assert isinstance(skipped, BadImage) and skipped.where.endswith("broken.png") and "broken.png" in skipped.reason


def test_parquet_and_arrow_with_img_column(tmp_path):
    images = [Image.fromarray(np.full((32, 32, 3), i * 40, dtype=np.uint8)) for i in range(4)]
    ds = datasets.Dataset.from_dict({"img": images, "label": [0, 1, 2, 3]}).cast_column("img", datasets.Image())
    ds.to_parquet(str(tmp_path / "pq" / "train-00000.parquet"))
    ds.save_to_disk(str(tmp_path / "arrow"))
    for source in (tmp_path / "pq", tmp_path / "arrow"):
        loaded, column = load_image_dataset(str(source))
        assert column == "img" and len(loaded) == 4
        assert int(ImageDataset(loaded, column, 32, 3)[2][0, 0, 0]) == 80
    with pytest.raises(ValueError, match="nope"):
        load_image_dataset(str(tmp_path / "pq"), image_column="nope")
    datasets.Dataset.from_dict({"text": ["a", "b"]}).to_parquet(str(tmp_path / "txt" / "train.parquet"))
    with pytest.raises(ValueError, match="no image column"):
        load_image_dataset(str(tmp_path / "txt"))


def test_digits_and_scaling():
    ds, column = load_image_dataset(DIGITS)
    test, _ = load_image_dataset(DIGITS, split="test")
    assert (len(ds), len(test)) == (1500, 297)  # the last 297 held out: a test split that is not training data
    from sklearn.datasets import load_digits

    last = np.round(load_digits().images[1500] * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(ImageDataset(test, column, 8, 1)[0][0].numpy(), last)
    everything, _ = load_image_dataset(DIGITS, split="train+test")  # what "train" was before 0.3
    assert len(everything) == 1797 and everything[1500]["image"] == test[0]["image"]
    with pytest.raises(ValueError, match=r"has the splits \['test', 'train'\] \(and 'train\+test'\), not 'validation'"):
        load_image_dataset(DIGITS, split="validation")
    x = ImageDataset(ds, column, 8, 1)[0]
    assert x.shape == (1, 8, 8) and x.max() == 239  # 15/16 of 255: digits' values are 0..16
    assert scale_to_model(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]


def test_center_crop_keeps_the_middle():
    image = Image.fromarray(np.concatenate([np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8)] * 2, axis=1))
    x = to_tensor(image, 8, 1)  # 32 wide, 8 high: columns 12..19 straddle a 255→0 edge
    assert x[0, 0].tolist() == [255, 255, 255, 255, 0, 0, 0, 0]


def test_image_grid_layout():
    from ddpm_hf.grid import image_grid

    cells = [Image.new("L", (2, 2), color=50 * (i + 1)) for i in range(5)]
    grid = image_grid(cells, pad=1, scale=2)  # 3 columns × 2 rows of 4×4 cells, 1 px apart
    assert grid.size == (3 * 4 + 2, 2 * 4 + 1)
    pixels = np.asarray(grid)
    assert pixels[0, 0] == 50 and pixels[0, 4] == 128 and pixels[0, 5] == 100 and pixels[5, 0] == 200
    assert pixels[-1, -1] == 128  # the sixth cell is empty


def test_a_train_data_dir_without_images_is_named(tmp_path):
    """datasets' own 'Instruction "train" corresponds to no data!' did not say which folder."""
    from ddpm_hf.data import load_image_dataset

    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=rf"train_data_dir {tmp_path} holds no images"):
        load_image_dataset(train_data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_image_dataset(train_data_dir=str(tmp_path / "missing"))


def test_an_image_unlike_the_networks_is_refused_where_conversion_was_not_asked(tmp_path):
    write_image_folder(tmp_path / "data", count=2, size=8, mode="L")
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "all" / "colour.png")
    ds, column = load_image_dataset(None, str(tmp_path / "data"), "train")
    strict = ImageDataset(ds, column, resolution=8, channels=1, convert=False)
    kinds = [strict.conversion(i) for i in range(len(strict))]
    assert sorted(map(str, kinds)) == ["8×8 colour to 8×8 grayscale", "None", "None"]
    bad = kinds.index("8×8 colour to 8×8 grayscale")
    with pytest.raises(ImageMismatchError, match=r"colour.png is 8×8 colour, the network takes 8×8 grayscale"):
        strict[bad]
    assert strict[kinds.index(None)].shape == (1, 8, 8)
    converted = ImageDataset(ds, column, resolution=8, channels=1)  # training's way: every image converted
    assert converted[bad].shape == (1, 8, 8)
