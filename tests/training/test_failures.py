"""Faults a training run meets, each stopped where it enters with a message that says what to do, losing nothing:
damaged checkpoints, a full disk, resuming another network, unreadable images, 16-bit images."""

import errno
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_hf.data import ImageDataset, to_tensor
from ddpm_hf.training import parse_args, train
from ddpm_hf.training.checkpoint import CheckpointError, list_checkpoints, verify_checkpoint
from hooked_training import FailWhileSaving
from tiny import TINY_TRAINING, tiny_train_args, write_image_folder

TWO_CHECKPOINTS = {"max_train_steps": 4, "checkpointing_steps": 2, "checkpoints_total_limit": "none"}


@pytest.fixture(scope="module")
def run_with_two_checkpoints(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    train(parse_args(tiny_train_args(out, **TWO_CHECKPOINTS)))
    return out


def damaged_copy(run: Path, tmp_path: Path, file: str) -> Path:
    """A copy of the run whose newest checkpoint has `file` cut in half."""
    out = tmp_path / "run"
    shutil.copytree(run, out)
    target = out / "checkpoints" / "checkpoint-4" / file
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    return out


@pytest.mark.parametrize("file", ["model.safetensors", "optimizer.bin"])
def test_latest_is_the_newest_checkpoint_that_reads_back(run_with_two_checkpoints, tmp_path, capsys, file):
    out = damaged_copy(run_with_two_checkpoints, tmp_path, file)
    with pytest.raises(CheckpointError, match=rf"checkpoint-4/{file} is unreadable"):
        verify_checkpoint(out / "checkpoints" / "checkpoint-4")
    # Naming the damaged checkpoint stops with the file's name ...
    with pytest.raises(CheckpointError, match=rf"{file} is unreadable"):
        train(parse_args(tiny_train_args(out, **TWO_CHECKPOINTS, resume_from_checkpoint="checkpoint-4")))
    # ... and `latest` passes over it, saying so, to the newest intact one.
    train(
        parse_args(tiny_train_args(out, **{**TWO_CHECKPOINTS, "max_train_steps": 5}, resume_from_checkpoint="latest"))
    )
    printed = capsys.readouterr().err
    assert f"warning: {out / 'checkpoints' / 'checkpoint-4' / file} is unreadable" in printed
    assert "falling back" in printed and "at step 2" in printed  # resumed from the intact checkpoint-2


def disk_full() -> None:
    """The disk fills up while a checkpoint is being written: a first file landed, the next write fails."""
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_named_and_keeps_the_previous_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(
        CheckpointError, match=r"could not write checkpoint-4 .*the disk is full.*checkpoint-2 is intact"
    ):
        train(parse_args(tiny_train_args(out, **TWO_CHECKPOINTS)), [FailWhileSaving(4, disk_full, b"partial")])
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-2"]
    assert not list((out / "checkpoints").glob("tmp-*"))  # the partial write is cleaned up
    verify_checkpoint(out / "checkpoints" / "checkpoint-2")


def test_resuming_another_network_names_the_settings_that_differ(run_with_two_checkpoints, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run_with_two_checkpoints, out)
    wider = {**TINY_TRAINING["unet_config"], "block_out_channels": [32, 32]}
    args = tiny_train_args(out, **TWO_CHECKPOINTS, unet_config=wider, resume_from_checkpoint="latest")
    with pytest.raises(
        ValueError, match=r"holds another network .*unet_config: .*\[16, 16\].* there, .*\[32, 32\].* here"
    ):
        train(parse_args(args))


def test_skipped_images_are_reported_by_file(tmp_path, capsys):
    data = write_image_folder(tmp_path / "imgs", count=6, size=8, broken=("broken.png", "empty.png"))
    args = tiny_train_args(tmp_path / "run", max_train_steps=3, train_data_dir=data, skip_bad_images="true")
    train(parse_args(args))
    out = capsys.readouterr().err
    assert out.count("skipping an unreadable image") == 2  # each file once, however often it is drawn
    summary = out.split("unreadable images skipped", 1)[1]
    assert summary.startswith(" (2 distinct files: ") and "broken.png" in summary and "empty.png" in summary


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_16_bit_grayscale_keeps_its_values():
    """A 16-bit PNG (mode I;16) used to become all white: Pillow clips every value above 255 when converting."""
    levels = np.linspace(0, 65535, 64).round().astype(np.uint16).reshape(8, 8)
    image = Image.open(io.BytesIO(png_bytes(levels)))
    assert image.mode.startswith("I")
    pixels = to_tensor(image, 8, 1)[0].numpy().astype(int)
    np.testing.assert_array_equal(pixels, np.round(levels / 257.0).astype(int))
    rgb = to_tensor(Image.open(io.BytesIO(png_bytes(levels))), 8, 3)
    assert torch.equal(rgb[0], rgb[1]) and torch.equal(rgb[0].long(), torch.from_numpy(pixels))


def test_16_bit_images_train_with_their_contrast(tmp_path):
    import datasets

    arrays = [np.full((8, 8), v, dtype=np.uint16) for v in (1000, 30000, 60000)]
    ds = datasets.Dataset.from_dict({"image": [{"bytes": png_bytes(a), "path": None} for a in arrays]})
    ds = ds.cast_column("image", datasets.Image(decode=False))
    values = [int(ImageDataset(ds, "image", 8, 1)[i].float().mean()) for i in range(3)]
    assert values == [4, 117, 233]  # v / 257, not 255, 255, 255


def test_the_config_records_what_ran(tmp_path):
    out = tmp_path / "run"
    train(parse_args(tiny_train_args(out, max_train_steps=1, checkpointing_steps=1, hub_token="hf_secret")))
    for path in (out / "train_config.json", out / "checkpoints" / "checkpoint-1" / "train_config.json"):
        recorded = json.loads(path.read_text())
        assert "hub_token" not in recorded and recorded["max_train_steps"] == 1
    assert "hf_secret" not in (out / "README.md").read_text()
