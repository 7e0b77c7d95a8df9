"""Converting released checkpoints: the converted network equals the reference implementations' (the authors'
TensorFlow code and pytorch_diffusion, run once to make tests/data/convert/), EMA or raw as asked, and the folder
loads everywhere a diffusers user would load it."""

import hashlib
import shutil

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, DiffusionPipeline, UNet2DModel
from huggingface_hub import ModelCard

from convert_data import TF_DIR, TF_OUTPUTS, TF_PREFIX, TINY, TORCH_FILE, TORCH_OUTPUTS, eps
from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.card import card_section, render_model_card
from ddpm_hf.convert import RELEASED_MODELS, Architecture, convert_checkpoint
from ddpm_hf.convert.describe import paper_section
from ddpm_hf.convert.layout import layers
from ddpm_hf.unet import PAPER_CONFIGS

ATOL = 1e-5  # fp32: the two implementations sum in different orders


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Folders converted once for the module: TF EMA, TF raw (from the folder form), the port's EMA file."""
    root = tmp_path_factory.mktemp("converted")
    return {
        "tf_ema": convert_checkpoint(TF_PREFIX, root / "tf_ema", model=TINY),
        "tf_raw": convert_checkpoint(TF_DIR, root / "tf_raw", model=TINY, ema=False),
        "torch": convert_checkpoint(TORCH_FILE, root / "torch", model=TINY),
    }


def test_tf_ema_weights_equal_the_authors_ema_network(converted):
    pipe = DDPMPaperPipeline.from_pretrained(converted["tf_ema"])
    out = eps(pipe.unet, TF_OUTPUTS)
    np.testing.assert_allclose(out, TF_OUTPUTS["eps_ema"], rtol=0, atol=ATOL)
    assert np.abs(TF_OUTPUTS["eps_ema"] - TF_OUTPUTS["eps_raw"]).max() > 100 * ATOL  # EMA and raw differ
    assert pipe.scheduler.config.variance_type == "fixed_small"  # the model's, not the default


def test_tf_raw_weights_on_request(converted):
    out = eps(DDPMPaperPipeline.from_pretrained(converted["tf_raw"]).unet, TF_OUTPUTS)
    np.testing.assert_allclose(out, TF_OUTPUTS["eps_raw"], rtol=0, atol=ATOL)


def test_pytorch_port_weights_equal_the_ports_network(converted):
    out = eps(DDPMPaperPipeline.from_pretrained(converted["torch"]).unet, TORCH_OUTPUTS)
    np.testing.assert_allclose(out, TORCH_OUTPUTS["eps"], rtol=0, atol=ATOL)


def test_the_ports_ema_weights_are_told_by_file_name(tmp_path, converted):
    raw = tmp_path / "diffusion_tiny_model" / "model-3.ckpt"  # the port's name for raw weights
    raw.parent.mkdir()
    shutil.copy(TORCH_FILE, raw)
    with pytest.raises(ValueError, match=r"EMA weights were asked for, but .* holds raw ones.*--no_ema"):
        convert_checkpoint(raw, tmp_path / "a", model=TINY)
    with pytest.raises(ValueError, match=r"raw weights were asked for .* EMA"):
        convert_checkpoint(TORCH_FILE, tmp_path / "b", model=TINY, ema=False)
    folder = convert_checkpoint(raw.parent, tmp_path / "c", model=TINY, ema=False)
    out = eps(DDPMPaperPipeline.from_pretrained(folder).unet, TORCH_OUTPUTS)
    np.testing.assert_allclose(out, TORCH_OUTPUTS["eps"], rtol=0, atol=ATOL)  # the folder form reads the one file


def test_vanilla_diffusers_and_the_generic_loader_read_the_folder(converted, tmp_path):
    folder = converted["tf_ema"]
    unet = UNet2DModel.from_pretrained(folder, subfolder="unet")
    assert type(unet) is UNet2DModel
    np.testing.assert_allclose(eps(unet, TF_OUTPUTS), TF_OUTPUTS["eps_ema"], rtol=0, atol=ATOL)
    scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
    assert scheduler.config.variance_type == "fixed_small"
    vanilla = DDPMPipeline(unet=unet, scheduler=scheduler)
    vanilla.set_progress_bar_config(disable=True)
    assert vanilla(batch_size=1, num_inference_steps=2, output_type="np").images.shape == (1, 8, 8, 3)
    generic = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    assert type(generic) is DDPMPaperPipeline
    # Saved again by diffusers' own save_pretrained, read by vanilla diffusers: the same network.
    generic.unet.save_pretrained(tmp_path / "unet")
    again = UNet2DModel.from_pretrained(tmp_path / "unet")
    np.testing.assert_allclose(eps(again, TF_OUTPUTS), TF_OUTPUTS["eps_ema"], rtol=0, atol=ATOL)


def test_the_card_names_the_source_its_hashes_and_the_papers_figures_as_the_papers(converted):
    card = ModelCard.load(converted["tf_ema"] / "README.md")
    source = card_section(card, "Source")
    for name in ("model.ckpt-3.index", "model.ckpt-3.data-00000-of-00001"):
        assert f"`{name}` (sha256 `{hashlib.sha256((TF_DIR / name).read_bytes()).hexdigest()}`)" in source
    assert "| weights | EMA" in source and "| training step | 3 |" in source and "`fixed_small`" in source
    assert card_section(card, "Results") == "No metrics have been measured for this checkpoint yet."
    assert card_section(card, "Reported in the paper").startswith(TINY.paper_results)
    assert "Not measured on this conversion" in card_section(card, "Reported in the paper")
    assert not card.data.eval_results  # no figure of the paper becomes a measured result
    raw = card_section(ModelCard.load(converted["tf_raw"] / "README.md"), "Source")
    assert "| weights | raw (not EMA)" in raw
    port = card_section(ModelCard.load(converted["torch"] / "README.md"), "Source")
    assert hashlib.sha256(TORCH_FILE.read_bytes()).hexdigest() in port and "pytorch_diffusion" in port


def test_a_released_models_card_keeps_the_papers_figures_out_of_its_results():
    cifar10 = RELEASED_MODELS["cifar10"]
    card = render_model_card("ddpm-cifar10", paper_results=paper_section(cifar10, ema=True), source="x")
    assert "3.17" in card_section(card, "Reported in the paper") and "3.17" not in card_section(card, "Results")
    assert not card.data.eval_results
    assert "raw weights, for which the paper reports nothing" in paper_section(cifar10, ema=False)


def test_released_models_are_the_papers_networks_and_samplers():
    presets = {"cifar10": "cifar10", "celeba_hq": "celebahq256"} | {
        n: "lsun256" for n in RELEASED_MODELS if "lsun" in n
    }
    for name, model in RELEASED_MODELS.items():
        assert model.unet_config == PAPER_CONFIGS[presets[name]]
        assert model.variance_type == ("fixed_large" if name == "cifar10" else "fixed_small")
        assert model.unet_config["dropout"] == (0.1 if name == "cifar10" else 0.0)
        arch = Architecture.from_unet_config(model.unet_config)
        assert arch.unet_config(model.unet_config) == model.unet_config
        with torch.device("meta"):  # the full-size network's parameter names, without allocating it
            names = {n.rsplit(".", 1)[0] for n, _ in UNet2DModel(**model.unet_config).named_parameters()}
        ours = [layer.diffusers for layer in layers(arch)]
        assert len(ours) == len(set(ours)) and set(ours) == names
