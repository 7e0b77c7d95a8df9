"""`ddpm_hf.training.loop`: a whole tiny run, callbacks, divergence, bad images, gradient checkpointing (several
processes: test_distributed.py)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.training import TrainConfig, Trainer, TrainerCallback, TrainingDiverged, parse_args, train
from ddpm_hf.training.checkpoint import list_checkpoints
from tiny import TINY_TRAINING, tiny_train_args

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_run_writes_a_loadable_pipeline(tmp_path):
    out = tmp_path / "run"
    train(parse_args(tiny_train_args(out, max_train_steps=4, checkpointing_steps=2, report_to="tensorboard")))
    pipe = DDPMPaperPipeline.from_pretrained(out)
    assert pipe.unet.config.in_channels == 1
    images = pipe(batch_size=2, num_inference_steps=3, output_type="np").images
    assert images.shape == (2, 8, 8, 1)
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-2", "checkpoint-4"]
    card = (out / "README.md").read_text()
    assert "library_name: diffusers" in card and "`learning_rate` | `0.001`" in card
    assert Image.open(out / "samples.png").size == (65, 65)  # 2 × 2 grid of 8 × 8 samples shown 4×, 1 px apart
    assert list((out / "logs").rglob("events.out.tfevents.*"))


class Recorder(TrainerCallback):
    """Every hook call, in order, with the step it saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        self.calls.append(("begin", trainer.step))

    def on_step_end(self, trainer: Trainer) -> None:
        self.calls.append(("step", trainer.step))

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        assert (path / "training_state.json").is_file()  # complete when announced
        self.calls.append((path.name, trainer.step))

    def on_train_end(self, trainer: Trainer) -> None:
        assert (trainer.output_dir / "model_index.json").is_file()
        self.calls.append(("end", trainer.step))


def test_callbacks_see_every_step_and_checkpoint_in_order(tmp_path):
    recorder = Recorder()
    train(parse_args(tiny_train_args(tmp_path / "run", max_train_steps=3, checkpointing_steps=2)), [recorder])
    assert recorder.calls == [
        ("begin", 0),
        ("step", 1),
        ("checkpoint-2", 2),
        ("step", 2),
        ("checkpoint-3", 3),
        ("step", 3),
        ("end", 3),
    ]


class PoisonWeights(TrainerCallback):
    """Make every weight NaN after step `at`, so that the next step's loss is NaN."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.step == self.at:
            with torch.no_grad():
                for p in trainer.unet.parameters():
                    p.fill_(float("nan"))


@pytest.mark.parametrize("logging_steps", [1, 100])  # 100: found only when checkpoint-4 is due, and not written
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, logging_steps):
    out = tmp_path / "run"
    args = tiny_train_args(out, max_train_steps=10, checkpointing_steps=2, logging_steps=logging_steps)
    with pytest.raises(TrainingDiverged, match=r"step 3.*checkpoint-2"):
        train(parse_args(args), [PoisonWeights(at=3)])
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-2"]
    assert not (out / "model_index.json").exists()


def test_bad_images_stop_the_run_or_are_counted(tmp_path, capsys):
    folder = tmp_path / "imgs" / "all"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "corrupt.png").write_bytes(b"garbage")
    # --train_data_dir replaces the preset's dataset: digits' settings, the user's images.
    cfg = parse_args(tiny_train_args(tmp_path / "run", max_train_steps=3, train_data_dir=str(tmp_path / "imgs")))
    assert cfg.dataset_name is None
    with pytest.raises(ValueError, match=r"corrupt\.png"):
        train(cfg)
    train(TrainConfig(**{**cfg.to_dict(), "skip_bad_images": True}))
    out = capsys.readouterr().err
    assert "7 training images" not in out and "8 training images" in out
    skipped = int(out.split(" unreadable images skipped")[0].rsplit(", ", 1)[1])
    assert skipped == 3  # 3 steps × 8 images = 3 epochs of 8 files, the corrupt one drawn once per epoch


def test_gradient_checkpointing_recomputes_and_trains_identically(tmp_path, monkeypatch):
    """--gradient_checkpointing re-runs the residual blocks in the backward, and, dropout included (its RNG state
    is replayed), the weights after two steps are the ones a plain run reaches."""
    import ddpm_hf.blocks

    calls = []
    forward = ddpm_hf.blocks.ResnetBlock.forward

    def counting(self, *args, **kwargs):
        calls[-1] += torch.is_grad_enabled()
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(ddpm_hf.blocks.ResnetBlock, "forward", counting)
    common = {"max_train_steps": 2, "checkpointing_steps": 2, "dropout": 0.3, "lr_warmup_steps": 0}
    for name, flag, seed in (("plain", False, 0), ("recompute", True, 0), ("other_seed", True, 1)):
        calls.append(0)
        train(parse_args(tiny_train_args(tmp_path / name, gradient_checkpointing=flag, seed=seed, **common)))
    assert 0 < calls[0] < calls[1] <= 2 * calls[0]  # blocks ran again in the backward (diffusers skips a few)
    runs = ("plain", "recompute", "other_seed")
    a, b, c = (load_file(tmp_path / n / "checkpoints" / "checkpoint-2" / "model.safetensors") for n in runs)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5, msg=key)
    assert max((a[k] - c[k]).abs().max().item() for k in a) > 1e-4  # other dropout masks and data: other weights


CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"


@pytest.mark.skipif(not CIFAR10.is_dir(), reason="needs CIFAR-10 as parquet in ../shared/data/cifar10")
def test_trains_on_the_shared_cifar10_parquet(tmp_path):
    unet = {**TINY_TRAINING["unet_config"], "sample_size": 32, "in_channels": 3, "out_channels": 3}
    args = tiny_train_args(tmp_path / "run", max_train_steps=1, checkpointing_steps=1, unet_config=unet, resolution=32)
    cfg = parse_args([*args, "--dataset_name", str(CIFAR10), "--random_flip", "true"])
    train(cfg)
    pipe = DDPMPaperPipeline.from_pretrained(tmp_path / "run")
    assert pipe.unet.config.in_channels == 3 and pipe.unet.config.sample_size == 32
