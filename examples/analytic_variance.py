"""The optimal reverse variance of Analytic-DPM (Bao et al., ICLR 2022) for a trained pipeline, in one command:
estimate Γ_t = E‖ε_θ(x_t, t)‖²/d on training images and write a pipeline folder that samples and bounds with it.

python examples/analytic_variance.py --model runs/digits --dataset_name sklearn-digits --output_dir runs/digits-analytic
accelerate launch --multi_gpu --num_processes 8 examples/analytic_variance.py --model runs/cifar10 \\
    --dataset_name ../shared/data/cifar10 --num_images 10000 --output_dir runs/cifar10-analytic

The folder loads like any other (`DDPMPaperPipeline.from_pretrained(OUTPUT_DIR)`): the same weights, with
`DDPMPaperScheduler(variance_type="analytic")` carrying Γ in its config, for the full chain and every respaced step
count. Beside it: the model card, gamma.json (Γ_t, its standard error and the network's ε error per timestep),
gamma.png (Γ_t, and the three variances of a few chains) and samples.png (--grid_size samples, --grid_steps steps).
Image i's noise comes from a generator seeded seed + i, so Γ is the same on any number of processes; per-image values
are kept in OUTPUT_DIR/gamma/, and the same command after a crash measures only the missing images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
import torch
from cli import add_data_arguments, add_model_arguments, add_output_arguments, non_negative_int, positive_int, save_grid

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.analytic import GammaEstimate, variance_curves
from ddpm_hf.card import rerender_card
from ddpm_hf.evaluation import EvaluationError, StoreMismatchError, estimate_analytic_variance
from ddpm_hf.evaluation.analytic import GammaSettings
from ddpm_hf.settings import add_arguments, pick

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt

SAMPLES = "samples.png"


def plot(pipe: DDPMPaperPipeline, estimate: GammaEstimate, path: Path, steps: tuple[int | None, ...]) -> None:
    """Γ_t ± 2 s.e. with the network's 1 - E‖ε_θ - ε‖²/d, and σ_t² (β, β̃, σ*²) of the full and respaced chains."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    t = np.asarray(estimate.timesteps)
    left.fill_between(t, estimate.gamma - 2 * estimate.stderr, estimate.gamma + 2 * estimate.stderr, alpha=0.3)
    left.plot(t, estimate.gamma, label="Γ_t = E‖ε_θ‖²/d (± 2 s.e.)")
    left.plot(t, 1 - estimate.eps_mse, "--", label="1 - E‖ε_θ - ε‖²/d")
    left.set(xlabel="timestep t", title=f"Γ_t from {estimate.num_images} images")
    left.legend()
    for i, n in enumerate(steps):
        try:
            curves = variance_curves(pipe.scheduler, n)
        except ValueError:  # Γ not estimated for this chain
            continue
        k = curves["timesteps"][1:]
        label = "T steps" if n is None else f"{n} steps"
        right.plot(k, curves["fixed_large"][1:], ":", color=f"C{i}")
        right.plot(k, curves["fixed_small"][1:], "--", color=f"C{i}")
        right.plot(k, curves["analytic"][1:], color=f"C{i}", label=f"{label}: σ*² (solid), β (dotted), β̃ (dashed)")
    right.set(xlabel="timestep t", yscale="log", title="reverse variance σ_t² of each step")
    right.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> GammaEstimate | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser, seed=None)
    add_data_arguments(parser, split="train")
    add_arguments(parser, GammaSettings)
    parser.add_argument("--grid_size", type=non_negative_int, default=64, help="samples in samples.png (0: none)")
    parser.add_argument("--grid_steps", type=positive_int, default=None, help="their steps (default: T)")
    add_output_arguments(parser, "analytic_variance")
    args = parser.parse_args(argv)
    try:  # every setting checked before any work, by the library's own checks
        settings = GammaSettings(**pick(vars(args), GammaSettings))
    except EvaluationError as e:
        raise SystemExit(str(e)) from None

    output_dir = Path(args.output_dir)
    try:
        estimate = estimate_analytic_variance(
            args.model,
            output_dir=output_dir,
            dataset=args.dataset_name,
            data_dir=args.train_data_dir,
            split=args.split,
            image_column=args.image_column,
            convert_images=args.convert_images,
            revision=args.revision,
            device=args.device,
            settings=settings,
        )
    except (EvaluationError, StoreMismatchError) as e:
        raise SystemExit(str(e)) from None
    if estimate is None:  # not the main process
        return None

    pipe = DDPMPaperPipeline.from_pretrained(output_dir).to(args.device)
    steps = (None, 100, 20, 10) if args.num_inference_steps is None else tuple(args.num_inference_steps)
    plot(pipe, estimate, output_dir / "gamma.png", steps)
    if args.grid_size:
        grid_steps = args.grid_steps or (args.num_inference_steps or [pipe.scheduler.config.num_train_timesteps])[0]
        generator = [torch.Generator().manual_seed(args.seed + i) for i in range(args.grid_size)]
        images = pipe(args.grid_size, generator=generator, num_inference_steps=grid_steps, output_type="pil").images
        save_grid(images, str(output_dir / SAMPLES))
        rerender_card(output_dir / "README.md", str(output_dir), samples=SAMPLES).save(output_dir / "README.md")
    worst = int(np.nanargmax(estimate.stderr))
    print(
        f"Γ_t at {len(estimate.timesteps)} timesteps from {estimate.num_images} images (largest s.e. "
        f"{estimate.stderr[worst]:.2g}, at t = {estimate.timesteps[worst]}); wrote {output_dir} "
        "(a pipeline whose scheduler uses the optimal variance)"
    )
    return estimate


if __name__ == "__main__":
    main()
