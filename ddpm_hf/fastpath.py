"""The fast path's building blocks: which numerics and memory layout a device runs fastest, and CUDA graphs."""

from __future__ import annotations

from collections.abc import Callable

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether `device` runs bf16 convolutions natively (and so faster than fp32), not by emulation."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def sampling_memory_format(device: torch.device) -> torch.memory_format:
    """The network's memory format for sampling: channels_last on CPUs, where oneDNN's convolutions want it; NCHW on
    CUDA, measured faster there (H100, bf16 autocast, batch 256, CUDA-graphed: 31 ms per forward in NCHW against
    about 39 ms per step in channels_last; docs/benchmarks.md)."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


class GraphedFunction:
    """`fn(*inputs)` recorded once as a CUDA graph for these input shapes; a call copies its inputs in and replays.

    The returned tensor is the graph's own output buffer: the next call overwrites it, so use it before calling again.
    `fn` must not sync with the host (no `.item()`, no data-dependent shapes) and must allocate nothing that
    outlives it; under autocast it needs `cache_enabled=False`, since cached casts would live in the graph's pool.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], *example_inputs: torch.Tensor, warmup: int = 2) -> None:
        if any(x.device.type != "cuda" for x in example_inputs):
            raise ValueError("CUDA graphs need CUDA tensors")
        self.inputs = [x.clone() for x in example_inputs]
        # Warm-up on a side stream, as capture requires: cuDNN and cuBLAS choose their algorithms and workspaces here.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = fn(*self.inputs)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        for static, x in zip(self.inputs, inputs, strict=True):
            static.copy_(x)
        self.graph.replay()
        return self.output
