"""A demo of a DDPM checkpoint in the browser (Gradio): sampling with the chain shown as it runs, interpolation, and
the variational bound of an uploaded image with its rate–distortion curve.

    pip install -e ".[demo]"
    python examples/app.py --model runs/digits          # or any pipeline folder or Hub repo id
    python examples/app.py                              # runs/digits, the README's digits run

Serves http://127.0.0.1:7860 (--host, --port; GRADIO_SERVER_NAME/PORT as Gradio reads them). Jobs run one at a time
through Gradio's queue (the others wait their turn) and any running job can be stopped. In a Hub Space
(`examples/push_to_hub.py --space`) the app opens the model that the Space's README lists under `models:`.

Every job is a pipeline call followed through its step callback (`callback_on_step_end`), which shows the chain live
and stops the call when the job is cancelled; so with the same seed the samples are
`pipe(batch_size, generator=[seed, seed + 1, ...], num_inference_steps)`'s.
"""

from __future__ import annotations

import argparse
import functools
import io
import math
import os
import sys
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.analysis import rate_distortion
from ddpm_hf.checks import positive_int
from ddpm_hf.data import ImageDataset, load_image_dataset, to_tensor
from ddpm_hf.grid import image_grid
from ddpm_hf.pipeline import NonFiniteSampleError
from ddpm_hf.pixels import scale_to_model, to_pil

DEFAULT_MODEL = "runs/digits"  # what the README's training command writes
MODEL_ENV = "DDPM_HF_MODEL"  # another way to name the model (e.g. a Space variable)
PRECISIONS = ["auto", "fp32", "bf16"]
MAX_BATCH = 64
MAX_INTERPOLANTS = 16
LIVE_EVERY_S = 0.25  # how often the page gets the running chain's x_t and x̂_0
DISPLAY_PX = 64  # images are enlarged (nearest neighbour) to at least this many pixels a side
CONCURRENCY = "model"  # every job of the app shares one queue slot: one job at a time

NO_MODEL = (
    "no model to open: --model was not given and {default} does not exist.\n"
    "Train the README's digits model (a few minutes on a CPU):\n"
    "    python examples/train_ddpm.py --preset digits\n"
    "or name a saved pipeline folder or a Hub repo id:\n"
    "    python examples/app.py --model DIR_OR_REPO_ID"
)


class ModelError(ValueError):
    """A model that could not be opened: the message says which and why."""


@dataclass
class Model:
    """A loaded pipeline and what the page says about it."""

    name: str
    pipe: DDPMPaperPipeline
    dataset: str | None  # the training dataset named by the model card, if any

    @property
    def num_timesteps(self) -> int:
        return self.pipe.scheduler.config.num_train_timesteps

    @property
    def size(self) -> int:
        return self.pipe.unet.config.sample_size

    @property
    def channels(self) -> int:
        return self.pipe.unet.config.in_channels

    def describe(self) -> str:
        params = sum(p.numel() for p in self.pipe.unet.parameters())
        config = self.pipe.scheduler.config
        return (
            f"**{self.name}**: {self.size}×{self.size}×{self.channels} images, {params / 1e6:.2f}M parameters, "
            f"T = {config.num_train_timesteps}, {config.variance_type}"
            + (f", trained on {self.dataset}" if self.dataset else "")
            + f"; running on {self.pipe.device.type}."
        )


def card_dataset(folder: str) -> str | None:
    """The first dataset a pipeline folder's model card lists, if it has a card."""
    card = Path(folder, "README.md")
    if not card.is_file():
        return None
    from huggingface_hub import ModelCard

    datasets = ModelCard.load(card).data.datasets
    return (datasets or [None])[0]


def load_model(name: str, device: str) -> Model:
    """A pipeline folder or Hub repo id, loaded on `device`; `ModelError` says why one cannot be opened."""
    name = (name or "").strip()
    if not name:
        raise ModelError("name a model: a pipeline folder or a Hub repo id")
    try:
        folder = name if os.path.isdir(name) else DDPMPaperPipeline.download(name)
        pipe = DDPMPaperPipeline.from_pretrained(folder).to(device)
    except Exception as e:  # not a folder, not a pipeline, not on the Hub, unreadable weights...
        raise ModelError(f"{name} could not be opened as a DDPM pipeline: {e}") from e
    if not isinstance(pipe.unet.config.sample_size, int) or pipe.unet.config.in_channels not in (1, 3):
        raise ModelError(f"{name}: the demo shows square grayscale or RGB images")
    pipe.set_progress_bar_config(disable=True)
    return Model(name, pipe, card_dataset(folder))


class Models:
    """Loaded pipelines by name, the most recently used few kept in memory."""

    def __init__(self, device: str, keep: int = 2) -> None:
        self.device, self.keep = device, keep
        self.loaded: OrderedDict[str, Model] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, name: str) -> Model:
        with self.lock:
            if name not in self.loaded:
                self.loaded[name] = load_model(name, self.device)
                while len(self.loaded) > self.keep:
                    self.loaded.popitem(last=False)
            self.loaded.move_to_end(name)
            return self.loaded[name]

    def page(self, name: str) -> Model:
        """`get`, with a failure shown on the page."""
        try:
            return self.get(name)
        except ModelError as e:
            raise gr.Error(str(e)) from None


def whole_number(what: str, value: Any, low: int, high: int | None = None) -> int:
    """`value` as an int in [low, high], or a message on the page saying what is allowed."""
    allowed = f"from {low} to {high}" if high is not None else f"at least {low}"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise gr.Error(f"{what}: enter a whole number {allowed}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{what}: {value!r} is not a number; enter a whole number {allowed}") from None
    if not number.is_integer() or number < low or (high is not None and number > high):
        raise gr.Error(f"{what} must be a whole number {allowed}, got {number:g}")
    return int(number)


def display(images: torch.Tensor | list[Image.Image], cols: int | None = None) -> Image.Image:
    """Images (on [-1, 1], values outside clipped as for x_t; or PIL images) as one enlarged grid."""
    pil = images if isinstance(images, list) else to_pil(images)
    scale = max(1, math.ceil(DISPLAY_PX / pil[0].width))
    return image_grid(pil, cols=cols, pad=1 if len(pil) > 1 else 0, scale=scale)  # cols: as square as possible


def save_downloads(images: list[Image.Image], grid: Image.Image, folder: str) -> list[str]:
    """The samples as PNGs at the model's resolution in a zip, and the grid the page shows."""
    archive, grid_path = Path(folder, "samples.zip"), Path(folder, "samples_grid.png")
    with zipfile.ZipFile(archive, "w") as zf:
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            zf.writestr(f"sample_{i:03d}.png", buffer.getvalue())
    grid.save(grid_path)
    return [str(grid_path), str(archive)]


def model_input(model: Model, image: Image.Image | None, what: str) -> tuple[torch.Tensor, str]:
    """An uploaded image as the network's input (uint8 [C, H, W]), converted as training converts images, and a
    note saying what the conversion did."""
    if image is None:
        raise gr.Error(f"{what}: upload an image, or choose dataset images")
    mode = "L" if model.channels == 1 else "RGB"
    try:
        pixels = to_tensor(image, model.size, model.channels)
    except Exception as e:
        raise gr.Error(f"{what}: this image cannot be used ({type(e).__name__}: {e})") from None
    changes = []
    if image.mode != mode:
        changes.append(f"{image.mode} to {mode}")
    if image.size != (model.size, model.size):
        changes.append(f"{image.width}×{image.height} resized and center-cropped to {model.size}×{model.size}")
    return pixels, (f"{what}: converted " + ", ".join(changes) + " (as training converts images)") if changes else ""


_DATASETS: dict[tuple, ImageDataset] = {}


def dataset_images(model: Model, dataset: str | None, split: str, indices: list[Any]) -> tuple[torch.Tensor, str]:
    """Images of a dataset (a Hub id, local path or sklearn-digits) at the network's size, uint8 [N, C, H, W], and
    a note of what converting them to it did (as for uploads)."""
    dataset = (dataset or "").strip()
    if not dataset:
        raise gr.Error("dataset images: name a dataset (a Hub id, a local path, or sklearn-digits)")
    key = (dataset, split, model.size, model.channels)
    if key not in _DATASETS:
        try:
            ds, column = load_image_dataset(dataset, split=split)
        except Exception as e:
            raise gr.Error(f"dataset {dataset!r} (split {split!r}) could not be loaded: {e}") from None
        _DATASETS[key] = ImageDataset(ds, column, model.size, model.channels)
    images = _DATASETS[key]
    chosen = [whole_number(f"image index ({dataset} has {len(images)})", i, 0, len(images) - 1) for i in indices]
    changes = sorted({change for i in chosen if (change := images.conversion(i))})
    note = f"dataset images: converted {', '.join(changes)} (as training converts images)" if changes else ""
    return torch.stack([images[i] for i in chosen]), note


class Job:
    """A pipeline call run in a worker thread and followed from the page through the pipeline's step callback
    (`callback_on_step_end`): the callback records the latest step and ends the call once the page cancels the job
    (diffusers' `pipe._interrupt`)."""

    def __init__(self, total: int) -> None:
        self.total = total
        # (steps done, t, the step's tensors), replaced whole by the worker so the page never reads a mix of steps
        self.latest: tuple[int, Any, dict[str, torch.Tensor]] | None = None
        self.cancelled = threading.Event()

    def status(self) -> str:
        """The running job's status line: how far it is."""
        return "starting…" if self.latest is None else f"step {self.latest[0]} of {self.total}…"

    def callback(self, pipe: DDPMPaperPipeline, i: int, t: Any, tensors: dict[str, torch.Tensor]) -> dict:
        self.latest = (i + 1, t, tensors)
        if self.cancelled.is_set():
            pipe._interrupt = True
        return {}

    def follow(self, call: Callable[[], Any], progress: gr.Progress, desc: str, frame: Callable[[Job], tuple]):
        """Run `call()` in a worker, yielding `frame(self)` every LIVE_EVERY_S while it runs (a generator, so that
        Gradio can cancel it: closing it stops the worker after its current step). Returns `call()`'s result."""
        result = {}

        def work() -> None:
            try:
                result["value"] = call()
            except BaseException as e:
                result["error"] = e

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(LIVE_EVERY_S)
                if self.latest is not None:
                    progress((self.latest[0], self.total), desc=desc)
                if worker.is_alive():
                    yield frame(self)
        finally:
            self.cancelled.set()  # cancelled (the generator closed): the call ends after its current step
        if "error" in result:
            error = result["error"]
            if isinstance(error, gr.Error):
                raise error
            if isinstance(error, (ValueError, NonFiniteSampleError)):  # the library's checks, non-finite output
                raise gr.Error(str(error)) from None
            raise error
        return result["value"]


def failures_in_status(outputs: int, status: int):
    """A job's expected failures (bad input, a model that cannot open, non-finite output: `gr.Error`) end as its
    last frame: the message in the status line, where it stays until the next run, and the other outputs cleared so
    that nothing on the page passes for this run's result. Gradio's toast would vanish after seconds, leaving
    bare "Error" badges beside the previous run's status, and print a traceback on the server for each bad input.
    Anything else is a bug, and is left to Gradio to report."""

    def wrap(handler: Callable) -> Callable:
        @functools.wraps(handler)  # Gradio reads the handler's signature (its gr.Progress) through __wrapped__
        def run(*args: Any, **kwargs: Any):
            try:
                yield from handler(*args, **kwargs)
            except gr.Error as e:
                frame: list[Any] = [None] * outputs
                frame[status] = f"**Error:** {e.message}"
                yield tuple(frame)

        return run

    return wrap


class Demo:
    """The app's handlers, around a model cache; `build` lays out the page."""

    def __init__(self, model: str, device: str, dataset: str | None, split: str, bound_batch_size: int) -> None:
        self.models = Models(device)
        self.first = self.models.get(model)  # fails before the page opens: ModelError
        self.dataset, self.split = dataset or self.first.dataset, split
        self.device = device
        self.bound_batch_size = bound_batch_size
        self.jobs: dict[str, Job] = {}  # each tab's latest job, for what its Stop button reports

    def stopped(self, tab: str) -> str:
        """The status line a Stop leaves: how far the stopped job got (its images are not a finished result)."""
        job = self.jobs.get(tab)
        done = job.latest[0] if job is not None and job.latest is not None else 0
        total = f" of {job.total}" if job is not None else ""
        return f"**Stopped** after step {done}{total}: what is shown is not a finished result. Run again to restart."

    # --- Model -------------------------------------------------------------------------------------------------

    def open_model(self, name: str) -> tuple[Any, str]:
        """The model's name for the jobs and its description; if it cannot be opened, why (the jobs keep the
        previous model)."""
        try:
            model = self.models.page(name)
        except gr.Error as e:
            return gr.skip(), f"**Error:** {e.message}"
        return model.name, model.describe()

    # --- Sample ------------------------------------------------------------------------------------------------

    @failures_in_status(outputs=5, status=4)
    def sample(self, name: str, batch_size: Any, seed: Any, steps: Any, precision: str, progress=gr.Progress()):  # noqa: B008 (Gradio's way)
        """Algorithm 2 with the chain shown as it runs: yields (x_t, x̂_0, samples, downloads, status)."""
        model = self.models.page(name)
        pipe, T = model.pipe, model.num_timesteps
        batch_size = whole_number("batch size", batch_size, 1, MAX_BATCH)
        seed = whole_number("seed", seed, 0, 2**63 - 1 - MAX_BATCH)
        steps = whole_number("number of steps", steps, 1, T)
        if precision not in PRECISIONS:
            raise gr.Error(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        generators = [torch.Generator(pipe.device).manual_seed(seed + i) for i in range(batch_size)]
        job, skip, start = Job(total=steps), gr.skip(), time.monotonic()
        self.jobs["sample"] = job

        def call():
            return pipe(
                batch_size,
                generator=generators,
                num_inference_steps=steps,
                precision=precision,
                callback_on_step_end=job.callback,
                callback_on_step_end_tensor_inputs=["latents", "pred_original_sample"],
            ).images

        def live(job: Job) -> tuple:
            if job.latest is None:
                return skip, skip, skip, skip, "starting…"
            done, t, tensors = job.latest
            status = f"step {done} of {steps}: t = {t}, {time.monotonic() - start:.1f} s"
            return display(tensors["latents"]), display(tensors["pred_original_sample"]), skip, skip, status

        images = yield from job.follow(call, progress, "sampling", live)
        grid = display(images)
        seconds = time.monotonic() - start
        status = (
            f"{batch_size} samples, {steps} steps ({'the full chain' if steps == T else f'respaced from T = {T}'}), "
            f"seeds {seed}…{seed + batch_size - 1}, {seconds:.1f} s"
        )
        last = live(job)
        with tempfile.TemporaryDirectory(prefix="ddpm_app_") as folder:
            # Gradio copies the files into its cache before the generator resumes and the folder goes away.
            yield last[0], last[1], grid, save_downloads(images, grid, folder), status

    # --- Interpolate -------------------------------------------------------------------------------------------

    def sources(
        self, model: Model, source: str, uploads: dict[str, Any], dataset: str, indices: list
    ) -> tuple[torch.Tensor, str]:
        """The images to work on, uint8 [N, C, H, W]: uploads (by label) or dataset images, and conversion notes."""
        if source == "dataset images":
            return dataset_images(model, dataset, self.split, indices)
        converted = [model_input(model, image, what) for what, image in uploads.items()]
        notes = "; ".join(note for _, note in converted if note)
        return torch.stack([pixels for pixels, _ in converted]), notes

    @failures_in_status(outputs=2, status=1)
    def interpolate(
        self,
        name,
        source,
        image_a,
        image_b,
        dataset,
        index_a,
        index_b,
        t,
        num,
        seed,
        progress=gr.Progress(),  # noqa: B008
    ):
        """The paper's interpolation row: yields (row, status)."""
        model = self.models.page(name)
        t = whole_number("t", t, 0, model.num_timesteps - 1)
        num = whole_number("number of interpolants", num, 2, MAX_INTERPOLANTS)
        seed = whole_number("seed", seed, 0, 2**63 - 1)
        uploads = {"image A": image_a, "image B": image_b}
        pixels, notes = self.sources(model, source, uploads, dataset, [index_a, index_b])
        generator = torch.Generator(model.pipe.device).manual_seed(seed)
        job = self.jobs["interpolate"] = Job(total=t + 1)

        def call():
            return model.pipe.interpolate(
                pixels[0], pixels[1], t=t, num=num, generator=generator, callback_on_step_end=job.callback
            )

        out = yield from job.follow(call, progress, f"decoding from t = {t}", lambda job: (gr.skip(), job.status()))
        ends = scale_to_model(pixels).to(out.images.device)
        row = display(torch.cat([ends[:1], out.images, ends[1:]]), cols=num + 2)
        lambdas = ", ".join(f"{v:.2f}" for v in out.lambdas.tolist())
        status = f"source A, then λ = {lambdas}, then source B; diffused to t = {t}."
        yield row, status + (f" {notes}." if notes else "")

    # --- Likelihood --------------------------------------------------------------------------------------------

    @failures_in_status(outputs=4, status=1)
    def likelihood(self, name, source, image, dataset, index, seed, progress=gr.Progress()):  # noqa: B008 (Gradio's way)
        """An image's bound in bits/dim: yields (image as the model sees it, summary, per-t terms plot, R–D plot)."""
        model = self.models.page(name)
        seed = whole_number("seed", seed, 0, 2**63 - 1)
        pixels, notes = self.sources(model, source, {"image": image}, dataset, [index])
        generator = torch.Generator(model.pipe.device).manual_seed(seed)
        job = self.jobs["likelihood"] = Job(total=math.ceil(len(pixels) * model.num_timesteps / self.bound_batch_size))

        def call():
            return model.pipe.bits_per_dim(
                pixels, generator=generator, batch_size=self.bound_batch_size, callback_on_step_end=job.callback
            )

        skip = gr.skip()
        frame = lambda job: (skip, job.status(), skip, skip)  # noqa: E731
        bpd = yield from job.follow(call, progress, "the bound, t = 0 … T-1", frame)
        rd = rate_distortion(bpd)  # from the same terms: the bound is computed once
        terms, tenth = bpd.terms[0].cpu().double(), max(1, len(rd.rate) // 10)
        summary = (
            f"**{float(bpd.total[0]):.3f} bits/dim** (the variational bound, Eq. 5): L_T (prior) "
            f"{float(bpd.prior[0]):.2e}, Σ L_1…L_(T-1) {float(terms[1:].sum()):.3f}, L_0 (decoder) "
            f"{float(terms[0]):.3f}. Sending all T steps costs a rate of {rd.rate[-1]:.3f} bits/dim; "
            f"after {tenth} of the {len(rd.rate)} reverse steps the distortion is {rd.distortion[tenth - 1]:.1f} "
            f"(RMSE on 0..255)." + (f" {notes}." if notes else "")
        )
        yield display(scale_to_model(pixels)), summary, terms_plot(terms), rd_plot(rd)

    # --- The page ----------------------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        first, T = self.first, self.first.num_timesteps
        with gr.Blocks(title=f"DDPM: {first.name}", analytics_enabled=False) as app:
            gr.Markdown(
                "# Denoising Diffusion Probabilistic Models\n"
                "Ho, Jain & Abbeel (2020), as `ddpm_hf`'s diffusers pipeline. Sample the model and watch the reverse "
                "process run, interpolate between two images, or measure an image's likelihood."
            )
            model_name = gr.State(first.name)
            with gr.Row():
                model_box = gr.Textbox(first.name, label="Model: a pipeline folder or Hub repo id", scale=3)
                open_button = gr.Button("Open", scale=0)
            info = gr.Markdown(first.describe(), elem_id="model-info")
            open_button.click(self.open_model, model_box, [model_name, info], concurrency_id=CONCURRENCY)

            with gr.Tab("Sample"):
                with gr.Row():
                    batch = gr.Number(16, label=f"Batch size (1 to {MAX_BATCH})", precision=0, elem_id="batch")
                    seed = gr.Number(0, label="Seed (image i uses seed + i)", precision=0, elem_id="seed")
                    steps = gr.Number(T, label=f"Steps (T = {T}; fewer: respaced sub-chain)", elem_id="steps")
                    precision = gr.Radio(PRECISIONS, value="auto", label="Precision")
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
                    self.sample,
                    [model_name, batch, seed, steps, precision],
                    [live_xt, live_x0, final, files, status],
                    concurrency_id=CONCURRENCY,
                )
                stop.click(functools.partial(self.stopped, "sample"), None, status, cancels=[event])

            with gr.Tab("Interpolate"):
                source = gr.Radio(
                    ["dataset images", "uploaded images"],
                    value="dataset images" if self.dataset else "uploaded images",
                    label="Interpolate between",
                )
                with gr.Row():
                    image_a = gr.Image(label="Image A", type="pil", image_mode=None, elem_id="image-a")
                    image_b = gr.Image(label="Image B", type="pil", image_mode=None, elem_id="image-b")
                with gr.Row():
                    dataset = gr.Textbox(self.dataset or "", label=f"Dataset ({self.split} split)")
                    index_a = gr.Number(0, label="Index of A", precision=0)
                    index_b = gr.Number(1, label="Index of B", precision=0)
                with gr.Row():
                    t = gr.Slider(0, T - 1, value=min(T // 2, T - 1), step=1, label="Noise level t (0-based)")
                    num = gr.Slider(2, MAX_INTERPOLANTS, value=8, step=1, label="Steps in λ (both ends included)")
                    interp_seed = gr.Number(0, label="Seed", precision=0)
                with gr.Row():
                    interp_run = gr.Button("Interpolate", variant="primary", elem_id="interpolate")
                    interp_stop = gr.Button("Stop", variant="stop")
                row = gr.Image(label="Source A, interpolants λ = 0 … 1, source B", format="png", elem_id="row")
                interp_status = gr.Markdown()
                interp_event = interp_run.click(
                    self.interpolate,
                    [model_name, source, image_a, image_b, dataset, index_a, index_b, t, num, interp_seed],
                    [row, interp_status],
                    concurrency_id=CONCURRENCY,
                )
                stopped = functools.partial(self.stopped, "interpolate")
                interp_stop.click(stopped, None, interp_status, cancels=[interp_event])

            with gr.Tab("Likelihood"):
                bound_source = gr.Radio(
                    ["dataset images", "uploaded images"],
                    value="dataset images" if self.dataset else "uploaded images",
                    label="Measure",
                )
                with gr.Row():
                    upload = gr.Image(label="Image", type="pil", image_mode=None, elem_id="bound-image")
                    with gr.Column():
                        bound_dataset = gr.Textbox(self.dataset or "", label=f"Dataset ({self.split} split)")
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
                    self.likelihood,
                    [model_name, bound_source, upload, bound_dataset, bound_index, bound_seed],
                    [seen, summary, terms, curve],
                    concurrency_id=CONCURRENCY,
                )
                bound_stop.click(functools.partial(self.stopped, "likelihood"), None, summary, cancels=[bound_event])
        # One job at a time for the whole app (a CPU runs one well), the rest wait in the queue.
        app.queue(default_concurrency_limit=1)
        return app


def terms_plot(terms: torch.Tensor):
    """The bound's per-t terms in bits/dim, L_0 … L_(T-1), on a log scale."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.2), layout="constrained")
    ax = figure.add_subplot()
    ax.semilogy(range(len(terms)), terms.clamp_min(1e-12).numpy(), lw=1)
    ax.set(xlabel="t", ylabel="L_t, bits/dim (L_0: the decoder)")
    return figure


def rd_plot(rd):
    """Distortion against rate, and both against the reverse steps received, as the paper's Fig. 5."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 3.2), layout="constrained")
    ax1, ax2 = figure.subplots(1, 2)
    ax1.plot(rd.rate, rd.distortion, lw=1)
    ax1.set(xlabel="rate (bits/dim)", ylabel="distortion (RMSE, 0..255)")
    ax2.plot(rd.reverse_steps, rd.distortion, lw=1, label="distortion")
    ax2.set(xlabel="reverse steps received", ylabel="RMSE (0..255)")
    ax3 = ax2.twinx()
    ax3.plot(rd.reverse_steps, rd.rate, lw=1, color="tab:orange", label="rate")
    ax3.set_ylabel("bits/dim")
    return figure


def default_model(app_file: str = __file__) -> str:
    """The model to open when --model is not given: DDPM_HF_MODEL; in a Space, the first of `models:` in the Space's
    README front matter; else the README's digits run."""
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV]
    readme = Path(app_file).with_name("README.md")
    if readme.is_file():
        from huggingface_hub import SpaceCard

        data = SpaceCard.load(readme).data
        if data.get("sdk") == "gradio" and data.get("models"):
            return data["models"][0]
    if os.path.isdir(DEFAULT_MODEL):
        return DEFAULT_MODEL
    raise SystemExit(NO_MODEL.format(default=DEFAULT_MODEL))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=f"a pipeline folder or Hub repo id (default: {DEFAULT_MODEL})")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dataset_name", default=None, help="dataset for the indices (default: the model card's)")
    parser.add_argument("--split", default="train", help="that dataset's split")
    parser.add_argument("--bound_batch_size", type=positive_int, default=256, help="(image, t) pairs per forward pass")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    return parser.parse_args(argv)


def make_demo(args: argparse.Namespace) -> Demo:
    model = args.model or default_model()
    try:
        return Demo(model, args.device, args.dataset_name, args.split, args.bound_batch_size)
    except ModelError as e:
        raise SystemExit(f"{e}\n\n{NO_MODEL.format(default=DEFAULT_MODEL)}" if args.model is None else str(e)) from None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    demo = make_demo(args)
    print(f"opening {demo.first.name} at http://{args.host}:{args.port}", file=sys.stderr)
    demo.build().launch(server_name=args.host, server_port=args.port, show_error=True, ssr_mode=False)


if __name__ == "__main__":
    main()
