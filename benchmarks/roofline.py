"""How fast can bf16 be here? The device's matrix-multiply rate in fp32 and bf16, against the rate the CIFAR-10
U-Net reaches in each: when the network already runs near the bf16 peak, no switch of ours can beat fp32 by more than
the hardware's bf16/fp32 ratio. Not a peer comparison: the ceiling behind the ratios bench_*.py print.

    python benchmarks/roofline.py                    # CPU, batch 8 forward
    python benchmarks/roofline.py --device cuda --batch_size 256
"""

from __future__ import annotations

import argparse
import contextlib

import torch
from common import describe_device, paper_unet, timed

from ddpm_hf.fastpath import memory_format

GFLOP_PER_IMAGE = 12.1  # one forward of the CIFAR-10 network (multiply-adds × 2)


def matmul_tflops(n: int, dtype: torch.dtype, device: torch.device, calls: int) -> float:
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    torch.mm(a, b)
    seconds = min(timed(lambda: [torch.mm(a, b) for _ in range(calls)], device) for _ in range(3))
    return 2 * n**3 * calls / seconds / 1e12


def forward_tflops(unet, precision: str, batch: int, device: torch.device, calls: int) -> float:
    fmt = memory_format(device)  # the layout the pipeline samples in
    unet.to(memory_format=fmt)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    t = torch.full((batch,), 500, device=device)
    mode = torch.autocast(device.type, torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    with torch.inference_mode(), mode:
        unet(x, t)
        seconds = min(timed(lambda: [unet(x, t) for _ in range(calls)], device) for _ in range(3))
    return GFLOP_PER_IMAGE * batch * calls / seconds / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--matmul_size", type=int, default=2048)
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 matmul peak; cuDNN convs keep TF32, as the peer's do
    print(f"device: {describe_device(device)}; torch {torch.__version__}")
    unet = paper_unet("cifar10").to(device).eval()
    rows = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak = matmul_tflops(args.matmul_size, dtype, device, args.calls)
        net = forward_tflops(unet, name, args.batch_size, device, args.calls)
        rows[name] = (peak, net)
        forward = f"U-Net forward, batch {args.batch_size}: {net * 1e3:8.1f} GFLOP/s ({net / peak:.0%} of that peak)"
        print(f"{name}: matmul {args.matmul_size}³ {peak * 1e3:8.1f} GFLOP/s   {forward}")
    ratios = [rows["bf16"][i] / rows["fp32"][i] for i in (0, 1)]
    print(f"bf16 / fp32: matmul peak {ratios[0]:.2f}×, U-Net forward {ratios[1]:.2f}×")


if __name__ == "__main__":
    main()
