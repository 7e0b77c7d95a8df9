"""Progressive generation (Fig. 1, Fig. 6): the prediction x̂_0 along the reverse process, as one PNG grid.

python examples/progressive.py --model runs/cifar10 --num_images 8 --every 100 --output progressive.png
python examples/progressive.py --model runs/digits --with_xt --scale 8   # add the x_t rows, enlarge small images

Rows are images (with --with_xt, each image's x_t row above its x̂_0 row); columns are t = T - every, …, 0.
"""

from __future__ import annotations

import argparse

import torch
from cli import add_model_arguments, add_output_arguments, load_pipeline, output_path, positive_int, save_grid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--num_images", type=positive_int, default=4)
    parser.add_argument("--every", type=int, default=100, help="record x̂_0 at every t divisible by this")
    parser.add_argument("--with_xt", action="store_true", help="also show the x_t each x̂_0 was predicted from")
    parser.add_argument("--scale", type=positive_int, default=1, help="enlarge each image this many times")
    add_output_arguments(parser, "progressive", output="progressive.png")
    args = parser.parse_args(argv)

    pipe = load_pipeline(args)
    generators = [torch.Generator().manual_seed(args.seed + i) for i in range(args.num_images)]
    run = pipe.progressive(args.num_images, every=args.every, generator=generators, return_xt=args.with_xt)
    rows = []
    for i in range(args.num_images):
        if args.with_xt:
            rows.append(run.x_t[i])
        rows.append(run.pred_xstart[i])
    path = output_path(args, "output")
    save_grid(torch.cat(rows), path, cols=len(run.timesteps), scale=args.scale)
    print(f"wrote {path}: x̂_0 at t = {run.timesteps}")


if __name__ == "__main__":
    main()
