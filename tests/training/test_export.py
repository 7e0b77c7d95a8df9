"""`ddpm_hf.training.export`: the EMA pipeline a run leaves, and what its push uploads."""

import hashlib

import pytest
import torch
from safetensors.torch import load_file

import ddpm_hf.training.loop
from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.training import parse_args, train
from ddpm_hf.training.checkpoint import list_checkpoints
from ddpm_hf.training.ema import EMA
from ddpm_hf.training.export import ema_pipeline
from tiny import PUSHED_PIPELINE_FILES, tiny_pipeline, tiny_train_args


def test_the_exported_pipeline_holds_the_ema_weights_not_the_trained_ones():
    trained = tiny_pipeline(seed=0)
    ema = EMA(tiny_pipeline(seed=1).unet, decay=0.9)  # another model's weights as the average
    pipe = ema_pipeline(ema, trained.unet, trained.scheduler)
    for p, shadow in zip(pipe.unet.parameters(), ema.shadow, strict=True):
        assert torch.equal(p, shadow)
    assert not torch.equal(pipe.unet.conv_in.weight, trained.unet.conv_in.weight)
    assert pipe.unet is not trained.unet and not pipe.unet.training
    assert pipe.scheduler.config == trained.scheduler.config


def test_push_to_hub_uploads_the_pipeline_not_the_checkpoints(hub_server, tmp_path):
    out = tmp_path / "run"
    args = tiny_train_args(
        out, max_train_steps=2, checkpointing_steps=1, push_to_hub="true", hub_model_id="user/digits"
    )
    train(parse_args(args))
    assert set(hub_server.server.files("user/digits")) == PUSHED_PIPELINE_FILES
    loaded = DDPMPaperPipeline.from_pretrained("user/digits")
    local = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    for key, value in loaded.unet.state_dict().items():
        assert torch.equal(value, local[key]), key


def folder_digest(folder):
    """Names and contents of every file under a folder."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_failed_push_keeps_everything_local(hub_server, tmp_path, monkeypatch):
    hub_server.server.require_token = "another-token"  # every request of ours now gets a 401
    out = tmp_path / "run"
    before = []  # the folder as the push found it: digested just before the loop's (real) push runs
    push = ddpm_hf.training.loop.push_pipeline

    def digest_then_push(*args, **kwargs):
        before.append(folder_digest(out))
        return push(*args, **kwargs)

    monkeypatch.setattr(ddpm_hf.training.loop, "push_pipeline", digest_then_push)
    args = tiny_train_args(
        out, max_train_steps=2, checkpointing_steps=2, push_to_hub="true", hub_model_id="user/digits"
    )
    with pytest.raises(RuntimeError, match=r"(?s)refused the credentials.*no new commit.*is intact"):
        train(parse_args(args))
    assert len(before) == 1 and folder_digest(out) == before[0]  # not a byte changed, added or removed
    assert {"model_index.json", "unet/diffusion_pytorch_model.safetensors", "samples.png"} <= before[0].keys()
    assert any(name.startswith("checkpoints/checkpoint-2/") for name in before[0])
    assert DDPMPaperPipeline.from_pretrained(out) is not None
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-2"]
    assert ("model", "user/digits") not in hub_server.server.repos or not hub_server.server.files("user/digits")


def test_the_card_states_facts_of_the_trained_weights(tmp_path):
    """A digits run's card said `model: cifar10` (the preset its network config started from), listed
    `resume_from_checkpoint: latest` as a setting, told users to `pip install ddpm_hf` (not on PyPI) and showed no
    samples although samples.png is pushed with it."""
    from ddpm_hf.card import card_section

    out = tmp_path / "run"
    train(parse_args(tiny_train_args(out, max_train_steps=1, resume_from_checkpoint="latest")))
    card = (out / "README.md").read_text()
    training = card_section(card, "Training")
    assert "resume_from_checkpoint" not in training and "output_dir" not in training
    assert "| `model` |" not in training and "unet_config" not in training
    pipe = DDPMPaperPipeline.from_pretrained(out)
    params = sum(p.numel() for p in pipe.unet.parameters())
    assert f"DDPMUNet2DModel, {params:,} parameters: sample_size=8, in_channels=1" in training
    assert "block_out_channels=[16, 16]" in training and "| `learning_rate` | `0.001` |" in training
    assert "![samples of this model](samples.png)" in card and (out / "samples.png").is_file()
    assert "pip install ddpm_hf`" not in card and "not on PyPI" in card
