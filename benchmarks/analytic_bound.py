"""The variational bound in bits/dim with σ_t² = β_t, β̃_t and Analytic-DPM's σ*_t², on the full chain and respaced ones.

    python benchmarks/analytic_bound.py --model runs/digits-analytic --dataset_name sklearn-digits --split test
    python benchmarks/analytic_bound.py --model runs/cifar10-analytic --dataset_name ../shared/data/cifar10 \\
        --split test --num_images 1000 --device cuda                                     # GPU: CIFAR-10

--model is a folder written by examples/analytic_variance.py (its scheduler carries Γ). Every variance bounds the
same images with the same noise (one generator seeded --seed for each step count), so the differences between
variances are paired: the table gives each bound's mean ± s.e. over images, and each fixed variance's excess over
the analytic one with the s.e. of that paired difference. Writes results.json and results.md into --output_dir.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from cli import load_images
from common import describe_device

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler

VARIANCES = {"fixed_large": "σ²=β", "fixed_small": "σ²=β̃", "analytic": "σ*² (Analytic-DPM)"}


def mean_se(x: torch.Tensor) -> tuple[float, float]:
    return float(x.mean()), float(x.std() / len(x) ** 0.5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset_name", default=None)
    parser.add_argument("--train_data_dir", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--image_column", default=None)
    parser.add_argument("--convert_images", action="store_true")
    parser.add_argument("--num_images", type=int, default=None, help="default: the whole split")
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 100, 50, 20, 10])
    parser.add_argument("--batch_size", type=int, default=4096, help="(image, timestep) pairs per pass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output_dir", default="outputs/analytic_bound")
    args = parser.parse_args(argv)

    pipe = DDPMPaperPipeline.from_pretrained(args.model).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    if pipe.scheduler.gamma is None:
        raise SystemExit(f"{args.model}'s scheduler carries no Γ: write the folder with examples/analytic_variance.py")
    from ddpm_hf.data import load_image_dataset

    size = len(load_image_dataset(args.dataset_name, args.train_data_dir, args.split, args.image_column)[0])
    images = load_images(args, pipe, list(range(args.num_images or size)))
    config = pipe.scheduler.config
    device = describe_device(torch.device(args.device))
    print(f"{args.model}: {len(images)} images of {args.dataset_name or args.train_data_dir} ({args.split}), {device}")
    rows = []
    for steps in args.steps:
        bounds = {}
        for variance in VARIANCES:
            pipe.scheduler = DDPMPaperScheduler.from_config(config, variance_type=variance)
            start = time.perf_counter()
            bpd = pipe.bits_per_dim(
                images,
                generator=torch.Generator(args.device).manual_seed(args.seed),
                batch_size=args.batch_size,
                num_inference_steps=steps,
            )
            bounds[variance] = bpd
            row = {
                "steps": steps,
                "variance": variance,
                "seconds": time.perf_counter() - start,
                "bpd": mean_se(bpd.total),
                "prior": float(bpd.prior.mean()),
                "decoder": float(bpd.terms[:, 0].mean()),
                "kl": float(bpd.terms[:, 1:].sum(1).mean()),
            }
            if variance != "analytic":
                row["excess"] = None  # filled below, once the analytic bound is known
            rows.append(row)
        for row in rows[-len(VARIANCES) :]:
            if row["variance"] != "analytic":
                row["excess"] = mean_se(bounds[row["variance"]].total - bounds["analytic"].total)
            print(json.dumps(row, ensure_ascii=False), flush=True)

    lines = [
        "| steps | σ_t² | bits/dim ± s.e. | − analytic (paired) ± s.e. | L_T | Σ KL | L_0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        excess = "—" if r["variance"] == "analytic" else f"{r['excess'][0]:+.4f} ± {r['excess'][1]:.4f}"
        lines.append(
            f"| {r['steps']} | {VARIANCES[r['variance']]} | {r['bpd'][0]:.4f} ± {r['bpd'][1]:.4f} | {excess} | "
            f"{r['prior']:.4f} | {r['kl']:.4f} | {r['decoder']:.4f} |"
        )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {"model": args.model, "split": args.split, "num_images": len(images), "device": device, "rows": rows}
    (out / "results.json").write_text(json.dumps(record, indent=1, ensure_ascii=False))
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
