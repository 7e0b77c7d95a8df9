"""How the network runs fastest on a device, in one place: numerics (precision), memory layout, CUDA graphs and
the opt-in torch.compile (with inductor's freezing for inference).

`eps_model` is the only way the package calls the network: sampling, the bound and training all get ε_θ from it.
Why each choice is made is measured in docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Literal, get_args

import torch
import torch._inductor.config

from .checks import check_choice
from .errors import InputError

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)  # what a flag or a form offers
EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t [B, C, H, W], t [] or [B]) -> float32 ε̂


def native_bf16(device: torch.device) -> bool:
    """Whether `device` runs bf16 convolutions natively (and so faster than fp32), not by emulation."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(
    precision: Precision, device: torch.device, dtype: torch.dtype = torch.float32
) -> Literal["fp32", "bf16"]:
    """`"auto"` → `"bf16"` where `device` computes bf16 natively and the network is float32, else `"fp32"`."""
    if check_choice("precision", precision, Precision) != "auto":
        return precision
    return "bf16" if native_bf16(device) and dtype == torch.float32 else "fp32"


def memory_format(device: torch.device, training: bool = False) -> torch.memory_format:
    """The network's layout: channels_last for training on every device and for sampling on CPUs (oneDNN's
    convolutions want it); NCHW for sampling on CUDA, where it measured faster."""
    return torch.channels_last if training or device.type == "cpu" else torch.contiguous_format


def weight_memory_format(weight: torch.Tensor) -> torch.memory_format:
    """channels_last if a conv weight with a spatial kernel is stored that way, else NCHW."""
    channels_last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def compile_network(unet: torch.nn.Module, *, freezing: bool = False, **compile_kwargs) -> torch.nn.Module:
    """Opt-in: from its next call on, `unet` runs through `torch.compile` (inductor), in place; returns `unet`.

        from ddpm_hf.fastpath import compile_network
        compile_network(pipe.unet)                  # then pipe(...) as usual, in any precision
        compile_network(pipe.unet, freezing=True)   # for sampling only: the fastest exact path on a CPU

    Every precision of `eps_model` then runs the compiled network: under bf16 autocast the casts are compiled in,
    and `"auto"` on CUDA records the compiled kernels in its CUDA graph. The module stays the same object (PyTorch's
    `nn.Module.compile`), so saving, loading state and `pipe.unet.config` are unaffected. Shapes are static by default
    (`dynamic=False`): each batch size, precision and layout compiles once, at its first call, which on a GPU takes
    tens of seconds to minutes (reported by benchmarks/bench_sampling.py). Inductor keeps its compiled kernels in a
    cache on disk (`TORCHINDUCTOR_CACHE_DIR`), so a later process compiles the same network faster.
    `compile_kwargs` go to `torch.compile` (`mode`, `backend`, `fullgraph`, `options`, `dynamic`).

    `freezing=True` compiles for inference (see `FrozenForInference`): calls without gradients (a pipeline's, under
    `torch.no_grad`) run a graph in which inductor has folded the weights in as constants (on CPUs, oneDNN's
    prepacked convolution and linear weights, reordered once instead of at every call, and residual additions fused
    into the convolutions); calls with gradients run eagerly, so training never sees frozen
    weights. On a CPU the frozen graph is not stored in inductor's FX graph cache (oneDNN's packed weights cannot be
    pickled), so each process pays most of the compile again; only the built C++ kernels are reused. Whether that
    pays is in docs/performance.md: on a 2-core CPU, for a 1000-step run, not for a 10-step one.

    For training, `accelerate launch --dynamo_backend inductor` compiles the network the same way (Accelerate's
    `torch.compile` of the prepared model), and `eps_model(..., training=True)` runs it.
    """
    compile_kwargs = {"dynamic": False, **compile_kwargs}
    if freezing:
        # nn.Module.__call__ runs `_compiled_call_impl` when set: the slot nn.Module.compile fills, so the module
        # stays the same object (its state dict, hooks and pickling unaffected) and every caller gets the graph.
        unet._compiled_call_impl = FrozenForInference(unet, **compile_kwargs)
    else:
        unet.compile(**compile_kwargs)
    return unet


class FrozenForInference:
    """`module`'s forward for inference, compiled with inductor's freezing; what `compile_network(...,
    freezing=True)` installs as the module's call.

    Without gradients (`torch.no_grad`, `torch.inference_mode`) a call runs `torch.compile(module)` with
    `torch._inductor.config.freezing` set while dynamo traces, which is what makes it take the parameters as
    constants: inductor folds them (convolution weights reordered once, for oneDNN, into channels_last) and drops
    them as graph inputs. (`torch.compile(options={"freezing": True})` alone sets it only for inductor's half, after
    dynamo has already lifted the parameters as inputs: nothing is frozen.) With gradients the call runs eagerly:
    a frozen graph has no gradient for the weights, and training must not read constants from an older step.

    The folded constants are copies, so a weight changed in place after freezing would go unseen; each call
    therefore checks the weights' storage and version counters (0.3 ms for the CIFAR-10 network's 328 tensors), and
    a change compiles the graph again (the compile cost once more, less what inductor's disk cache saves) with the
    weights as they are now. The weights are those the module held when frozen: after replacing a parameter object
    (`module.weight = ...`, `load_state_dict(..., assign=True)`) call `compile_network` again.
    """

    def __init__(self, module: torch.nn.Module, **compile_kwargs) -> None:
        self.module = module
        self.weights_version = 0
        # Gathered once: walking the module tree costs ~3 ms a call for the CIFAR-10 network, ~10× the check itself.
        self._weights = [*module.parameters(), *module.buffers()]
        self._fingerprint = self._weights_fingerprint()
        self._compiled = torch.compile(self._frozen_call, **compile_kwargs)

    def _weights_fingerprint(self) -> tuple[tuple[int, int], ...]:
        """Where each weight lives and how often it was written in place (load_state_dict, an optimizer step);
        inference tensors keep no version counter, and cannot be written outside inference mode anyway."""
        return tuple((t.data_ptr(), -1 if t.is_inference() else t._version) for t in self._weights)

    def _frozen_call(self, weights_version: int, *args, **kwargs):
        # Reading the version makes dynamo guard on its value, so new weights get a new graph: the parameters
        # themselves are guarded by identity only, which an in-place update keeps.
        if weights_version < 0:
            raise InputError(f"weights_version must be >= 0, got {weights_version}")
        return self.module._call_impl(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        if torch.is_grad_enabled():
            return self.module._call_impl(*args, **kwargs)
        fingerprint = self._weights_fingerprint()
        if fingerprint != self._fingerprint:
            self._fingerprint, self.weights_version = fingerprint, self.weights_version + 1
        with torch._inductor.config.patch(freezing=True):
            return self._compiled(self.weights_version, *args, **kwargs)


class GraphedFunction:
    """`fn(*inputs)` recorded once as a CUDA graph for these input shapes; a call copies its inputs in and replays.

    The returned tensor is the graph's own output buffer: the next call overwrites it, so use it before calling again.
    `fn` must not sync with the host (no `.item()`, no data-dependent shapes) and must allocate nothing that
    outlives it; under autocast it needs `cache_enabled=False`, since cached casts would live in the graph's pool.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], *example_inputs: torch.Tensor, warmup: int = 2) -> None:
        if any(x.device.type != "cuda" for x in example_inputs):
            raise InputError("CUDA graphs need CUDA tensors")
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

    def matches(self, *inputs: torch.Tensor) -> bool:
        """Whether `inputs` have the shapes, dtypes and devices the graph was recorded for."""
        described = [[(x.shape, x.dtype, x.device) for x in xs] for xs in (self.inputs, inputs)]
        return described[0] == described[1]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        for static, x in zip(self.inputs, inputs, strict=True):
            static.copy_(x)
        self.graph.replay()
        return self.output


class _RecordOnFirstCall:
    """`fn` replayed from a CUDA graph, recorded at the first call and again whenever the input shapes change."""

    def __init__(self, fn: EpsModel) -> None:
        self.fn, self.graph = fn, None

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.graph is None or not self.graph.matches(x_t, t):
            self.graph = GraphedFunction(self.fn, x_t, t)
        return self.graph(x_t, t)


@contextlib.contextmanager
def eps_model(
    unet: torch.nn.Module,
    precision: Precision = "fp32",
    *,
    device: torch.device | str | None = None,
    training: bool = False,
) -> Iterator[EpsModel]:
    """Within the block, ε_θ(x_t, t) → float32 ε̂ computed by `unet` the fastest way `precision` allows.

    - `"fp32"`: the network as it is, in its own dtype and layout: exact, what diffusers' `DDPMPipeline` computes.
    - `"bf16"`: bf16 autocast, with the weights moved to `memory_format(device)` (which changes no value).
    - `"auto"`: `"bf16"` where the device computes it natively (see `resolve_precision`), else `"fp32"`; on CUDA the
      network is also replayed from a CUDA graph (same kernels, without the launch gaps), except under accelerate's
      offload hooks, which move weights during the forward. A graphed ε̂ is overwritten by the next call.
    - `training=True`: inputs in the training layout and no autocast of ours (Accelerate's mixed precision wraps the
      forward). `unet` may then be DDP-wrapped, having been moved to `memory_format(device, training=True)` first.

    `device` is where the network runs (default: its parameters'; a pipeline passes its execution device).
    Autocast stays on for the whole block, so its cast weights are reused from one call to the next.
    A network passed through `compile_network` runs compiled in each of these modes (see there); one compiled with
    `freezing=True` runs compiled only without gradients, so `training=True` runs it eagerly.
    """
    first = next(unet.parameters())
    device = torch.device(device) if device is not None else first.device
    dtype = first.dtype  # read once: a model's `.dtype` walks every parameter
    resolved = resolve_precision(precision, device, dtype)
    if training and resolved != "fp32":
        raise InputError("in training the precision is Accelerate's (--mixed_precision); pass precision='fp32'")
    input_format = memory_format(device, training=True) if training else None
    graphed = precision == "auto" and device.type == "cuda" and not hasattr(unet, "_hf_hook")

    def forward(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = x_t.to(dtype) if input_format is None else x_t.to(dtype=dtype, memory_format=input_format)
        return unet(x, t).sample.float()

    if resolved == "fp32":
        yield forward
        return
    unet.to(memory_format=memory_format(device))  # a no-op once done
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=not graphed):
        yield _RecordOnFirstCall(forward) if graphed else forward
