"""A demo of a DDPM checkpoint in the browser (Gradio): sampling with the chain shown as it runs, interpolation, and
the variational bound of an image with its rate–distortion curve.

    pip install -e ".[demo]"
    python examples/app.py --model runs/digits          # or any pipeline folder or Hub repo id
    python examples/app.py                              # runs/digits, the README's digits run
    python examples/app.py --public --model you/ddpm-digits --model you/ddpm-cifar10   # as strangers see it

Serves http://127.0.0.1:7860 (--host, --port; GRADIO_SERVER_NAME/PORT as Gradio reads them). Locally, the page opens
any folder, Hub repo or dataset typed in it. Public (--public, or in a Hub Space, where SPACE_ID is set), a visitor
chooses only among the models named at start (in a Space: its README's `models:`) and the datasets named at start or
in those models' cards, nothing is fetched with the server's Hub token, and the limits below keep the server
answering (`ddpm_hf.demo.access`). Each visitor's Stop ends only their own job. This file lays out the page; what
the buttons do is `ddpm_hf.demo`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import gradio as gr
import torch

from ddpm_hf.checks import positive_int
from ddpm_hf.demo import LOCAL_LIMITS, PRECISIONS, PUBLIC_LIMITS, Demo, Limits, ModelError, public_by_default
from ddpm_hf.settings import add_arguments, parse_bool, pick

DEFAULT_MODEL = "runs/digits"  # what the README's training command writes
MODEL_ENV = "DDPM_HF_MODEL"  # another way to name the model (e.g. a Space variable)
CONCURRENCY = "model"  # every job of the app shares the same slots: `--concurrency` jobs at a time

NO_MODEL = (
    "no model to open: --model was not given and {default} does not exist.\n"
    "Train the README's digits model (a few minutes on a CPU):\n"
    "    python examples/train_ddpm.py --preset digits\n"
    "or name a saved pipeline folder or a Hub repo id:\n"
    "    python examples/app.py --model DIR_OR_REPO_ID"
)


def default_models(app_file: str = __file__) -> list[str]:
    """The models to serve when --model is not given: DDPM_HF_MODEL; in a Space, the `models:` of the Space's
    README front matter; else the README's digits run."""
    if os.environ.get(MODEL_ENV):
        return [os.environ[MODEL_ENV]]
    readme = Path(app_file).with_name("README.md")
    if readme.is_file():
        from huggingface_hub import SpaceCard

        data = SpaceCard.load(readme).data
        if data.get("sdk") == "gradio" and data.get("models"):
            return list(data["models"])
    if os.path.isdir(DEFAULT_MODEL):
        return [DEFAULT_MODEL]
    raise SystemExit(NO_MODEL.format(default=DEFAULT_MODEL))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; --public (or a Space) picks the public limits as the defaults of the limit flags."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--public", type=parse_bool, nargs="?", const=True, default=False)
    public = first.parse_known_args(argv)[0].public or public_by_default()

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", action="append", help=f"a pipeline folder or Hub repo id; repeat to serve several ({DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--dataset_name",
        action="append",
        default=[],
        help="a dataset for the image indices; repeat for several "
        "(default: the models' cards'; public: with sklearn-digits, the only ones served)",
    )
    parser.add_argument(
        "--public",
        type=parse_bool,
        nargs="?",
        const=True,
        default=public,
        metavar="true|false",
        help="serve only what is named here, to anyone (default: true in a Hub Space, else false)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--split", default="train", help="the datasets' split")
    parser.add_argument("--bound_batch_size", type=positive_int, default=256, help="(image, t) pairs per forward pass")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    add_arguments(parser.add_argument_group("limits"), Limits, PUBLIC_LIMITS if public else LOCAL_LIMITS)
    args = parser.parse_args(argv)
    args.public = args.public or public_by_default()  # a Space is public whatever its command line says
    try:
        args.limits = Limits(**pick(vars(args), Limits))
    except ValueError as e:
        parser.error(str(e))
    return args


def make_demo(args: argparse.Namespace) -> Demo:
    models = args.model or default_models()
    try:
        return Demo.serve(
            models, args.dataset_name, args.public, args.limits, args.device, args.split, args.bound_batch_size
        )
    except ModelError as e:
        raise SystemExit(f"{e}\n\n{NO_MODEL.format(default=DEFAULT_MODEL)}" if args.model is None else str(e)) from None


def chooser(label: str, value: str | None, choices: tuple[str, ...], public: bool, **kwargs) -> gr.components.Component:
    """A model or dataset field: free text on your own machine, a choice among the served ones in public."""
    if public:
        return gr.Dropdown(list(choices), value=value, label=label, allow_custom_value=False, **kwargs)
    return gr.Textbox(value or "", label=label, **kwargs)


def stopper(demo: Demo, tab: str):
    """The Stop button's status line for `tab`: about the visitor's own job (Gradio passes their request)."""

    def stop(request: gr.Request) -> str:
        return demo.stopped(tab, request)

    stop.__name__ = f"stop_{tab}"
    return stop


def build(demo: Demo) -> gr.Blocks:
    """The page: a model chooser, then the Sample, Interpolate and Likelihood tabs."""
    first, T, access, limits = demo.first, demo.first.num_timesteps, demo.access, demo.limits
    max_steps = min(T, limits.max_steps or T)
    with gr.Blocks(title=f"DDPM: {first.name}", analytics_enabled=False) as app:
        gr.Markdown(
            "# Denoising Diffusion Probabilistic Models\n"
            "Ho, Jain & Abbeel (2020), as `ddpm_hf`'s diffusers pipeline. Sample the model and watch the reverse "
            "process run, interpolate between two images, or measure an image's likelihood."
        )
        model_name = gr.State(first.name)
        with gr.Row():
            label = "Model: one of those served" if access.public else "Model: a pipeline folder or Hub repo id"
            model_box = chooser(label, first.name, access.models, access.public, scale=3)
            open_button = gr.Button("Open", scale=0)
        info = gr.Markdown(first.describe(), elem_id="model-info")
        open_button.click(demo.open_model, model_box, [model_name, info], concurrency_id=CONCURRENCY)

        with gr.Tab("Sample"):
            with gr.Row():
                batch = gr.Number(
                    min(16, limits.max_batch_size),
                    label=f"Batch size (1 to {limits.max_batch_size})",
                    precision=0,
                    elem_id="batch",
                )
                seed = gr.Number(0, label="Seed (image i uses seed + i)", precision=0, elem_id="seed")
                steps = gr.Number(
                    max_steps,
                    label=f"Steps (T = {T}; fewer: respaced sub-chain; at most {max_steps})",
                    elem_id="steps",
                )
                precision = gr.Radio(list(PRECISIONS), value="auto", label="Precision")
            with gr.Row():
                run = gr.Button("Sample", variant="primary", elem_id="sample")
                stop = gr.Button("Stop", variant="stop", elem_id="stop-sample")
            status = gr.Markdown(elem_id="sample-status")
            with gr.Row():
                live_xt = gr.Image(label="x_t (the chain, as it runs)", format="png", elem_id="live-xt")
                live_x0 = gr.Image(label="x̂_0 predicted from x_t", format="png", elem_id="live-x0")
                final = gr.Image(label="Samples x_0", format="png", elem_id="samples")
            files = gr.File(label="Download (grid PNG; every sample as a PNG in a zip)", elem_id="downloads")
            event = run.click(
                demo.sample,
                [model_name, batch, seed, steps, precision],
                [live_xt, live_x0, final, files, status],
                concurrency_id=CONCURRENCY,
            )
            stop.click(stopper(demo, "sample"), None, status, cancels=[event])

        dataset_label = f"Dataset ({demo.split} split)"
        with gr.Tab("Interpolate"):
            source = gr.Radio(
                ["dataset images", "uploaded images"],
                value="dataset images" if demo.dataset else "uploaded images",
                label="Interpolate between",
            )
            with gr.Row():
                image_a = gr.Image(label="Image A", type="pil", image_mode=None, elem_id="image-a")
                image_b = gr.Image(label="Image B", type="pil", image_mode=None, elem_id="image-b")
            with gr.Row():
                dataset = chooser(dataset_label, demo.dataset, access.datasets, access.public)
                index_a = gr.Number(0, label="Index of A", precision=0)
                index_b = gr.Number(1, label="Index of B", precision=0)
            with gr.Row():
                t = gr.Slider(0, T - 1, value=min(T // 2, T - 1), step=1, label="Noise level t (0-based)")
                num = gr.Slider(
                    2,
                    limits.max_interpolants,
                    value=min(8, limits.max_interpolants),
                    step=1,
                    label="Steps in λ (both ends included)",
                )
                interp_seed = gr.Number(0, label="Seed", precision=0)
            with gr.Row():
                interp_run = gr.Button("Interpolate", variant="primary", elem_id="interpolate")
                interp_stop = gr.Button("Stop", variant="stop")
            row = gr.Image(label="Source A, interpolants λ = 0 … 1, source B", format="png", elem_id="row")
            interp_status = gr.Markdown()
            interp_event = interp_run.click(
                demo.interpolate,
                [model_name, source, image_a, image_b, dataset, index_a, index_b, t, num, interp_seed],
                [row, interp_status],
                concurrency_id=CONCURRENCY,
            )
            interp_stop.click(stopper(demo, "interpolate"), None, interp_status, cancels=[interp_event])

        with gr.Tab("Likelihood"):
            bound_source = gr.Radio(
                ["dataset images", "uploaded images"],
                value="dataset images" if demo.dataset else "uploaded images",
                label="Measure",
            )
            with gr.Row():
                upload = gr.Image(label="Image", type="pil", image_mode=None, elem_id="bound-image")
                with gr.Column():
                    bound_dataset = chooser(dataset_label, demo.dataset, access.datasets, access.public)
                    bound_index = gr.Number(0, label="Index", precision=0)
                    bound_seed = gr.Number(0, label="Seed (the bound's noise)", precision=0)
                    with gr.Row():
                        bound_run = gr.Button("Bits/dim", variant="primary", elem_id="bound")
                        bound_stop = gr.Button("Stop", variant="stop")
            seen = gr.Image(label="As the model sees it", format="png")
            summary = gr.Markdown(elem_id="bound-summary")
            with gr.Row():
                terms = gr.Plot(label="Per-t terms of the bound")
                curve = gr.Plot(label="Progressive lossy coding (Fig. 5)")
            bound_event = bound_run.click(
                demo.likelihood,
                [model_name, bound_source, upload, bound_dataset, bound_index, bound_seed],
                [seen, summary, terms, curve],
                concurrency_id=CONCURRENCY,
            )
            bound_stop.click(stopper(demo, "likelihood"), None, summary, cancels=[bound_event])
        app.unload(demo.forget)
    # `--concurrency` jobs at a time (a CPU runs one well); up to `--max_queue` wait, the next visitor is told the
    # queue is full.
    app.queue(max_size=limits.max_queue, default_concurrency_limit=limits.concurrency)
    return app


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    demo = make_demo(args)
    mode = "public: serving " + ", ".join(demo.access.models) if args.public else "local"
    print(f"opening {demo.first.name} at http://{args.host}:{args.port} ({mode})", file=sys.stderr)
    build(demo).launch(
        server_name=args.host,
        server_port=args.port,
        show_error=not args.public,  # a bug's message could name server paths: strangers see Gradio's "Error"
        max_file_size=args.limits.max_file_size,
        ssr_mode=False,
    )


if __name__ == "__main__":
    main()
