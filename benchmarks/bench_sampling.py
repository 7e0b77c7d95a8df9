"""Sampling speed of DDPMPaperPipeline against diffusers' DDPMPipeline: same weights, same run, alternating repeats.

    python benchmarks/bench_sampling.py --batch_size 8 --steps 20            # CPU, CIFAR-10 network
    python benchmarks/bench_sampling.py --device cuda --batch_size 256 --steps 1000

Each side runs `--steps` denoising steps per repeat; images/s is for the paper's 1000-step sampler
(batch / (1000 × seconds per step)). The peer runs with its defaults (fp32); ours once per `--precision` given
("auto" is the pipeline's default: bf16 autocast where native, plus a CUDA graph on CUDA). `--compile` puts our
network through torch.compile first, the diffusers way (`pipe.unet = torch.compile(pipe.unet)`). Each side is
warmed up with a 3-step call, so compilation, cuDNN's and the graph's set-up stay out of the timings (the warm-up
time is printed) but inside peak memory.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import compare, report, twin_unets
from diffusers import DDPMPipeline, DDPMScheduler

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cifar10", help="a DDPMUNet2DModel.from_paper_config name")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="denoising steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile our network (inductor)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    device = torch.device(args.device)
    ours_unet, peer_unet = twin_unets(args.model, device)
    ours = DDPMPaperPipeline(unet=ours_unet.eval(), scheduler=DDPMPaperScheduler(variance_type="fixed_large"))
    peer = DDPMPipeline(unet=peer_unet.eval(), scheduler=DDPMScheduler(variance_type="fixed_large"))
    for pipe in (ours, peer):
        pipe.set_progress_bar_config(disable=True)
    if args.compile:
        ours.unet = torch.compile(ours.unet)

    def run(pipe, steps=args.steps, **kwargs):
        gen = torch.Generator(device).manual_seed(0)
        return lambda: pipe(
            batch_size=args.batch_size, generator=gen, num_inference_steps=steps, output_type="pt", **kwargs
        )

    sides = {"diffusers DDPMPipeline (fp32)": (peer, {})}
    compiled = ", compiled" if args.compile else ""
    sides.update({f"ddpm_hf ({p}{compiled})": (ours, {"precision": p}) for p in args.precision})
    for name, (pipe, kwargs) in sides.items():
        start = time.perf_counter()
        run(pipe, steps=3, **kwargs)()
        print(f"warm-up of {name}: {time.perf_counter() - start:.1f} s")
    results = compare({name: run(pipe, **kwargs) for name, (pipe, kwargs) in sides.items()}, device, args.repeats, 0)
    # Each call runs --steps denoising steps; images/s is that of the 1000-step sampler.
    report(args, device, results, args.batch_size * args.steps / 1000, "denoising step")


if __name__ == "__main__":
    main()
