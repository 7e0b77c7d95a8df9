"""Sample images with DDPMPaperPipeline and save them as one grid PNG.

python examples/sample.py --model runs/digits --num_images 16   # writes outputs/sample/samples.png
python examples/sample.py --model user/ddpm-cifar10 --revision main --num_inference_steps 1000
python examples/sample.py --paper_config cifar10 --num_inference_steps 20   # an untrained network
"""

import argparse

import torch
from cli import add_model_arguments, add_output_arguments, load_pipeline, output_path, positive_int, save_grid

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler, DDPMUNet2DModel
from ddpm_hf.fastpath import PRECISIONS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--paper_config", choices=["cifar10", "celebahq256", "lsun256"], help="an untrained paper net")
    add_model_arguments(parser, group=source)  # --model, the other source, and --revision --seed --device
    parser.add_argument("--num_images", type=positive_int, default=16)
    parser.add_argument("--num_inference_steps", type=positive_int, default=1000)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    add_output_arguments(parser, "sample", output="samples.png")
    parser.add_argument("--scale", type=positive_int, default=1, help="enlarge each sample this many times in the grid")
    args = parser.parse_args(argv)

    if args.model:
        pipe = load_pipeline(args)
    else:
        unet = DDPMUNet2DModel.from_paper_config(args.paper_config)
        pipe = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler()).to(args.device)
    # One generator per image: image i is the same whatever --num_images is.
    generators = [torch.Generator().manual_seed(args.seed + i) for i in range(args.num_images)]
    images = pipe(
        batch_size=args.num_images,
        generator=generators,
        num_inference_steps=args.num_inference_steps,
        precision=args.precision,
    ).images
    path = output_path(args, "output")
    save_grid(images, path, scale=args.scale, pad=1)
    print(f"wrote {args.num_images} samples to {path}")


if __name__ == "__main__":
    main()
