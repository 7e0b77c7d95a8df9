"""ddpm_hf.blocks: the faster dropout, attention and residual-block forwards compute what diffusers' do."""

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.resnet import ResnetBlock2D

from ddpm_hf import DDPMUNet2DModel
from ddpm_hf.blocks import Dropout, PaperAttnProcessor, ResnetBlock, attention, dropout
from tiny import TINY_UNET, tiny_unet


def test_dropout_statistics_and_scaling():
    torch.manual_seed(0)
    x = torch.ones(64, 32, 32, 32).to(memory_format=torch.channels_last)
    y = dropout(x, 0.1, training=True)
    kept = (y != 0).double().mean().item()
    n = x.numel()
    assert abs(kept - 0.9) < 5 * (0.9 * 0.1 / n) ** 0.5  # within 5 standard errors of 1 - p
    assert torch.all((y == 0) | ((y - 1 / 0.9).abs() < 1e-6))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(dropout(x, 0.1, training=False), x) and torch.equal(dropout(x, 0.0, training=True), x)
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))
    with pytest.raises(ValueError, match="probability"):
        dropout(x, 1.5, training=True)


def test_dropout_gradient_is_the_mask_over_keep_probability():
    torch.manual_seed(1)
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    y = dropout(x, 0.3, training=True)
    y.sum().backward()
    expected = (y != 0).float() / 0.7
    torch.testing.assert_close(x.grad, expected)
    torch.testing.assert_close(y, x.detach() * expected)


def test_dropout_module_draws_from_the_global_generator():
    layer = Dropout(0.5).train()
    x = torch.ones(1000)
    torch.manual_seed(3)
    a = layer(x)
    torch.manual_seed(3)
    assert torch.equal(a, layer(x)) and not torch.equal(a, layer(x))
    assert torch.equal(layer.eval()(x), x)


@pytest.mark.parametrize("heads", [1, 4])
def test_attention_matches_sdpa(heads):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, heads, 64, 32) for _ in range(3))
    torch.testing.assert_close(attention(q, k, v, 32**-0.5), F.scaled_dot_product_attention(q, k, v))


def test_model_uses_the_fast_blocks_and_keeps_the_state_dict(tmp_path):
    unet = DDPMUNet2DModel.from_paper_config("cifar10", **{**TINY_UNET, "dropout": 0.1})
    assert all(type(m) is not torch.nn.Dropout for m in unet.modules())
    assert any(type(m) is Dropout and m.p == 0.1 for m in unet.modules())
    assert all(type(m) is ResnetBlock for m in unet.modules() if isinstance(m, ResnetBlock2D))
    assert all(isinstance(m.processor, PaperAttnProcessor) for m in unet.modules() if isinstance(m, Attention))
    assert set(unet.state_dict()) == set(UNet2DModel.from_config(unet.config).state_dict())
    unet.save_pretrained(tmp_path)
    vanilla = UNet2DModel.from_pretrained(tmp_path)  # a plain diffusers model, diffusers' own blocks
    assert all(type(m) is ResnetBlock2D for m in vanilla.modules() if isinstance(m, ResnetBlock2D))
    reloaded = DDPMUNet2DModel.from_pretrained(tmp_path)
    assert all(isinstance(m.processor, PaperAttnProcessor) for m in reloaded.modules() if isinstance(m, Attention))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_forward_and_gradients_match_vanilla_unet(memory_format):
    ours = tiny_unet(seed=2).train()  # dropout 0 in the tiny config: training mode, deterministic
    peer = UNet2DModel.from_config(ours.config)
    peer.load_state_dict(ours.state_dict())
    peer.train()
    ours.to(memory_format=memory_format), peer.to(memory_format=memory_format)
    x = torch.randn(3, 3, 8, 8).to(memory_format=memory_format)
    t = torch.tensor([0, 17, 999])
    a, b = ours(x, t).sample, peer(x, t).sample
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    a.square().mean().backward()
    b.square().mean().backward()
    for (name, p), q in zip(ours.named_parameters(), peer.parameters(), strict=True):
        if name.endswith("to_k.bias"):  # softmax ignores a constant added to every key: the true gradient is 0
            continue
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


def reference_attention(attn, hidden, context=None, mask=None):
    """The attention block from its definition, in float64 from the module's weights: GroupNorm over channels,
    softmax(q kᵀ · scale + mask) v per head, the output projection, the residual, the rescale. `hidden` is an image
    [B, C, H, W] or tokens [B, N, C]; `context` [B, M, C] gives keys and values (cross-attention); `mask` [B, 1, M]
    is added to the scores."""
    w = {name: value.detach().double() for name, value in attn.state_dict().items()}
    x = hidden.double()
    channels_first = x.flatten(2) if x.ndim == 4 else x.transpose(1, 2)  # [B, C, N]
    norm = attn.group_norm
    tokens = F.group_norm(channels_first, norm.num_groups, w["group_norm.weight"], w["group_norm.bias"], norm.eps)
    tokens = tokens.transpose(1, 2)  # [B, N, C]
    source = tokens if context is None else context.double()
    q = F.linear(tokens, w["to_q.weight"], w["to_q.bias"])
    k, v = (F.linear(source, w[f"to_{n}.weight"], w[f"to_{n}.bias"]) for n in "kv")
    q, k, v = (t.unflatten(-1, (attn.heads, -1)).transpose(1, 2) for t in (q, k, v))  # [B, heads, N, d]
    scores = q @ k.transpose(-1, -2) * attn.scale
    if mask is not None:
        scores = scores + mask.double()[:, None]
    out = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)
    out = F.linear(out, w["to_out.0.weight"], w["to_out.0.bias"])
    if x.ndim == 4:
        out = out.transpose(1, 2).reshape(x.shape)
    if attn.residual_connection:
        out = out + x
    return out / attn.rescale_output_factor


def test_attention_processor_computes_attention_and_falls_back_for_what_it_does_not_serve():
    unet = tiny_unet()
    attn = unet.down_blocks[1].attentions[0]
    assert attn.group_norm is not None and attn.residual_connection  # the paper's block, all of it exercised
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2, 32, 4, 4, generator=generator)
    tokens = torch.randn(2, 16, 32, generator=generator)  # (batch, tokens, channels): not an image
    context = torch.randn(2, 5, 32, generator=generator)
    mask = torch.zeros(2, 1, 16)
    mask[0, 0, 3:] = -1e4  # the first example attends to three keys only
    cases = [
        ("image", image, {}, {}),  # the fast path
        ("image, channels_last", image.to(memory_format=torch.channels_last), {}, {}),
        ("tokens", tokens, {}, {}),  # the rest goes to diffusers' processor
        ("cross-attention", image, {"encoder_hidden_states": context}, {"context": context}),
        ("mask", tokens, {"attention_mask": mask}, {"mask": mask}),
    ]
    with torch.no_grad():
        for name, hidden, kwargs, reference_kwargs in cases:
            expected = reference_attention(attn, hidden, **reference_kwargs).float()
            got = PaperAttnProcessor()(attn, hidden, **kwargs)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
        # and what diffusers' own processor computes on the fast path's input
        expected = AttnProcessor2_0()(attn, image)
        torch.testing.assert_close(PaperAttnProcessor()(attn, image), expected, atol=1e-6, rtol=1e-5)
