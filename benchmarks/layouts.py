"""Which memory format and precision run the CIFAR-10 U-Net fastest here? Not a peer comparison: the evidence
behind `ddpm_hf.fastpath.memory_format`. Times one forward (sampling, eager and CUDA-graphed) and one
training step (forward, backward, fused Adam) for NCHW / channels_last × fp32 / bf16 autocast / bf16 autocast
with GroupNorm kept in bf16 ("bf16-gn"), then lists the costliest kernels of the bf16 forward in each layout;
`--compile` adds torch.compile for the forward.

    python benchmarks/layouts.py --device cuda --batch_size 256 --train_batch_size 128 --compile
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from common import describe_device, paper_unet, timed

from ddpm_hf.fastpath import GraphedFunction

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def median_ms(fn, device: torch.device, calls: int, repeats: int = 3) -> float:
    fn()
    return statistics.median(timed(lambda: [fn() for _ in range(calls)], device) for _ in range(repeats)) / calls * 1e3


def autocast(device: torch.device, precision: str, cache: bool = True) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    mode = torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return _bf16_group_norm(mode) if precision == "bf16-gn" else mode


@contextlib.contextmanager
def _bf16_group_norm(mode: contextlib.AbstractContextManager):
    """An experiment: CUDA autocast runs GroupNorm in fp32 (a cast kernel before, fp32 traffic after, through SiLU);
    here it runs on the bf16 activations (PyTorch's kernel accumulates in fp32 anyway). CPU autocast already does."""
    original = torch.nn.GroupNorm.forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            w, b = self.weight.to(x.dtype), self.bias.to(x.dtype)
            return torch.nn.functional.group_norm(x, self.num_groups, w, b, self.eps)

    torch.nn.GroupNorm.forward = forward
    try:
        with mode:
            yield
    finally:
        torch.nn.GroupNorm.forward = original


def measure(unet, fmt, precision: str, args, device: torch.device) -> tuple[float, float, float]:
    """Milliseconds per forward (eager, CUDA-graphed) at --batch_size and per training step at --train_batch_size."""
    unet.to(memory_format=fmt)
    t = torch.full((), 500, device=device)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    unet.eval()
    with torch.no_grad(), autocast(device, precision):
        eager = median_ms(lambda: unet(x, t).sample, device, args.calls)
    graphed = float("nan")
    if device.type == "cuda":
        with torch.no_grad(), autocast(device, precision, cache=False):
            graph = GraphedFunction(lambda x, t: unet(x, t).sample.float(), x, t)
            graphed = median_ms(lambda: graph(x, t), device, args.calls)
    x_train = torch.randn(args.train_batch_size, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    t_train = torch.randint(0, 1000, (args.train_batch_size,), device=device)
    unet.train()
    # A fresh optimizer: fused Adam wants its state in the parameters' (new) memory format.
    opt = torch.optim.Adam(unet.parameters(), lr=1e-6, fused=device.type == "cuda")

    def train_step() -> None:
        with autocast(device, precision):
            loss = unet(x_train, t_train).sample.float().square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return eager, graphed, median_ms(train_step, device, args.calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=8, help="sampling batch")
    parser.add_argument("--train_batch_size", type=int, default=8)
    parser.add_argument("--calls", type=int, default=5, help="forwards or steps per timed repeat")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"device: {describe_device(device)}; torch {torch.__version__}; sampling batch {args.batch_size}, "
        f"training batch {args.train_batch_size}"
    )
    unet = paper_unet("cifar10").to(device)
    t = torch.full((), 500, device=device)
    for name, fmt in FORMATS.items():
        for precision in ("fp32", "bf16", "bf16-gn"):
            eager, graphed, step = measure(unet, fmt, precision, args, device)
            print(
                f"{name:14s} {precision:7s}: forward {eager:8.2f} ms eager, {graphed:8.2f} ms graphed "
                f"({args.batch_size / graphed:7.2f} img/s at 1000 steps); training step {step:8.2f} ms "
                f"({args.train_batch_size / step * 1e3:7.0f} img/s)",
                flush=True,
            )
    if device.type == "cuda":
        unet.eval()
        for name, fmt in FORMATS.items():
            unet.to(memory_format=fmt)
            x = torch.randn(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=fmt)
            with (
                torch.no_grad(),
                autocast(device, "bf16"),
                torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof,
            ):
                unet(x, t)
                torch.cuda.synchronize()
            print(f"--- bf16 forward, {name}: costliest kernels")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=70))
    if args.compile:
        unet.eval().to(memory_format=torch.contiguous_format)
        x = torch.randn(args.batch_size, 3, 32, 32, device=device)
        compiled = torch.compile(unet)
        start = time.perf_counter()
        with torch.no_grad(), autocast(device, "bf16", cache=False):
            compiled(x, t)
            print(f"torch.compile: first call {time.perf_counter() - start:.0f} s", flush=True)
            eager = median_ms(lambda: compiled(x, t).sample, device, args.calls)
            graphed = float("nan")
            if device.type == "cuda":
                graph = GraphedFunction(lambda x, t: compiled(x, t).sample.float(), x, t)
                graphed = median_ms(lambda: graph(x, t), device, args.calls)
        print(f"compiled nchw bf16: forward {eager:8.2f} ms, {graphed:8.2f} ms graphed")


if __name__ == "__main__":
    main()
