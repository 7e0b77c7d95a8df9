"""Sampling speed of DDPMPaperPipeline against diffusers' DDPMPipeline: same weights, same run, alternating repeats.

    python benchmarks/bench_sampling.py --batch_size 8 --steps 20            # CPU, CIFAR-10 network
    python benchmarks/bench_sampling.py --device cuda --batch_size 256 --steps 1000
    python benchmarks/bench_sampling.py --device cuda --batch_size 256 --steps 100 --compiled auto

Each side runs `--steps` denoising steps per repeat; images/s is for the paper's 1000-step sampler
(batch / (1000 × seconds per step)). The peer runs with its defaults (fp32); ours once per `--precision` given
("auto" is the pipeline's default: bf16 autocast where native, plus a CUDA graph on CUDA), and once per
`--compiled` precision with a copy of the network passed through `ddpm_hf.fastpath.compile_network` (torch.compile,
inductor). Each side is warmed up with a 3-step call, so compilation, cuDNN's choices and the first graph recording
stay out of the timings (the warm-up's seconds are printed and kept in the JSON as `warmup_seconds`) but inside peak
memory. A pipeline call records its CUDA graph afresh (as every call of the pipeline does): a fixed cost per call,
so fewer steps than 1000 slightly overstate the per-step time.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import compare, compile_backend, paper_unet, report, twin_unets
from diffusers import DDPMPipeline, DDPMScheduler

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.fastpath import PRECISIONS, compile_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cifar10", help="a DDPMUNet2DModel.from_paper_config name")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="denoising steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", nargs="*", default=["auto"], choices=PRECISIONS, help="eager sides of ours")
    parser.add_argument("--compiled", nargs="*", default=[], choices=PRECISIONS, help="compiled sides of ours")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    device = torch.device(args.device)
    ours_unet, peer_unet = twin_unets(args.model, device)
    ours = DDPMPaperPipeline(unet=ours_unet.eval(), scheduler=DDPMPaperScheduler(variance_type="fixed_large"))
    peer = DDPMPipeline(unet=peer_unet.eval(), scheduler=DDPMScheduler(variance_type="fixed_large"))
    pipes = [ours, peer]
    if args.compiled:
        compiled_unet = paper_unet(args.model).to(device).eval()
        compiled_unet.load_state_dict(ours_unet.state_dict())
        compiled = DDPMPaperPipeline(unet=compiled_unet, scheduler=DDPMPaperScheduler(variance_type="fixed_large"))
        compile_network(compiled.unet, backend=compile_backend())
        pipes.append(compiled)
    for pipe in pipes:
        pipe.set_progress_bar_config(disable=True)

    def run(pipe, steps=args.steps, **kwargs):
        gen = torch.Generator(device).manual_seed(0)
        return lambda: pipe(
            batch_size=args.batch_size, generator=gen, num_inference_steps=steps, output_type="pt", **kwargs
        )

    sides = {"diffusers DDPMPipeline (fp32)": (peer, {})}
    sides.update({f"ddpm_hf ({p})": (ours, {"precision": p}) for p in args.precision})
    backend = "" if compile_backend() == "inductor" else f" by {compile_backend()}"
    sides.update({f"ddpm_hf ({p}, compiled{backend})": (compiled, {"precision": p}) for p in args.compiled})
    warmup = {}
    for name, (pipe, kwargs) in sides.items():
        start = time.perf_counter()
        run(pipe, steps=3, **kwargs)()
        warmup[name] = time.perf_counter() - start
        print(f"warm-up of {name} (3 steps, compilation included): {warmup[name]:.1f} s", flush=True)
    results = compare({name: run(pipe, **kwargs) for name, (pipe, kwargs) in sides.items()}, device, args.repeats, 0)
    for name, r in results.items():
        r["warmup_seconds"] = warmup[name]
    # Each call runs --steps denoising steps; images/s is that of the 1000-step sampler.
    report(args, device, results, args.batch_size * args.steps / 1000, "denoising step")


if __name__ == "__main__":
    main()
