"""Interpolation (Sec. 4.3, Fig. 8): two dataset images diffused to step t, mixed linearly, decoded.

python examples/interpolate.py --model runs/celebahq --train_data_dir faces/ --index_a 0 --index_b 1 --t 500
python examples/interpolate.py --model runs/digits --dataset_name sklearn-digits --split train --t 250 --scale 8

Writes one row: source a, the `num` decoded interpolants (λ = 0 … 1), source b.
"""

from __future__ import annotations

import argparse

import torch
from cli import (
    add_data_arguments,
    add_model_arguments,
    add_output_arguments,
    load_images,
    load_pipeline,
    output_path,
    positive_int,
    save_grid,
)

from ddpm_hf.data import scale_to_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--index_a", type=int, default=0)
    parser.add_argument("--index_b", type=int, default=1)
    parser.add_argument("--t", type=int, default=500, help="diffusion timestep to interpolate at (0-based)")
    parser.add_argument("--num", type=int, default=8, help="interpolants, both ends included")
    parser.add_argument("--scale", type=positive_int, default=1, help="enlarge each image this many times")
    add_output_arguments(parser, "interpolate", output="interpolation.png")
    args = parser.parse_args(argv)

    pipe = load_pipeline(args)
    sources = load_images(args, pipe, [args.index_a, args.index_b])
    out = pipe.interpolate(
        sources[0], sources[1], t=args.t, num=args.num, generator=torch.Generator().manual_seed(args.seed)
    )
    x = scale_to_model(sources).to(out.images.device)
    row = torch.cat([x[:1], out.images, x[1:]])
    path = output_path(args, "output")
    save_grid(row, path, cols=len(row), scale=args.scale)
    print(f"wrote {path}: λ = {[round(v, 3) for v in out.lambdas.tolist()]} at t = {args.t}")


if __name__ == "__main__":
    main()
