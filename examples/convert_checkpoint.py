"""Convert a network the paper's authors released into a DDPMPaperPipeline folder (with its model card).

python examples/convert_checkpoint.py --checkpoint diffusion_models_release/diffusion_cifar10_model/model.ckpt-790000 \\
    --output_dir ddpm-cifar10-ema
python examples/convert_checkpoint.py --checkpoint diffusion_models_release/diffusion_lsun_church_model \\
    --model lsun_church --no_ema --output_dir ddpm-lsun-church-raw
python examples/convert_checkpoint.py --checkpoint ema_diffusion_cifar10_model/model-790000.ckpt --output_dir DIR

--checkpoint: the authors' TensorFlow checkpoint (its prefix, or its folder with the `checkpoint` file; TensorFlow
is not needed) or a state dict of pesser/pytorch_diffusion, the PyTorch port (its `ema_...` files hold the EMA
weights). The EMA weights, which the paper samples from, are converted unless --no_ema. --model is read from the
release's folder name (diffusion_<model>_model) when not given. The scheduler samples as the authors did (σ_t² = β_t
for CIFAR-10, β̃_t for the 256×256 models). --output_dir must not exist yet: nothing is ever overwritten.
"""

import argparse

from ddpm_hf.convert import RELEASED_MODELS, ConversionError, convert_checkpoint


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="TF checkpoint prefix or folder, or a PyTorch state dict")
    parser.add_argument(
        "--model", choices=list(RELEASED_MODELS), default=None, help="the released model (default: from the path)"
    )
    parser.add_argument("--no_ema", action="store_true", help="convert the raw weights instead of their EMA")
    parser.add_argument("--output_dir", required=True, help="the pipeline folder to write (must not exist)")
    args = parser.parse_args(argv)
    try:
        folder = convert_checkpoint(args.checkpoint, args.output_dir, model=args.model, ema=not args.no_ema)
    except (ConversionError, FileExistsError, FileNotFoundError) as e:
        raise SystemExit(f"not converted: {e}") from None
    print(f"wrote {folder}; sample it with: python examples/sample.py --model {folder}")
    return str(folder)


if __name__ == "__main__":
    main()
