"""Sample quality against the number of network evaluations, for every sampler the pipeline runs, on one model.

    python benchmarks/samplers.py --model runs/digits --num_images 300                  # CPU: the digits model
    python benchmarks/samplers.py --model runs/cifar10 --metric fid --reference cifar10_train.npz \\
        --num_images 10000 --batch_size 256 --device cuda                                # GPU: FID on CIFAR-10

Each sampler samples the same images (image i from the generator seeded seed + i) at each step count of --steps
(1000 only for the ancestral DDPM samplers unless --full_chain_for_all), and the script reports, per row: the
network evaluations (NFE: second-order samplers evaluate about twice per step), seconds per image, and the distance
to the data with its standard error. `--metric digits` (8×8 digits): the Fréchet distance in the hidden layer of a
classifier trained on the digits (`examples/score_digits.py`'s `digit_features`), and the share of samples its SVM
labels with probability ≥ 0.9; `--metric fid`: FID against a statistics file (`examples/fid_stats.py`). Standard errors:
binomial for the share, a bootstrap over the samples for the distances. Writes results.json, results.md and
samplers.png into --output_dir.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import diffusers
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from common import describe_device

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.evaluation import FIDStatistics, frechet_distance
from ddpm_hf.fastpath import PRECISIONS

# name -> (how to build it from the model's scheduler config, the pipeline's eta)
SAMPLERS = {
    "DDPM (paper), σ²=β": (lambda c: DDPMPaperScheduler.from_config(c, variance_type="fixed_large"), None),
    "DDPM (paper), σ²=β̃": (lambda c: DDPMPaperScheduler.from_config(c, variance_type="fixed_small"), None),
    # Needs a model whose scheduler carries Γ (examples/analytic_variance.py); skipped for one that does not.
    "DDPM, Analytic-DPM σ*²": (lambda c: DDPMPaperScheduler.from_config(c, variance_type="analytic"), None),
    "DDIM η=0": (lambda c: diffusers.DDIMScheduler.from_config(c), 0.0),
    "DDIM η=1": (lambda c: diffusers.DDIMScheduler.from_config(c), 1.0),
    "DPM-Solver++(2M)": (lambda c: diffusers.DPMSolverMultistepScheduler.from_config(c), None),
    "DPM-Solver++ singlestep": (lambda c: diffusers.DPMSolverSinglestepScheduler.from_config(c), None),
    "UniPC": (lambda c: diffusers.UniPCMultistepScheduler.from_config(c), None),
    "DEIS": (lambda c: diffusers.DEISMultistepScheduler.from_config(c), None),
    "PNDM (PLMS)": (lambda c: diffusers.PNDMScheduler.from_config(c, skip_prk_steps=True), None),
    "Euler": (lambda c: diffusers.EulerDiscreteScheduler.from_config(c), None),
    "Euler ancestral": (lambda c: diffusers.EulerAncestralDiscreteScheduler.from_config(c), None),
    "Heun": (lambda c: diffusers.HeunDiscreteScheduler.from_config(c), None),
    "LMS": (lambda c: diffusers.LMSDiscreteScheduler.from_config(c), None),
}
PAPER = ("DDPM (paper), σ²=β", "DDPM (paper), σ²=β̃", "DDPM, Analytic-DPM σ*²")
BOOTSTRAP = 30


class Digits:
    """The digits metric: Fréchet distance in a digit classifier's hidden layer, and the confident share."""

    name = "digits"

    def __init__(self) -> None:
        from score_digits import digit_features, fit_classifier, fit_feature_network
        from sklearn.datasets import load_digits

        self.network, self.classifier, self.features = fit_feature_network(), fit_classifier(), digit_features
        self.real = load_digits().data.reshape(-1, 8, 8, 1) / 16.0
        self.reference = FIDStatistics.from_features(self.features(self.real[..., 0], self.network))

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> dict:
        """images: [N, H, W, C] in [0, 1]."""
        gray = images[..., 0]
        features = self.features(gray, self.network)
        confident = self.classifier.predict_proba(gray.reshape(len(gray), 64)).max(1) >= 0.9
        p = float(confident.mean())
        return {
            **frechet_with_error(features, self.reference, rng),
            "confident": p,
            "confident_se": float(np.sqrt(p * (1 - p) / len(gray))),
        }


class FID:
    """FID against a statistics file, on TF Inception-v3 features."""

    name = "fid"

    def __init__(self, reference: str, device: str) -> None:
        from ddpm_hf.evaluation import InceptionV3

        self.inception = InceptionV3(device=device)
        self.reference = FIDStatistics.load(reference)
        self.reference.check_made_by(self.inception, reference)

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> dict:
        pixels = torch.from_numpy((images * 255).round().astype(np.uint8)).permute(0, 3, 1, 2)
        features = np.concatenate([self.inception.extract(b)[0].numpy() for b in pixels.split(250)])
        return frechet_with_error(features, self.reference, rng)


def frechet_with_error(features: np.ndarray, reference: FIDStatistics, rng: np.random.Generator) -> dict:
    """The Fréchet distance of `features` to `reference`, and its bootstrap standard error over the samples."""
    distance = frechet_distance(FIDStatistics.from_features(features), reference)
    resampled = [
        frechet_distance(
            FIDStatistics.from_features(features[rng.integers(0, len(features), len(features))]), reference
        )
        for _ in range(BOOTSTRAP)
    ]
    return {"distance": distance, "distance_se": float(np.std(resampled, ddof=1))}


def sample(pipe: DDPMPaperPipeline, args: argparse.Namespace, steps: int, eta: float | None) -> tuple[np.ndarray, int]:
    """The --num_images samples (image i seeded seed + i) and the network evaluations per image."""
    calls = []
    hook = pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    images = []
    try:
        for start in range(0, args.num_images, args.batch_size):
            n = min(args.batch_size, args.num_images - start)
            gens = [torch.Generator(args.device).manual_seed(args.seed + start + i) for i in range(n)]
            out = pipe(
                n, generator=gens, num_inference_steps=steps, output_type="np", precision=args.precision, eta=eta
            )
            images.append(out.images)
    finally:
        hook.remove()
    batches = -(-args.num_images // args.batch_size)
    return np.concatenate(images), len(calls) // batches


def plot(rows: list[dict], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ["distance", "confident"] if metric == "digits" else ["distance"]
    labels = {"distance": "Fréchet distance (digit features)" if metric == "digits" else "FID", "confident": ""}
    labels["confident"] = "share labelled with p ≥ 0.9"
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        for name in dict.fromkeys(r["sampler"] for r in rows if r["nfe"]):
            mine = [r for r in rows if r["sampler"] == name]
            ax.errorbar(
                [r["nfe"] for r in mine],
                [r[key] for r in mine],
                yerr=[r[f"{key}_se"] for r in mine],
                marker="o",
                ms=3,
                capsize=2,
                lw=1.2 if name in PAPER else 0.9,
                ls="-" if name in PAPER else "--",
                label=name,
            )
        ax.set(xscale="log", xlabel="network evaluations per image", ylabel=labels[key])
        if key == "distance":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(rows: list[dict], metric: str) -> str:
    head = "| sampler | steps | NFE | s/image | Fréchet distance ± s.e. |"
    if metric == "digits":
        head += " confident ± s.e. |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {r['seconds_per_image']:.4f} | "
        line += f"{r['distance']:.2f} ± {r['distance_se']:.2f} |"
        if metric == "digits":
            line += f" {100 * r['confident']:.1f}% ± {100 * r['confident_se']:.1f} |"
        lines.append(line)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved pipeline folder or a Hub repo id")
    parser.add_argument("--metric", choices=["digits", "fid"], default="digits")
    parser.add_argument("--reference", default=None, help="--metric fid: an FID statistics .npz (fid_stats.py)")
    parser.add_argument("--num_images", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=300)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100, 1000])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), help="names from the table above")
    parser.add_argument("--full_chain_for_all", action="store_true", help="1000 steps for every sampler, not only DDPM")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output_dir", default="out/samplers")
    args = parser.parse_args(argv)
    unknown = [s for s in args.samplers if s not in SAMPLERS]
    if unknown:
        parser.error(f"unknown samplers {unknown}; choose from {list(SAMPLERS)}")
    if args.metric == "fid" and not args.reference:
        parser.error("--metric fid needs --reference STATS.npz (examples/fid_stats.py)")
    if min(args.num_images, args.batch_size, *args.steps) < 1:
        parser.error("--num_images, --batch_size and --steps must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = Digits() if args.metric == "digits" else FID(args.reference, args.device)
    pipe = DDPMPaperPipeline.from_pretrained(args.model).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    config, T = pipe.scheduler.config, pipe.scheduler.config.num_train_timesteps
    rng = np.random.default_rng(0)
    rows = []
    if isinstance(metric, Digits):  # the floor: as many real digits, drawn from the reference itself
        real = metric.real[rng.choice(len(metric.real), min(args.num_images, len(metric.real)), replace=False)]
        rows.append({"sampler": "real digits", "steps": 0, "nfe": 0, "seconds_per_image": 0.0, **metric(real, rng)})
    print(f"{args.model} on {describe_device(torch.device(args.device))}, {args.num_images} images, {args.precision}")
    for name in args.samplers:
        build, eta = SAMPLERS[name]
        try:
            pipe.scheduler = build(config)
        except ValueError as e:  # the analytic variance of a model without Γ
            print(f"skipping {name}: {e}", flush=True)
            continue
        for steps in args.steps:
            if steps > T or (steps == T and name not in PAPER and not args.full_chain_for_all):
                continue
            start = time.perf_counter()
            images, nfe = sample(pipe, args, steps, eta)
            seconds = (time.perf_counter() - start) / args.num_images
            row = {"sampler": name, "steps": steps, "nfe": nfe, "seconds_per_image": seconds, **metric(images, rng)}
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    record = {
        "model": args.model,
        "metric": metric.name,
        "num_images": args.num_images,
        "precision": args.precision,
        "device": describe_device(torch.device(args.device)),
        "seed": args.seed,
        "rows": rows,
    }
    (out / "results.json").write_text(json.dumps(record, indent=2, ensure_ascii=False))
    (out / "results.md").write_text(table(rows, metric.name) + "\n")
    plot(rows, metric.name, out / "samplers.png")
    print(table(rows, metric.name))
    print(f"wrote {out}/results.json, results.md and samplers.png")


if __name__ == "__main__":
    main()
