"""Memory of a training step with `--gradient_checkpointing`, against diffusers' UNet2DModel as train_unconditional
runs it (no checkpointing): the step's peak memory above what the network and its inputs already hold (activations,
gradients, temporaries), and its time. Each side runs in a fresh process, so that neither inherits the other's
allocations: on CPU the peak is the process's maximum resident set, on CUDA the allocator's peak.

    python benchmarks/memory.py --model celebahq256 --batch_size 1 --resolution 128   # CPU: the 256 net at 128²
    python benchmarks/memory.py --device cuda --model celebahq256 --batch_size 16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys

import torch
from common import describe_device, rss_bytes, timed, twin_unets

SIDES = {"peer": "diffusers UNet2DModel", "ours": "ddpm_hf, --gradient_checkpointing"}


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Peak bytes above the starting point during two training steps (the first is the warm-up), and the second's
    seconds."""
    device = torch.device(args.device)
    ours, peer = twin_unets(args.model, torch.device("cpu"))
    if args.side == "ours":
        ours.enable_gradient_checkpointing()
    unet = ours if args.side == "ours" else peer
    del ours, peer
    unet.train().to(device, memory_format=torch.channels_last)
    size = args.resolution or unet.config.sample_size
    x = torch.randn(args.batch_size, unet.config.in_channels, size, size, device=device)
    t = torch.randint(0, 1000, (args.batch_size,), device=device)
    mode = torch.autocast(device.type, torch.bfloat16) if args.mixed_precision == "bf16" else contextlib.nullcontext()

    def step() -> None:
        with mode:
            loss = unet(x, t).sample.float().square().mean()
        loss.backward()
        unet.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        start = rss_bytes()
    step()
    seconds = timed(step, device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {"peak_bytes": peak - start, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="celebahq256")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=None, help="default: the network's sample_size")
    parser.add_argument("--mixed_precision", default="bf16", choices=["no", "bf16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)  # internal: one side, as JSON
    args = parser.parse_args()
    if args.side:
        print(json.dumps(measure(args)))
        return
    device = torch.device(args.device)
    at = f" at {args.resolution}²" if args.resolution else ""
    print(f"device: {describe_device(device)}; torch {torch.__version__}; network {args.model}{at}, "
          f"batch {args.batch_size}, {args.mixed_precision}")  # fmt: skip
    results = {}
    for side, name in SIDES.items():
        run = subprocess.run([sys.executable, *sys.argv, "--side", side], capture_output=True, text=True, check=True)
        results[side] = json.loads(run.stdout.strip().splitlines()[-1])
        peak, ms = results[side]["peak_bytes"] / 2**20, results[side]["seconds"] * 1e3
        print(f"{name:36s} step peak above the weights {peak:9.1f} MiB   step {ms:8.0f} ms", flush=True)
    ratio = results["ours"]["peak_bytes"] / results["peer"]["peak_bytes"]
    slower = results["ours"]["seconds"] / results["peer"]["seconds"]
    print(f"ours / diffusers: memory {ratio:.2f}×, time {slower:.2f}×")


if __name__ == "__main__":
    main()
