"""Progressive lossy coding (Sec. 4.3, Table 4, Fig. 5): rate and distortion along the reverse process.

python examples/rate_distortion.py --model runs/cifar10 --dataset_name cifar10 --split test --num_images 1000
python examples/rate_distortion.py --model runs/digits --dataset_name sklearn-digits --split train --num_images 64

Writes a CSV (reverse_step, timestep, rate_bpd, distortion_rmse) and a plot: distortion vs rate, and both vs
reverse step. Rate is L_T plus the KL terms of the x's received so far; distortion is the RMSE of x̂_0 on 0..255.
"""

from __future__ import annotations

import argparse
import csv

import matplotlib
import torch
from cli import (
    add_bound_arguments,
    add_data_arguments,
    add_model_arguments,
    add_output_arguments,
    load_images,
    load_pipeline,
    output_path,
)

from ddpm_hf.analysis import RateDistortion

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt


def plot(rd: RateDistortion, path: str) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.plot(rd.rate, rd.distortion)
    left.set(xlabel="rate (bits/dim)", ylabel="distortion (RMSE, 0..255)", title="distortion vs rate")
    right.plot(rd.reverse_steps, rd.rate, color="C0")
    right.set(xlabel="reverse steps (T - t)", title="along the reverse process")
    right.set_ylabel("rate (bits/dim)", color="C0")
    twin = right.twinx()
    twin.plot(rd.reverse_steps, rd.distortion, color="C1")
    twin.set_ylabel("distortion (RMSE, 0..255)", color="C1")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    add_data_arguments(parser)
    add_bound_arguments(parser)
    add_output_arguments(parser, "rate_distortion", output_csv="rate_distortion.csv", output_plot="rate_distortion.png")
    args = parser.parse_args(argv)

    pipe = load_pipeline(args)
    images = load_images(args, pipe, list(range(args.num_images)))
    rd = pipe.rate_distortion(images, generator=torch.Generator().manual_seed(args.seed), batch_size=args.batch_size)
    csv_path, plot_path = output_path(args, "output_csv"), output_path(args, "output_plot")
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["reverse_step", "timestep", "rate_bpd", "distortion_rmse"])
        writer.writerows(zip(rd.reverse_steps, rd.timesteps, rd.rate, rd.distortion, strict=True))
    plot(rd, plot_path)
    print(
        f"after all {rd.reverse_steps[-1]} steps: rate {rd.rate[-1]:.5f} bits/dim, distortion {rd.distortion[-1]:.5f} "
        f"RMSE; wrote {csv_path} and {plot_path}"
    )


if __name__ == "__main__":
    main()
