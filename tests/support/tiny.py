"""Tiny models shared by the tests: the paper's architecture at toy size, fast on a CPU."""

import json

import torch

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler, DDPMUNet2DModel

TINY_UNET = {
    "sample_size": 8,
    "block_out_channels": (32, 32),
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "dropout": 0.0,
}


def tiny_unet(seed: int = 0, perturb: float = 0.05) -> DDPMUNet2DModel:
    """A tiny paper U-Net whose near-zero layers are perturbed, so that its output depends on its input."""
    torch.manual_seed(seed)
    unet = DDPMUNet2DModel.from_paper_config("cifar10", **TINY_UNET)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(perturb * torch.randn_like(p))
    return unet.eval()


def tiny_pipeline(variance_type: str = "fixed_large", seed: int = 0) -> DDPMPaperPipeline:
    pipe = DDPMPaperPipeline(unet=tiny_unet(seed), scheduler=DDPMPaperScheduler(variance_type=variance_type))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def train_tiny_digits(steps: int = 40, num_train_timesteps: int = 50, seed: int = 0) -> DDPMPaperPipeline:
    """A 1-channel tiny model briefly trained on the bundled 8×8 digits with a minimal L_simple loop (Eq. 14)."""
    from ddpm_hf.data import DIGITS, ImageDataset, load_image_dataset, scale_to_model

    ds, column = load_image_dataset(DIGITS)
    data = ImageDataset(ds, column, resolution=8, channels=1)
    x = scale_to_model(torch.stack([data[i] for i in range(len(data))]))
    torch.manual_seed(seed)
    unet = DDPMUNet2DModel.from_paper_config("cifar10", **{**TINY_UNET, "in_channels": 1, "out_channels": 1})
    scheduler = DDPMPaperScheduler(num_train_timesteps=num_train_timesteps, variance_type="fixed_large")
    optimizer = torch.optim.Adam(unet.parameters(), lr=2e-3)
    unet.train()
    for _ in range(steps):
        x_0 = x[torch.randint(0, len(x), (64,))]
        t = torch.randint(0, num_train_timesteps, (64,))
        noise = torch.randn_like(x_0)
        loss = (unet(scheduler.add_noise(x_0, noise, t), t).sample - noise).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    pipe = DDPMPaperPipeline(unet=unet.eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


TINY_TRAINING = {  # the digits preset at toy size: a step takes a few milliseconds
    "unet_config": {  # sample_size follows --resolution
        "in_channels": 1,
        "out_channels": 1,
        "block_out_channels": [16, 16],
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "norm_num_groups": 8,
    },
    "train_batch_size": 8,
    # Optimisation pinned here, not taken from the preset, so the tests' expected values outlive recipe changes.
    "learning_rate": 1e-3,
    "lr_scheduler": "constant_with_warmup",
    "ema_decay": 0.995,
    "num_grid_images": 4,
    "num_inference_steps": 5,
    "save_images_steps": 0,
    "logging_steps": 1,
}


def tiny_train_args(output_dir, **overrides) -> list[str]:
    """Command-line arguments of examples/train_ddpm.py for a tiny digits run into `output_dir`."""
    values = {**TINY_TRAINING, "output_dir": str(output_dir), **overrides}
    return ["--preset", "digits"] + [
        a for k, v in values.items() for a in (f"--{k}", json.dumps(v) if isinstance(v, dict) else str(v))
    ]


PUSHED_PIPELINE_FILES = {  # what a pushed run's repo holds: the pipeline, its card and samples, nothing else
    ".gitattributes",
    "model_index.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
    "pipeline.py",  # the files diffusers' generic loader imports the classes through
    "unet/ddpm_hf.py",
    "scheduler/ddpm_hf.py",
    "README.md",
    "samples.png",
}


def write_image_folder(root, count: int, size: int, mode: str = "L", broken: tuple[str, ...] = ()):
    """`root/all/0.png …`: `count` random `size`² images (mode L or RGB), plus unreadable files named in `broken`."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = root / "all"
    folder.mkdir(parents=True)
    shape = (size, size) if mode == "L" else (size, size, 3)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(folder / f"{i}.png")
    for name in broken:
        (folder / name).write_bytes(b"not an image")
    return root


def write_images(folder, seed, n=6, size=8):
    """`n` random RGB `size`² images in `folder`, every other one in `folder/nested/`."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sub = folder / ("nested" if i % 2 else "")  # sub-folders are searched too, and mean nothing
        sub.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(sub / f"{i}.png")
    return folder
