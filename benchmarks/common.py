"""Shared by the benchmarks: the same weights for both sides, timing with alternating repeats, peak memory.

`DDPM_BENCH_TOY=1` in the environment builds every paper network at toy size (two levels of 32 channels, the same
blocks), and `DDPM_BENCH_COMPILE_BACKEND=aot_eager` traces the compiled sides without building kernels (inductor's
C++ build takes minutes on a small CPU): both for dry runs of the scripts, e.g. `DEVICE=cpu bash
benchmarks/gpu_check.sh`, never for figures.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable

import torch
from diffusers import UNet2DModel

from ddpm_hf import DDPMUNet2DModel

TOY = {  # DDPM_BENCH_TOY=1: the paper's blocks at toy size
    "block_out_channels": (32, 32),
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
    "layers_per_block": 1,
    "norm_num_groups": 8,
}


def toy() -> bool:
    return os.environ.get("DDPM_BENCH_TOY") == "1"


def compile_backend() -> str:
    """torch.compile's backend for the compiled sides: inductor, unless DDPM_BENCH_COMPILE_BACKEND says otherwise."""
    return os.environ.get("DDPM_BENCH_COMPILE_BACKEND", "inductor")


def paper_unet(name: str, **overrides) -> DDPMUNet2DModel:
    """`DDPMUNet2DModel.from_paper_config(name)`, at toy size under DDPM_BENCH_TOY=1."""
    return DDPMUNet2DModel.from_paper_config(name, **({**TOY, **overrides} if toy() else overrides))


def twin_unets(name: str, device: torch.device, **overrides) -> tuple[DDPMUNet2DModel, UNet2DModel]:
    """The paper network and a vanilla diffusers UNet2DModel holding identical weights."""
    ours = paper_unet(name, **overrides)
    peer = UNet2DModel.from_config(ours.config)
    peer.load_state_dict(ours.state_dict())
    return ours.to(device), peer.to(device)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name} CPU, {torch.get_num_threads()} threads"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakMemory:
    """Peak memory during a block: CUDA's allocator peak, or the process's resident set sampled every 2 ms on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak = device, 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._stop, self.peak = threading.Event(), rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def compare(
    sides: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int = 1
) -> dict[str, dict[str, float]]:
    """Median seconds per call and peak memory of each side, repeats alternating between the sides; the seconds of
    each side's `warmup` calls (compilation, cuDNN's choices, graph recording) are reported as `warmup_seconds`."""
    warmup_seconds = {name: sum(timed(fn, device) for _ in range(warmup)) for name, fn in sides.items()}
    times: dict[str, list[float]] = {name: [] for name in sides}
    peaks: dict[str, int] = dict.fromkeys(sides, 0)
    for _ in range(repeats):
        for name, fn in sides.items():
            with PeakMemory(device) as mem:
                times[name].append(timed(fn, device))
            peaks[name] = max(peaks[name], mem.peak)
    medians = {name: statistics.median(times[name]) for name in sides}
    return {
        name: {"seconds": medians[name], "peak_bytes": peaks[name], "warmup_seconds": warmup_seconds[name]}
        for name in sides
    }


def report(args, device: torch.device, results: dict[str, dict[str, float]], images_per_call: float, unit: str) -> None:
    """Print each side's time per `unit`, images/s, peak memory and speed-up over the first side (the peer)."""
    size = " (toy size: DDPM_BENCH_TOY=1)" if toy() else ""
    print(
        f"device: {describe_device(device)}; torch {torch.__version__}; network {args.model}{size}, "
        f"batch {args.batch_size}"
    )
    rates = {name: images_per_call / r["seconds"] for name, r in results.items()}
    peer_rate = next(iter(rates.values()))
    for name, r in results.items():
        print(
            f"{name:36s} {r['seconds'] / args.steps * 1e3:9.1f} ms/{unit}  {rates[name]:10.4f} images/s  "
            f"peak {r['peak_bytes'] / 2**20:8.0f} MiB  {rates[name] / peer_rate:5.2f}×"
        )
    print(f"speed-up (ours / diffusers): {rates[name] / peer_rate:.2f}×  (last row over the first)")
    if args.json:
        summary = {
            "args": vars(args),
            "device": describe_device(device),
            "torch": torch.__version__,
            "toy": toy(),
            "results": results,
            "images_per_s": rates,
        }
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
