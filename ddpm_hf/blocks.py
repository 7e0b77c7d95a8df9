"""Faster forwards for the paper's U-Net blocks, the same computation as diffusers' own.

`DDPMUNet2DModel` installs them in place of diffusers' modules; the parameters and state dict are unchanged, so
checkpoints stay interchangeable with a vanilla `UNet2DModel`. Dropout and attention change only how a CPU computes
(elsewhere they call the PyTorch kernels diffusers does); the residual block skips a layout copy on every device.
Measured on the project's CPU in docs/benchmarks.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from .errors import InputError
from .fastpath import weight_memory_format

_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # torch.compiler.is_compiling: PyTorch ≥ 2.3


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout (Srivastava et al. 2014, the paper's Appendix B regulariser): zero with probability p, scale
    the rest by 1/(1-p).

    On CPU the mask compares uniform 31-bit integers with p·2³¹ (exact to 2⁻³¹), which PyTorch draws faster than its
    `bernoulli_` kernel (docs/benchmarks.md); elsewhere, and under torch.compile (which cannot trace the in-place
    `random_` and fuses `F.dropout`'s own draw into its kernels), it is `F.dropout`.
    """
    if not training or p == 0.0 or x.device.type != "cpu" or _compiling():
        return F.dropout(x, p, training)
    if not 0.0 <= p <= 1.0:
        raise InputError(f"dropout probability must be in [0, 1], got {p}")
    if p == 1.0:
        return x * 0
    keep = torch.empty_like(x, dtype=torch.int32).random_() >= round(p * 2**31)  # random_ on int32: [0, 2³¹)
    return x * keep * (1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """`nn.Dropout` computed by `dropout` above: same probability, same scaling, a faster mask on CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale) v over the last two dims, the paper's self-attention (Appendix B; Wang et al. 2018).

    On CPU: two batched matmuls with the softmax in float32, faster there than SDPA's fused kernel for the paper's
    shapes (256 pixels × 256 channels; docs/benchmarks.md). Elsewhere: `F.scaled_dot_product_attention`.
    """
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    return torch.matmul(scores.softmax(dim=-1, dtype=torch.float32).to(v.dtype), v)


class PaperAttnProcessor:
    """A diffusers attention processor for the paper's self-attention over an image's pixels.

    Same weights and result as `AttnProcessor2_0`; the pixels are read in whatever memory layout they come in, so a
    channels_last feature map becomes the (batch, pixels, channels) token matrix without a copy. Calls it cannot
    serve (cross-attention, masks, spatial norms, non-image inputs) go to `AttnProcessor2_0`.
    """

    def __init__(self) -> None:
        self._fallback = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        plain = attn.spatial_norm is None and attn.norm_q is None and attn.norm_k is None
        if encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 4 or not plain:
            return self._fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        residual = hidden_states
        b, c, h, w = hidden_states.shape
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states)
        tokens = hidden_states.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view when channels_last

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.unflatten(-1, (attn.heads, -1)).transpose(1, 2)  # (b, heads, pixels, head_dim)

        q, k, v = heads(attn.to_q(tokens)), heads(attn.to_k(tokens)), heads(attn.to_v(tokens))
        out = attention(q, k, v, attn.scale).transpose(1, 2).flatten(2)
        out = attn.to_out[1](attn.to_out[0](out))
        out = out.reshape(b, h, w, c).permute(0, 3, 1, 2)  # back to (b, c, h, w), channels_last strides
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class ResnetBlock(ResnetBlock2D):
    """diffusers' `ResnetBlock2D`, whose plain form (no resampling, timestep added after the first conv) is the
    paper's residual block. In training diffusers copies the 1×1 shortcut's input to NCHW, so that its weight's
    gradient has the strides DDP's buckets expect; here the input goes to the model's own layout instead, which for
    a channels_last model (ours in training) is no copy rather than two layout transposes per block, each way."""

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None, *args, **kwargs) -> torch.Tensor:
        plain = self.upsample is None and self.downsample is None and self.time_embedding_norm == "default"
        if not plain or self.time_emb_proj is None or temb is None or args or kwargs:
            return super().forward(input_tensor, temb, *args, **kwargs)
        h = self.conv1(self.nonlinearity(self.norm1(input_tensor)))
        h = h + self.time_emb_proj(temb if self.skip_time_act else self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        shortcut = input_tensor
        if self.conv_shortcut is not None:
            if self.training:
                shortcut = shortcut.contiguous(memory_format=weight_memory_format(self.conv1.weight))
            shortcut = self.conv_shortcut(shortcut)
        return (shortcut + h) / self.output_scale_factor


def install_fast_blocks_(model: nn.Module) -> nn.Module:
    """In place: `model`'s dropouts and residual blocks become the subclasses above (the same modules
    with another forward) and its attentions use `PaperAttnProcessor`. Parameters and state dict are untouched."""
    for module in model.modules():
        module.__class__ = _FAST_CLASSES.get(type(module), type(module))
        if isinstance(module, Attention):
            module.set_processor(PaperAttnProcessor())
    return model


_FAST_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Dropout: Dropout,
    ResnetBlock2D: ResnetBlock,
}
