"""Where the time goes: the costliest kernels of one training step and of one sampling step (`torch.profiler`), so
that each speed change is aimed. Not a peer comparison.

    python benchmarks/profile_steps.py --device cuda --batch_size 256 --train_batch_size 128 --out_dir prof/
    python benchmarks/profile_steps.py --device cuda --compiled ...     # the same steps through torch.compile

Training step: as `ddpm_hf.training` runs it (channels_last, `--mixed_precision` as bf16 autocast, L_simple through
`eps_model(training=True)`, clip 1.0, fused Adam, the EMA update). Sampling step: the network through
`eps_model(unet, precision)` plus the scheduler's update, once per `--sampling_precision` ("auto" replays a CUDA
graph on CUDA: the profiler then sees the graph's kernels, if the driver's tracer reports them, and one launch).
For each step: wall time, the summed time of its device kernels (their gaps are launch overhead), the kernel count,
the top kernels and the time by kind (convolution, GEMM, GroupNorm, element-wise, casts, ...). On a CPU the table
lists operators by CPU time instead. `--out_dir` receives profile.json, each step's table and its Chrome trace
(gzipped; open in https://ui.perfetto.dev).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import re
import shutil
import time
from pathlib import Path

import torch
from common import compile_backend, describe_device, paper_unet, toy
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from ddpm_hf import DDPMPaperScheduler
from ddpm_hf.fastpath import PRECISIONS, compile_network, eps_model, memory_format
from ddpm_hf.training.ema import EMA
from ddpm_hf.training.losses import diffusion_loss, make_loss
from ddpm_hf.training.optim import make_optimizer

# Kernel kinds by name, first match wins (cuDNN, cuBLAS/CUTLASS, PyTorch's and Triton's kernel names).
KINDS = [
    ("compiled (Triton)", r"^triton_|^triton\b"),
    ("layout transform", r"nchwToNhwc|nhwcToNchw|transpose|permute"),
    ("convolution", r"conv|implicit_gemm|fprop|dgrad|wgrad|xmma_|cudnn|winograd"),
    ("GEMM", r"gemm|cutlass|cublas|nvjet|sm90_|sm80_|ampere_|addmm|bmm|aten::mm|matmul|linear"),
    ("attention", r"flash|fmha|attention|mem_eff"),
    ("GroupNorm", r"group_norm|groupnorm|GroupNorm|RowwiseMoments|ComputeFusedParams|Welford|norm"),
    ("softmax", r"softmax"),
    ("optimizer / EMA / clip", r"adam|Adam|multi_tensor|foreach|lerp|FusedOptimizer"),
    ("cast / copy", r"copy|Copy|cast|convert|memcpy|Memcpy|memset|Memset"),
    ("reduction", r"reduce|Reduce|sum|norm"),
    ("element-wise", r"elementwise|vectorized|unrolled|pointwise|silu|SiLU|mul|add|div|exp|where|fill"),
]


def kind(name: str) -> str:
    return next((k for k, pattern in KINDS if re.search(pattern, name)), "other")


def summarize(prof, wall_ms: float, device: torch.device, top: int) -> dict:
    """Kernel (or, on CPU, top-level operator) times of one profiled step."""
    if device.type == "cuda":
        by_name: dict[str, list[float]] = {}
        for e in prof.events():
            if e.device_type == DeviceType.CUDA:
                by_name.setdefault(e.name, []).append(e.time_range.elapsed_us() / 1e3)
        rows = [{"name": n, "calls": len(v), "ms": sum(v)} for n, v in by_name.items()]
    else:  # no kernels: operators, by their own CPU time
        rows = [{"name": e.key, "calls": e.count, "ms": e.self_cpu_time_total / 1e3} for e in prof.key_averages()]
    rows.sort(key=lambda r: -r["ms"])
    total = sum(r["ms"] for r in rows)
    kinds: dict[str, float] = {}
    for r in rows:
        kinds[kind(r["name"])] = kinds.get(kind(r["name"]), 0.0) + r["ms"]
    count = sum(r["calls"] for r in rows)
    return {
        "wall_ms": wall_ms,
        "kernel_ms": total,
        "kernels": count,
        "top": rows[:top],
        "kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
    }


def print_summary(title: str, s: dict, device: torch.device) -> None:
    unit = "kernels" if device.type == "cuda" else "operators (CPU time)"
    busy = s["kernel_ms"] / s["wall_ms"] if s["wall_ms"] else float("nan")
    print(f"--- {title}: wall {s['wall_ms']:.2f} ms; {s['kernels']} {unit} summing to {s['kernel_ms']:.2f} ms "
          f"({busy:.0%} of the wall time)")  # fmt: skip
    print("    by kind: " + "; ".join(f"{k} {ms:.2f} ms ({ms / s['kernel_ms']:.0%})" for k, ms in s["kinds"].items()))
    for r in s["top"]:
        print(f"    {r['ms']:9.3f} ms {r['calls']:5d}×  {r['ms'] / s['kernel_ms']:6.1%}  {kind(r['name']):18s} "
              f"{r['name'][:110]}")  # fmt: skip


def profiled(fn, device: torch.device, warmup: int) -> tuple[profile, float]:
    """Profile one call of `fn` after `warmup` calls; returns the profile and the call's wall milliseconds."""
    for _ in range(warmup):
        fn()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        fn()
        sync()
        wall = (time.perf_counter() - start) * 1e3
    return prof, wall


def save(prof, out_dir: Path | None, name: str, device: torch.device) -> None:
    if out_dir is None:
        return
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    try:
        table = prof.key_averages().table(sort_by=key, row_limit=60, max_name_column_width=100)
    except (AttributeError, KeyError, ValueError):  # older PyTorch named it self_cuda_time_total
        table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=60, max_name_column_width=100)
    (out_dir / f"{name}.txt").write_text(table)
    trace = out_dir / f"{name}.trace.json"
    prof.export_chrome_trace(str(trace))
    with open(trace, "rb") as src, gzip.open(f"{trace}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    trace.unlink()


def profile_training(
    args, mixed_precision: str, device: torch.device, out_dir: Path | None, tag: str, results: dict
) -> dict:
    """One training step, as ddpm_hf.training's loop runs it; returns the network's weights."""
    unet = paper_unet(args.model).to(device)
    unet.train().to(memory_format=memory_format(device, training=True))
    model = torch.compile(unet, backend=compile_backend()) if args.compiled else unet  # as --dynamo_backend inductor
    scheduler = DDPMPaperScheduler()
    loss_fn = make_loss("simple", scheduler)
    opt = make_optimizer(unet.parameters(), 2e-4, (0.9, 0.999), 1e-8, device)
    ema = EMA(unet, 0.9999)
    size = unet.config.sample_size
    x_0 = torch.rand(args.train_batch_size, unet.config.in_channels, size, size, device=device) * 2 - 1
    noise, t = torch.randn_like(x_0), torch.randint(0, 1000, (args.train_batch_size,), device=device)
    amp = torch.autocast(device.type, torch.bfloat16) if mixed_precision == "bf16" else contextlib.nullcontext()

    def train_step() -> None:
        with eps_model(model, training=True, device=device) as eps:
            with amp:
                loss = diffusion_loss(eps, scheduler, loss_fn, x_0, t, noise).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            ema.update(unet)

    start = time.perf_counter()
    prof, wall = profiled(train_step, device, args.warmup)
    print(
        f"training ({mixed_precision}): {args.warmup} warm-up steps took "
        f"{time.perf_counter() - start - wall / 1e3:.1f} s",
        flush=True,
    )
    name = f"training_{mixed_precision}{tag}"
    results[name] = summarize(prof, wall, device, args.top)
    title = f"one training step, batch {args.train_batch_size}, {mixed_precision}{tag}"
    print_summary(title, results[name], device)
    save(prof, out_dir, name, device)
    return unet.state_dict()


def profile_sampling(args, device: torch.device, out_dir: Path | None, tag: str, results: dict, state: dict) -> None:
    """One sampling step per precision: ε_θ through eps_model, then the scheduler's update (x_{t-1} from x_t)."""
    unet = paper_unet(args.model).to(device).eval()
    unet.load_state_dict(state)
    if args.compiled:
        compile_network(unet, backend=compile_backend())
    scheduler = DDPMPaperScheduler()
    scheduler.set_timesteps(1000)
    size = unet.config.sample_size
    x = torch.randn(args.batch_size, unet.config.in_channels, size, size, device=device)
    gen = torch.Generator(device).manual_seed(0)
    timestep = torch.tensor(500, device=device)
    for precision in args.sampling_precision:
        with torch.no_grad(), eps_model(unet, precision, device=device) as eps:

            def sampling_step(eps=eps) -> None:
                scheduler.step(eps(x, timestep), 500, x, generator=gen)

            start = time.perf_counter()
            prof, wall = profiled(sampling_step, device, args.warmup)
            print(f"sampling ({precision}): {args.warmup} warm-up steps took "
                  f"{time.perf_counter() - start - wall / 1e3:.1f} s", flush=True)  # fmt: skip
        name = f"sampling_{precision}{tag}"
        results[name] = summarize(prof, wall, device, args.top)
        print_summary(f"one sampling step, batch {args.batch_size}, {precision!r}{tag}", results[name], device)
        save(prof, out_dir, name, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cifar10")
    parser.add_argument("--batch_size", type=int, default=8, help="sampling batch")
    parser.add_argument("--train_batch_size", type=int, default=8)
    parser.add_argument("--mixed_precision", nargs="+", default=["bf16"], choices=["no", "bf16"], help="training's")
    parser.add_argument("--sampling_precision", nargs="+", default=["bf16", "auto"], choices=PRECISIONS)
    parser.add_argument("--compiled", action="store_true", help="both networks through torch.compile (inductor)")
    parser.add_argument("--warmup", type=int, default=3, help="calls before the profiled one (compilation included)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out_dir", default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    tag = "_compiled" if args.compiled else ""
    compiled = f"; compiled ({compile_backend()})" if args.compiled else ""
    print(f"device: {describe_device(device)}; torch {torch.__version__}; network {args.model}"
          f"{' (toy size)' if toy() else ''}; training batch {args.train_batch_size} "
          f"({', '.join(args.mixed_precision)}), "
          f"sampling batch {args.batch_size}{compiled}")  # fmt: skip
    results = {}
    for mixed_precision in args.mixed_precision:
        state = profile_training(args, mixed_precision, device, out_dir, tag, results)
    profile_sampling(args, device, out_dir, tag, results, state)
    if out_dir:
        summary = {"args": vars(args), "device": describe_device(device), "torch": torch.__version__, "toy": toy()}
        (out_dir / f"profile{tag}.json").write_text(json.dumps({**summary, "steps": results}, indent=2))


if __name__ == "__main__":
    main()
