"""`ddpm_hf.fastpath`: the ε-model every caller gets, in each precision, and the layout and graph policy."""

import pytest
import torch

import ddpm_hf.fastpath as fastpath
from ddpm_hf.fastpath import GraphedFunction, eps_model, memory_format, resolve_precision, weight_memory_format
from tiny import tiny_unet

CPU = torch.device("cpu")


def inputs(batch: int = 2):
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, 8, 8, generator=g), torch.tensor(7)


def conv_output_dtypes(unet) -> list[torch.dtype]:
    """Record the dtype of every convolution's output while the returned list is alive (hooks stay registered)."""
    seen: list[torch.dtype] = []
    for module in unet.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def test_fp32_is_the_network_untouched():
    unet = tiny_unet()
    x, t = inputs()
    seen = conv_output_dtypes(unet)
    with torch.no_grad(), eps_model(unet, "fp32") as eps:
        out = eps(x, t)
    assert torch.equal(out, unet(x, t).sample) and out.dtype == torch.float32
    assert set(seen) == {torch.float32}
    assert weight_memory_format(unet.conv_in.weight) == torch.contiguous_format  # layout left as it was


def test_bf16_runs_the_network_under_bf16_autocast_in_the_fast_layout():
    unet = tiny_unet()
    x, t = inputs()
    with torch.no_grad():
        exact = unet(x, t).sample
        seen = conv_output_dtypes(unet)
        with eps_model(unet, "bf16") as eps:
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
            out = eps(x, t)
    assert not torch.is_autocast_enabled("cpu")  # only within the block
    assert seen and set(seen) == {torch.bfloat16}  # every convolution computed in bf16 ...
    assert out.dtype == torch.float32  # ... and ε̂ comes back in float32
    # bf16 keeps 8 bits of mantissa: the output differs from fp32, by about bf16's resolution, not more.
    difference = (out - exact).abs().max().item()
    assert 1e-4 < difference < 0.1 * exact.abs().max().item()
    assert weight_memory_format(unet.conv_in.weight) == memory_format(CPU)


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_where_native_and_only_for_float32_networks(monkeypatch, native):
    monkeypatch.setattr(fastpath, "native_bf16", lambda device: native)
    assert resolve_precision("auto", CPU) == ("bf16" if native else "fp32")
    assert resolve_precision("auto", CPU, torch.float16) == "fp32"
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    unet = tiny_unet()
    seen = conv_output_dtypes(unet)
    with torch.no_grad(), eps_model(unet, "auto") as eps:
        eps(*inputs())
    assert set(seen) == {torch.bfloat16 if native else torch.float32}
    with pytest.raises(ValueError, match="fp8"):
        resolve_precision("fp8", CPU)


def test_training_feeds_the_training_layout_with_gradients():
    unet = tiny_unet().train().to(memory_format=memory_format(CPU, training=True))
    seen = []
    unet.conv_in.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    x, _ = inputs()
    with eps_model(unet, training=True) as eps:
        out = eps(x, torch.full((2,), 3))
    assert seen == [True] and out.requires_grad
    with pytest.raises(ValueError, match="mixed_precision"), eps_model(unet, "bf16", training=True):
        pass


def test_layout_policy_and_graph_guard():
    assert memory_format(CPU) == torch.channels_last
    assert memory_format(torch.device("cuda")) == torch.contiguous_format  # measured faster for sampling there
    assert memory_format(torch.device("cuda"), training=True) == torch.channels_last
    with pytest.raises(ValueError, match="CUDA"):
        GraphedFunction(lambda x: x * 2, torch.zeros(2))
