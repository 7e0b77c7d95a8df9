"""Memory and time of a training step with `--gradient_checkpointing`, against diffusers' UNet2DModel as
train_unconditional runs it (no checkpointing): the step's peak memory above what the network and its inputs already
hold (activations, gradients, temporaries; with `--optimizer`, Adam's state too), and its time. Each side runs in a
fresh process, so that neither inherits the other's allocations: on CPU the peak is the process's maximum resident
set, on CUDA the allocator's peak.

    python benchmarks/memory.py --model celebahq256 --batch_size 1 --resolution 128   # CPU: the 256 net at 128²
    python benchmarks/memory.py --device cuda --model celebahq256 --batch_size 64 --optimizer \\
        --sides peer peer-ckpt ours ours-ckpt --peer_mixed_precision no --peer_layout nchw --accumulate_on_oom

Sides: `peer` (diffusers' UNet2DModel), `peer-ckpt` (the same with diffusers' own gradient checkpointing), `ours`
(DDPMUNet2DModel) and `ours-ckpt` (with `--gradient_checkpointing`). Ours trains as `ddpm_hf.training` does
(channels_last, bf16 autocast with `--mixed_precision bf16`, fused Adam where the device has it); the peer in
`--peer_layout` and `--peer_mixed_precision` (default: the same as ours), AdamW. With `--accumulate_on_oom` a side that
runs out of GPU memory is run again in 2, 4, ... micro-batches (gradient accumulation, as train_unconditional's
`--gradient_accumulation_steps`), and the step's time is that of the whole batch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys

import torch
from common import describe_device, rss_bytes, timed, toy, twin_unets

SIDES = {
    "peer": "diffusers UNet2DModel",
    "peer-ckpt": "diffusers UNet2DModel, checkpointing",
    "ours": "ddpm_hf",
    "ours-ckpt": "ddpm_hf, --gradient_checkpointing",
}
LAYOUTS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Peak bytes above the starting point during a warm-up step and `--steps` timed steps, and their median seconds."""
    device = torch.device(args.device)
    ours, peer = twin_unets(args.model, torch.device("cpu"))
    unet = ours if args.side.startswith("ours") else peer
    del ours, peer
    if args.side.endswith("-ckpt"):
        unet.enable_gradient_checkpointing()
    is_peer = args.side.startswith("peer")
    layout = LAYOUTS[args.peer_layout] if is_peer else torch.channels_last
    unet.train().to(device, memory_format=layout)
    size = args.resolution or unet.config.sample_size
    x = torch.randn(args.batch_size, unet.config.in_channels, size, size, device=device)
    x = x.contiguous(memory_format=layout)
    t = torch.randint(0, 1000, (args.batch_size,), device=device)
    precision = (args.peer_mixed_precision or args.mixed_precision) if is_peer else args.mixed_precision
    mode = torch.autocast(device.type, torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    opt = None
    if args.optimizer:
        from ddpm_hf.training.optim import make_optimizer

        if is_peer:  # train_unconditional's AdamW
            opt = torch.optim.AdamW(unet.parameters(), lr=2e-5, weight_decay=1e-6)
        else:
            opt = make_optimizer(unet.parameters(), 2e-5, (0.9, 0.999), 1e-8, device)

    def step() -> None:
        for xs, ts in zip(x.chunk(args.micro_batches), t.chunk(args.micro_batches), strict=True):
            with mode:
                loss = unet(xs, ts).sample.float().square().mean() / args.micro_batches
            loss.backward()
        if opt is not None:
            opt.step()
        unet.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        start = rss_bytes()
    try:
        step()
        seconds = statistics.median(timed(step, device) for _ in range(args.steps))
    except torch.cuda.OutOfMemoryError:
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
        return {"oom": True, "peak_bytes": peak - start, "micro_batches": args.micro_batches, "precision": precision}
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {"peak_bytes": peak - start, "seconds": seconds, "micro_batches": args.micro_batches, "precision": precision}


def run_side(side: str, micro_batches: int) -> dict:
    argv = [sys.executable, *sys.argv, "--side", side, "--micro_batches", str(micro_batches)]
    run = subprocess.run(argv, capture_output=True, text=True)
    if run.returncode != 0:
        tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail)[-400:], "micro_batches": micro_batches}
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="celebahq256")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=None, help="default: the network's sample_size")
    parser.add_argument("--mixed_precision", default="bf16", choices=["no", "bf16"])
    parser.add_argument("--peer_mixed_precision", default=None, choices=["no", "bf16"], help="default: as ours")
    parser.add_argument("--peer_layout", default="channels_last", choices=sorted(LAYOUTS))
    parser.add_argument("--sides", nargs="+", default=["peer", "ours-ckpt"], choices=sorted(SIDES))
    parser.add_argument("--optimizer", action="store_true", help="include the optimizer's step and state")
    parser.add_argument("--steps", type=int, default=1, help="timed steps after the warm-up step (median)")
    parser.add_argument("--accumulate_on_oom", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)  # internal: one side, as JSON
    parser.add_argument("--micro_batches", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(measure(args)))
        return
    device = torch.device(args.device)
    at = f" at {args.resolution}²" if args.resolution else ""
    size = " (toy size)" if toy() else ""
    peer = args.peer_mixed_precision or args.mixed_precision
    print(f"device: {describe_device(device)}; torch {torch.__version__}; network {args.model}{size}{at}, "
          f"batch {args.batch_size}; ours {args.mixed_precision}, peer {peer} ({args.peer_layout}); "
          f"optimizer {'included' if args.optimizer else 'not included'}")  # fmt: skip
    results = {}
    for side in args.sides:
        micro = 1
        result = run_side(side, micro)
        tried = []
        while result.get("oom") and args.accumulate_on_oom and micro * 2 <= args.batch_size:
            tried.append(micro)
            micro *= 2
            print(f"{SIDES[side]:40s} out of memory at micro-batch {args.batch_size // (micro // 2)}", flush=True)
            result = run_side(side, micro)
        result["oom_at_micro_batches"] = tried
        results[side] = result
        if "seconds" in result:
            peak, ms = result["peak_bytes"] / 2**20, result["seconds"] * 1e3
            accumulated = f" ({micro} micro-batches)" if micro > 1 else ""
            print(f"{SIDES[side]:40s} step peak above the weights {peak:9.1f} MiB   step {ms:8.0f} ms{accumulated}",
                  flush=True)  # fmt: skip
        else:
            print(f"{SIDES[side]:40s} {'out of memory' if result.get('oom') else result.get('error')}", flush=True)
    done = {s: r for s, r in results.items() if "seconds" in r}
    peers = [s for s in ("peer", "peer-ckpt") if s in done]
    for side in (s for s in ("ours", "ours-ckpt") if s in done):
        for p in peers:
            memory = done[side]["peak_bytes"] / done[p]["peak_bytes"]
            speed = done[p]["seconds"] / done[side]["seconds"]
            print(f"ours / diffusers: memory {memory:.2f}×, time {1 / speed:.2f}× (speed {speed:.2f}×; {side} vs {p})")
    if args.json:
        summary = {"args": vars(args), "device": describe_device(device), "torch": torch.__version__, "toy": toy()}
        with open(args.json, "w") as f:
            json.dump({**summary, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
