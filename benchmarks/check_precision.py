"""Does the fast path keep quality? bits/dim and samples of a trained model in fp32 and in `precision="auto"`.

    python benchmarks/check_precision.py --model runs/digits --num_images 64 --num_samples 200

Prints the mean bits/dim of `--num_images` training digits under both precisions (same noise), and the Fréchet
distance (in pixel space) between sample sets: fp32 vs fp32 with another seed — the yardstick — and fp32 vs the
fast path with that other seed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.data import ImageDataset, load_image_dataset
from ddpm_hf.evaluation import FIDStatistics, frechet_distance
from ddpm_hf.fastpath import resolve_precision


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
    args = parser.parse_args()

    pipe = DDPMPaperPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    fast = resolve_precision("auto", pipe.device, pipe.unet.dtype)
    print(f"precision='auto' resolves to {fast} here")
    ds, column = load_image_dataset(args.dataset_name)
    config = pipe.unet.config
    data = ImageDataset(ds, column, config.sample_size, config.in_channels)
    images = torch.stack([data[i] for i in range(args.num_images)])
    bpd = {}
    for precision in ("fp32", fast):
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(0)
        result = pipe.bits_per_dim(images, generator=gen, batch_size=args.bpd_batch_size, precision=precision)
        bpd[precision] = result.total.mean().item()
        print(
            f"bits/dim ({precision}): {bpd[precision]:.4f} ± {result.total.std().item() / args.num_images**0.5:.4f}"
            f"  ({time.perf_counter() - start:.0f} s)"
        )
    print(f"|Δ bits/dim| = {abs(bpd['fp32'] - bpd[fast]):.4f}")

    def samples(precision: str, seed: int) -> np.ndarray:
        # Per-image generators on the pipeline's device: CPU ones would cost a host draw per image and step on a GPU.
        gens = [torch.Generator(pipe.device).manual_seed(seed * 1_000_000 + i) for i in range(args.num_samples)]
        return pipe(batch_size=args.num_samples, generator=gens, output_type="np", precision=precision).images

    reference = pixel_statistics(samples("fp32", 0))
    fd_fp32 = frechet_distance(reference, pixel_statistics(samples("fp32", 1)))
    fd_fast = frechet_distance(reference, pixel_statistics(samples(fast, 1)))
    print(f"Fréchet distance (pixels), fp32 seed 0 vs fp32 seed 1: {fd_fp32:.4f}; vs {fast} seed 1: {fd_fast:.4f}")


if __name__ == "__main__":
    main()
