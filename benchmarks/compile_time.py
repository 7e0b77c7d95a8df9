"""How long `fastpath.compile_network` takes before the first image: the first pipeline call of a compiled network
against the next one, in a fresh process. Run it after a process that compiled the same network at the same batch
and precision (bench_sampling.py --compiled, with the same TORCHINDUCTOR_CACHE_DIR) to see what inductor's cache on
disk saves; run it first to see a cold compile.

    TORCHINDUCTOR_CACHE_DIR=/tmp/inductor python benchmarks/compile_time.py --device cuda --batch_size 256
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from common import compile_backend, describe_device, paper_unet, timed, toy

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.fastpath import PRECISIONS, compile_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cifar10")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="denoising steps per call")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "inductor's default (/tmp/torchinductor_$USER)")
    files = sum(1 for _ in Path(cache).rglob("*")) if Path(cache).is_dir() else 0
    unet = compile_network(paper_unet(args.model).to(device).eval(), backend=compile_backend())
    pipe = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler())
    pipe.set_progress_bar_config(disable=True)

    def call() -> None:
        gen = torch.Generator(device).manual_seed(0)
        pipe(args.batch_size, gen, args.steps, output_type="pt", precision=args.precision)

    start = time.perf_counter()
    first = timed(call, device)
    second = timed(call, device)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; network {args.model}"
          f"{' (toy size)' if toy() else ''}, batch {args.batch_size}, precision {args.precision!r}, "
          f"backend {compile_backend()}; "
          f"inductor cache {cache} ({files} files before)")  # fmt: skip
    print(f"first call {first:.1f} s, second {second:.2f} s: compilation ≈ {first - second:.1f} s "
          f"({time.perf_counter() - start:.0f} s in all)")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            summary = {"args": vars(args), "cache_files_before": files, "first_s": first, "second_s": second}
            json.dump({**summary, "compile_s": first - second}, f, indent=2)


if __name__ == "__main__":
    main()
