"""Does the fast path keep quality? bits/dim and samples of a trained model in fp32 and in `precision="auto"`.

    python benchmarks/check_precision.py --model runs/digits --num_images 64 --num_samples 200

Prints the mean bits/dim of `--num_images` training digits under both precisions (same noise), and the Fréchet
distance (in pixel space) between sample sets: fp32 vs fp32 with another seed — the yardstick — and fp32 vs the
fast path with that other seed. `--compile` runs the fast path's network through `fastpath.compile_network`
(the fp32 reference stays eager); `--json` also writes the figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.data import ImageDataset, load_image_dataset
from ddpm_hf.evaluation import FIDStatistics, frechet_distance
from ddpm_hf.fastpath import compile_network, resolve_precision


def pixel_statistics(images: np.ndarray) -> FIDStatistics:
    flat = images.reshape(len(images), -1).astype(np.float64)
    return FIDStatistics(flat.mean(0), np.cov(flat, rowvar=False), len(images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset_name", default="sklearn-digits")
    parser.add_argument("--num_images", type=int, default=64)
    parser.add_argument("--num_samples", type=int, default=200)
    parser.add_argument("--bpd_batch_size", type=int, default=1024)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="the fast path's network through torch.compile")
    parser.add_argument("--sample_steps", type=int, default=1000, help="denoising steps of the sample sets")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    pipe = DDPMPaperPipeline.from_pretrained(args.model).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    fast = resolve_precision("auto", pipe.device, pipe.unet.dtype)
    print(f"precision='auto' resolves to {fast} here{' (network compiled)' if args.compile else ''}")
    fast_pipe = pipe
    if args.compile:
        fast_pipe = DDPMPaperPipeline(unet=compile_network(copy.deepcopy(pipe.unet)), scheduler=pipe.scheduler)
        fast_pipe.set_progress_bar_config(disable=True)
    sides = {"fp32": (pipe, "fp32"), "fast": (fast_pipe, fast)}  # (pipeline, precision)
    ds, column = load_image_dataset(args.dataset_name)
    config = pipe.unet.config
    data = ImageDataset(ds, column, config.sample_size, config.in_channels)
    images = torch.stack([data[i] for i in range(args.num_images)])
    bpd = {}
    for side, (p, precision) in sides.items():
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(0)
        result = p.bits_per_dim(images, generator=gen, batch_size=args.bpd_batch_size, precision=precision)
        bpd[side] = result.total.mean().item()
        print(
            f"bits/dim ({precision}{', compiled' if p is not pipe else ''}): {bpd[side]:.4f} ± "
            f"{result.total.std().item() / args.num_images**0.5:.4f}  ({time.perf_counter() - start:.0f} s)"
        )
    print(f"|Δ bits/dim| = {abs(bpd['fp32'] - bpd['fast']):.4f}")

    def samples(side: str, seed: int) -> np.ndarray:
        # Per-image generators on the pipeline's device: CPU ones would cost a host draw per image and step on a GPU.
        gens = [torch.Generator(pipe.device).manual_seed(seed * 1_000_000 + i) for i in range(args.num_samples)]
        p, precision = sides[side]
        kwargs = {"num_inference_steps": args.sample_steps, "output_type": "np", "precision": precision}
        return p(batch_size=args.num_samples, generator=gens, **kwargs).images

    reference = pixel_statistics(samples("fp32", 0))
    fd_fp32 = frechet_distance(reference, pixel_statistics(samples("fp32", 1)))
    fd_fast = frechet_distance(reference, pixel_statistics(samples("fast", 1)))
    print(f"Fréchet distance (pixels), fp32 seed 0 vs fp32 seed 1: {fd_fp32:.4f}; vs {fast} seed 1: {fd_fast:.4f}")
    if args.json:
        figures = {"fast_precision": fast, "compiled": args.compile, "bits_per_dim": bpd, "fd_fp32_seed1": fd_fp32}
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), **figures, "fd_fast_seed1": fd_fast}, f, indent=2)


if __name__ == "__main__":
    main()
