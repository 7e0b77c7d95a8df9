"""Check the conversion at full size: pytorch_diffusion's `Model` (the PyTorch port, loaded from a checkout) with
random weights in the CIFAR-10 or the 256×256 configuration, saved as the port saves its EMA files, converted by
`ddpm_hf.convert`, and both networks run on the same input. Prints the largest difference (fp32).

    python tests/data/convert/check_full_size.py --pytorch_diffusion_repo /tmp/pytorch_diffusion --model cifar10
    python tests/data/convert/check_full_size.py --pytorch_diffusion_repo /tmp/pytorch_diffusion --model lsun_church

The 256×256 network (114M parameters) needs about 4 GB of memory and a minute on a CPU.
"""

import argparse
import importlib.util
import tempfile
from pathlib import Path

import torch

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.convert import convert_checkpoint

CONFIGS = {  # the port's README and its converter's settings for the released networks
    "cifar10": {"ch_mult": (1, 2, 2, 2), "resolution": 32},
    "lsun_church": {"ch_mult": (1, 1, 2, 2, 4, 4), "resolution": 256},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pytorch_diffusion_repo", required=True)
    parser.add_argument("--model", choices=list(CONFIGS), default="cifar10")
    args = parser.parse_args()
    path = Path(args.pytorch_diffusion_repo) / "pytorch_diffusion" / "model.py"
    spec = importlib.util.spec_from_file_location("pytorch_diffusion_model", path)
    port = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(port)

    config = CONFIGS[args.model]
    torch.manual_seed(0)
    model = port.Model(
        ch=128, out_ch=3, num_res_blocks=2, attn_resolutions=(16,), in_channels=3, dropout=0.0, **config
    ).eval()
    with torch.no_grad():  # GroupNorm starts at (1, 0): move it, so that a swapped scale and offset would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    size = config["resolution"]
    x, t = torch.randn(1, 3, size, size), torch.tensor([517])
    with torch.no_grad():
        reference = model(x, t)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / f"ema_diffusion_{args.model}_model" / "model-1.ckpt"
        checkpoint.parent.mkdir()
        torch.save(model.state_dict(), checkpoint)
        del model
        pipe = DDPMPaperPipeline.from_pretrained(convert_checkpoint(checkpoint, Path(tmp) / "converted"))
        with torch.no_grad():
            ours = pipe.unet(x, t).sample
    params = sum(p.numel() for p in pipe.unet.parameters())
    print(
        f"{args.model}: {params:,} parameters, sampler {pipe.scheduler.config.variance_type}; largest difference "
        f"{(ours - reference).abs().max().item():.2e} (outputs up to {reference.abs().max().item():.2f})"
    )


if __name__ == "__main__":
    main()
