"""Training-step speed of ddpm_hf's loop against a diffusers train_unconditional-style step: same weights, same run.

    python benchmarks/bench_training.py --batch_size 16                                  # CPU, CIFAR-10 network
    python benchmarks/bench_training.py --device cuda --batch_size 128 --mixed_precision bf16

Peer: UNet2DModel, DDPMScheduler.add_noise, AdamW (weight decay 1e-6, as train_unconditional), clip 1.0, fp32.
Ours: the pieces `ddpm_hf.training` runs — Accelerate with `--mixed_precision`, channels_last, fused/foreach Adam,
`diffusion_loss` (q_sample in float32), clip 1.0 and the foreach EMA update; `--dynamo_backend inductor` adds
torch.compile as `accelerate launch --dynamo_backend inductor` does (compiled during the warm-up repeat).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from common import compare, report, twin_unets
from diffusers import DDPMScheduler

from ddpm_hf import DDPMPaperScheduler
from ddpm_hf.fastpath import eps_model, memory_format
from ddpm_hf.training.ema import EMA
from ddpm_hf.training.losses import diffusion_loss, make_loss
from ddpm_hf.training.optim import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cifar10")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="training steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mixed_precision", default="bf16", choices=["no", "bf16", "fp16"])
    parser.add_argument("--dynamo_backend", default="no", help='ours through torch.compile: "inductor" (Accelerate)')
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    ours_unet, peer_unet = twin_unets(args.model, device)
    ours_unet.train(), peer_unet.train()
    gen = torch.Generator(device).manual_seed(0)
    size = ours_unet.config.sample_size
    x_0 = torch.rand(args.batch_size, ours_unet.config.in_channels, size, size, device=device, generator=gen) * 2 - 1
    noise = torch.randn(x_0.shape, device=device, generator=gen)
    t = torch.randint(0, 1000, (args.batch_size,), device=device, generator=gen)

    peer_scheduler = DDPMScheduler(variance_type="fixed_large")
    peer_opt = torch.optim.AdamW(peer_unet.parameters(), lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-6, eps=1e-8)

    def peer_step() -> None:
        for _ in range(args.steps):
            pred = peer_unet(peer_scheduler.add_noise(x_0, noise, t), t).sample
            F.mse_loss(pred.float(), noise).backward()
            torch.nn.utils.clip_grad_norm_(peer_unet.parameters(), 1.0)
            peer_opt.step()
            peer_opt.zero_grad(set_to_none=True)

    accelerator = Accelerator(
        mixed_precision=args.mixed_precision, cpu=device.type == "cpu", dynamo_backend=args.dynamo_backend
    )
    scheduler = DDPMPaperScheduler()
    loss = make_loss("simple", scheduler)
    ours_unet.to(memory_format=memory_format(device, training=True))  # as the Trainer does, before wrapping
    opt = make_optimizer(ours_unet.parameters(), 2e-4, (0.9, 0.999), 1e-8, device)
    model, opt = accelerator.prepare(ours_unet, opt)
    ema = EMA(ours_unet, 0.9999)

    def ours_step() -> None:
        with eps_model(model, training=True, device=device) as eps:
            for _ in range(args.steps):
                accelerator.backward(diffusion_loss(eps, scheduler, loss, x_0, t, noise).mean())
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                ema.update(ours_unet)

    results = compare(
        {
            "diffusers-style step (fp32)": peer_step,
            f"ddpm_hf ({args.mixed_precision}, {args.dynamo_backend})": ours_step,
        },
        device,
        args.repeats,
    )
    report(args, device, results, args.batch_size * args.steps, "step")


if __name__ == "__main__":
    main()
