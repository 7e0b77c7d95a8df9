"""The training flags a diffusers user brings, end to end: epochs, schedules, EMA, mixed precision from Accelerate,
resuming by name, pictures in the trackers, the network following --resolution, and diffusers' documented command."""

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from test_config import DIFFUSERS_DOCS_COMMAND

import processes
from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.training import Trainer, TrainerCallback, parse_args, train
from ddpm_hf.training.ema import warmup_decay
from ddpm_hf.training.optim import learning_rate
from tiny import TINY_TRAINING, tiny_train_args, write_image_folder

ROOT = Path(__file__).resolve().parents[2]


class Record(TrainerCallback):
    """The learning rate and EMA decay each step used."""

    def __init__(self) -> None:
        self.lr, self.decay = [], []

    def on_step_end(self, trainer: Trainer) -> None:
        self.lr.append(trainer.lr)
        self.decay.append(trainer.ema.decay if trainer.ema is not None else None)


def test_epochs_become_steps_and_what_ran_is_recorded(tmp_path):
    data = write_image_folder(tmp_path / "imgs", count=12, size=8)  # batch 8: 2 steps an epoch
    out = tmp_path / "run"
    args = tiny_train_args(out, train_data_dir=data, num_epochs=3, save_images_epochs=2, checkpointing_steps=100)
    train(parse_args(args))
    recorded = json.loads((out / "train_config.json").read_text())
    assert (recorded["max_train_steps"], recorded["save_images_steps"]) == (6, 4)
    assert recorded["mixed_precision"] == "no"  # what Accelerate ran, not "unset"
    assert (out / "samples" / "step-0000004.png").is_file() and (out / "checkpoints" / "checkpoint-6").is_dir()


@pytest.mark.parametrize("schedule", ["cosine", "constant_with_warmup"])
def test_the_learning_rate_follows_the_named_schedule(tmp_path, schedule):
    record = Record()
    args = tiny_train_args(tmp_path / "run", max_train_steps=6, lr_scheduler=schedule, lr_warmup_steps=2)
    train(parse_args(args), [record])
    assert record.lr == [learning_rate(schedule, s, 1e-3, 2, 6) for s in range(6)]
    after_warmup = record.lr[2:]
    if schedule == "cosine":  # the schedules really differ: decaying, or constant, after the warm-up
        assert after_warmup == sorted(after_warmup, reverse=True) and after_warmup[-1] < 0.5 * after_warmup[0]
    else:
        assert after_warmup == [1e-3] * 4


def test_ema_warmup_is_opt_in_and_use_ema_false_exports_the_trained_weights(tmp_path):
    constant, warm = Record(), Record()
    train(parse_args(tiny_train_args(tmp_path / "constant", max_train_steps=3, checkpointing_steps=3)), [constant])
    args = tiny_train_args(tmp_path / "warm", max_train_steps=3, checkpointing_steps=3, ema_warmup="true")
    train(parse_args([*args, "--ema_inv_gamma", "1.0", "--ema_power", "0.75"]), [warm])
    assert constant.decay == [0.995] * 3  # the digits preset's constant, from the first step
    assert warm.decay == [warmup_decay(n, 0.995, 1.0, 0.75, 0.0) for n in (1, 2, 3)] and warm.decay[0] == 0.0
    out = tmp_path / "raw"
    train(parse_args(tiny_train_args(out, max_train_steps=2, checkpointing_steps=2, use_ema="false")))
    trained = load_file(out / "checkpoints" / "checkpoint-2" / "model.safetensors")
    exported = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(trained[k], exported[k]) for k in trained)


def test_mixed_precision_unset_is_accelerates_and_fp16_on_a_cpu_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --mixed_precision bf16` sets
    out = tmp_path / "run"
    train(parse_args(tiny_train_args(out, max_train_steps=1, checkpointing_steps=1)))
    assert json.loads((out / "train_config.json").read_text())["mixed_precision"] == "bf16"
    assert "`mixed_precision` | `bf16`" in (out / "README.md").read_text()
    with pytest.raises(ValueError, match="no effect on a CPU"):  # it would silently train in fp32
        train(parse_args(tiny_train_args(tmp_path / "fp16", max_train_steps=1, mixed_precision="fp16")))


def test_resume_by_checkpoint_name_inside_the_output_folder(tmp_path, capsys):
    out = tmp_path / "run"
    common = {"checkpointing_steps": 2, "checkpoints_total_limit": "none"}
    train(parse_args(tiny_train_args(out, max_train_steps=4, **common)))
    train(parse_args(tiny_train_args(out, max_train_steps=5, resume_from_checkpoint="checkpoint-2", **common)))
    assert "resumed from" in capsys.readouterr().err and (out / "checkpoints" / "checkpoint-5").is_dir()


def test_sample_grids_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    args = tiny_train_args(out, max_train_steps=4, save_images_steps=2, report_to="tensorboard", num_grid_images=3)
    train(parse_args(args))
    events = EventAccumulator(str(next((out / "logs").rglob("events.out.tfevents.*")).parent), {"images": 0})
    events.Reload()
    logged = events.Images("samples")
    assert [e.step for e in logged] == [2, 4]  # the periodic grid and the final samples
    final = np.asarray(Image.open(io.BytesIO(logged[-1].encoded_image_string)).convert("RGB"))
    # The final samples again: the exported EMA pipeline with the grid's per-image seeds (seed + i).
    pipe = DDPMPaperPipeline.from_pretrained(out)
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    samples = pipe(batch_size=3, generator=generators, num_inference_steps=5).images
    expected = np.concatenate([np.asarray(image.convert("RGB")) for image in samples], axis=1)  # tiled in a row
    assert np.array_equal(final, expected) and expected.std() > 0


def test_the_network_follows_resolution(tmp_path):
    data = write_image_folder(tmp_path / "imgs", count=8, size=20)
    out = tmp_path / "run"
    args = tiny_train_args(out, train_data_dir=data, resolution=16, max_train_steps=1)
    train(parse_args(args))
    pipe = DDPMPaperPipeline.from_pretrained(out)
    assert pipe.unet.config.sample_size == 16
    assert pipe(batch_size=1, num_inference_steps=2, output_type="np").images.shape == (1, 16, 16, 1)


def serve_flowers(hub_server, tmp_path: Path) -> None:
    """A stand-in for the Hub dataset diffusers' docs train on: 8 small RGB images as parquet, served on loopback."""
    import datasets
    from huggingface_hub import HfApi

    folder = write_image_folder(tmp_path / "flowers", count=8, size=72, mode="RGB")
    ds = datasets.load_dataset("imagefolder", data_dir=str(folder), split="train")
    ds.to_parquet(tmp_path / "train.parquet")
    api = HfApi()
    api.create_repo("huggan/flowers-102-categories", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=str(tmp_path / "train.parquet"),
        path_in_repo="data/train-00000-of-00001.parquet",
        repo_id="huggan/flowers-102-categories",
        repo_type="dataset",
    )


def test_the_command_from_diffusers_docs_runs(hub_server, tmp_path):
    """diffusers' documented `train_unconditional.py` command with only the script name changed, against loopback
    stand-ins for its Hub dataset and Hub repo; the flags after it only shrink the run to test size."""
    serve_flowers(hub_server, tmp_path)
    rgb = {k: v for k, v in TINY_TRAINING["unet_config"].items() if k not in ("in_channels", "out_channels")}
    shrink = ["--unet_config", json.dumps(rgb)]
    shrink += ["--num_epochs", "1", "--num_grid_images", "2", "--num_inference_steps", "2", "--train_batch_size", "8"]
    env = {**hub_server.env(), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "2"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1"]
    launch += ["--dynamo_backend", "no", "--mixed_precision", "no"]
    result = processes.run(
        [*launch, str(ROOT / "examples" / "train_ddpm.py"), *DIFFUSERS_DOCS_COMMAND, *shrink], env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "ddpm-ema-flowers-64"
    assert json.loads((out / "train_config.json").read_text())["max_train_steps"] == 1  # 8 images, batch 8, 1 epoch
    pushed = hub_server.server.files("user/ddpm-ema-flowers-64")  # named after the output folder, as diffusers does
    assert "unet/diffusion_pytorch_model.safetensors" in pushed
    pipe = DDPMPaperPipeline.from_pretrained("user/ddpm-ema-flowers-64")
    assert pipe.unet.config.sample_size == 64 and pipe.unet.config.in_channels == 3
    assert os.path.isfile(out / "samples.png")
