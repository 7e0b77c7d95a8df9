"""DDPMUNet2DModel: the paper's presets, the reference initialisation, interchange with vanilla UNet2DModel."""

import math

import pytest
import torch
from diffusers import UNet2DModel

from ddpm_hf import DDPMUNet2DModel
from tiny import TINY_UNET, tiny_unet

# google/ddpm-cifar10-32's unet/config.json (it carries no dropout key; the paper's is 0.1).
GOOGLE_CIFAR10_CONFIG = {
    "act_fn": "silu",
    "attention_head_dim": None,
    "block_out_channels": (128, 256, 256, 256),
    "center_input_sample": False,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "in_channels": 3,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 32,
    "time_embedding_type": "positional",
    "up_block_types": ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_cifar10_preset():
    unet = DDPMUNet2DModel.from_paper_config("cifar10")
    assert n_params(unet) == 35_746_307
    assert unet.config.dropout == 0.1
    for key, value in GOOGLE_CIFAR10_CONFIG.items():
        got = unet.config[key]
        assert (tuple(got) if isinstance(got, list) else got) == value, key
    assert unet.down_blocks[1].attentions[0].heads == 1  # single-head attention at 16×16
    with torch.no_grad():
        out = unet(torch.randn(2, 3, 32, 32), torch.tensor([0, 999])).sample
    assert out.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("name", ["celebahq256", "lsun256"])
def test_256_presets(name):
    unet = DDPMUNet2DModel.from_paper_config(name)
    assert n_params(unet) == 113_673_219  # ≈113.7M, the paper's "114M"
    assert unet.config.dropout == 0.0 and unet.config.sample_size == 256
    assert tuple(unet.config.block_out_channels) == (128, 128, 256, 256, 512, 512)
    assert unet.down_blocks[4].attentions[0] is not None  # 256 / 2^4 = 16×16
    with torch.no_grad():  # fully convolutional: a 64×64 input exercises every block at 1/16 of the cost
        out = unet(torch.randn(1, 3, 64, 64), torch.tensor([10])).sample
    assert out.shape == (1, 3, 64, 64)


def test_overrides_and_bad_names():
    unet = DDPMUNet2DModel.from_paper_config("cifar10", **TINY_UNET)
    assert unet.config.sample_size == 8 and unet.config.freq_shift == 1
    with pytest.raises(ValueError, match="imagenet"):
        DDPMUNet2DModel.from_paper_config("imagenet")
    with pytest.raises(ValueError, match="channel_mult"):
        DDPMUNet2DModel.from_paper_config("cifar10", channel_mult=(1, 2))


def test_reference_initialisation():
    unet = DDPMUNet2DModel.from_paper_config("cifar10")
    w = unet.conv_in.weight  # 3 → 128, 3×3: fan_avg uniform, limit sqrt(3 / fan_avg)
    limit = math.sqrt(3.0 / ((3 * 9 + 128 * 9) / 2))
    assert w.abs().max() <= limit and w.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.05)
    for name, module in unet.named_modules():
        if name == "conv_out" or name.endswith((".conv2", ".to_out.0")):
            assert module.weight.abs().max() < 1e-5, name  # scale 1e-10: each residual branch starts at zero
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
            assert torch.count_nonzero(module.bias) == 0, name
    lin = unet.time_embedding.linear_1
    assert lin.weight.std().item() == pytest.approx(math.sqrt(1.0 / ((128 + 512) / 2)), rel=0.05)
    # The freshly initialised network is near the identity on its residual path: output ≈ 0.
    with torch.no_grad():
        assert unet(torch.randn(1, 3, 32, 32), 5).sample.abs().max() < 1e-3


def test_vanilla_unet_loads_ours_and_back(tmp_path):
    ours = tiny_unet()
    ours.save_pretrained(tmp_path / "ours")
    vanilla = UNet2DModel.from_pretrained(tmp_path / "ours")
    assert type(vanilla) is UNet2DModel
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 700])
    for key, value in ours.state_dict().items():
        assert torch.equal(vanilla.state_dict()[key], value), key
    with torch.no_grad():  # diffusers' attention kernel against ddpm_hf.blocks': equal up to float rounding
        torch.testing.assert_close(vanilla(x, t).sample, ours(x, t).sample, atol=1e-5, rtol=1e-5)
    vanilla.save_pretrained(tmp_path / "vanilla")
    back = DDPMUNet2DModel.from_pretrained(tmp_path / "vanilla")
    assert type(back) is DDPMUNet2DModel
    with torch.no_grad():
        assert torch.equal(back(x, t).sample, ours(x, t).sample)
