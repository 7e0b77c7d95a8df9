"""Write tests/data/convert/pytorch/: a tiny network of pesser/pytorch_diffusion (a PyTorch port of the authors' code),
saved as that port saves its converted checkpoints, and its outputs on fixed inputs. With the port checked out:

    python tests/data/convert/make_pytorch_fixture.py --pytorch_diffusion_repo /tmp/pytorch_diffusion

Nothing of the port is copied here: its `pytorch_diffusion/model.py` (`Model`) is loaded from the checkout. The
port's converter writes `torch.save(model.state_dict(), ...)` to `ema_diffusion_NAME_model/model-STEP.ckpt` for EMA
weights (no `ema_` for the raw ones): the same layout here, with EMA in the name.
"""

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

# The TF fixture's network (make_tf_fixture.py), in the port's arguments.
CONFIG = {"ch": 32, "ch_mult": [1, 1], "num_res_blocks": 1, "attn_resolutions": [4], "resolution": 8}
CHECKPOINT = "ema_diffusion_tiny_model/model-3.ckpt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pytorch_diffusion_repo", required=True, help="a checkout of github.com/pesser/pytorch_diffusion"
    )
    parser.add_argument("--output_dir", default=str(Path(__file__).with_name("pytorch")))
    args = parser.parse_args()

    # model.py alone: the package's __init__ also imports its sampler and downloader, which this does not need.
    path = Path(args.pytorch_diffusion_repo) / "pytorch_diffusion" / "model.py"
    spec = importlib.util.spec_from_file_location("pytorch_diffusion_model", path)
    port = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(port)

    torch.manual_seed(2020)
    model = port.Model(
        resolution=CONFIG["resolution"],
        in_channels=3,
        out_ch=3,
        ch=CONFIG["ch"],
        ch_mult=tuple(CONFIG["ch_mult"]),
        num_res_blocks=CONFIG["num_res_blocks"],
        attn_resolutions=tuple(CONFIG["attn_resolutions"]),
        dropout=0.0,
    ).eval()
    with torch.no_grad():  # GroupNorm starts at (1, 0): move it, so that a swapped scale and offset would show
        for name, p in model.named_parameters():
            if ".norm" in name or name.startswith("norm_out"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))

    out = Path(args.output_dir)
    (out / CHECKPOINT).parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / CHECKPOINT)
    generator = torch.Generator().manual_seed(2020)
    x = torch.randn(2, 3, CONFIG["resolution"], CONFIG["resolution"], generator=generator)
    t = torch.tensor([3, 617])
    with torch.no_grad():
        eps = model(x, t)
    np.savez(out / "reference_outputs.npz", x=x.numpy(), t=t.numpy(), eps=eps.numpy())
    record = {"config": CONFIG, "checkpoint": CHECKPOINT, "torch": torch.__version__}
    (out / "fixture.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}: {len(model.state_dict())} tensors; |eps| max {eps.abs().max():.3f}")


if __name__ == "__main__":
    main()
