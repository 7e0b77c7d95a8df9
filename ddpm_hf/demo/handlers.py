"""The demo's handlers: what each button of the page does, as generators of the page's outputs.

Every job is a pipeline call followed through its step callback (`callback_on_step_end`), which shows the chain
live and stops the call when the visitor cancels it; so with the same seed the samples are
`pipe(batch_size, generator=[seed, seed + 1, ...], num_inference_steps)`'s. What a visitor may open is decided by
`Access`, what a job may ask for by its `Limits`.
"""

from __future__ import annotations

import functools
import math
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
import torch
from PIL import Image

from ..analysis import rate_distortion
from ..checks import whole_number
from ..data import DIGITS, ImageDataset, load_image_dataset, to_tensor
from ..errors import DDPMError
from ..fastpath import PRECISIONS
from ..pipeline import NonFiniteSampleError
from ..pixels import scale_to_model
from ..schedulers import check_num_inference_steps, gives_pred_original_sample
from .access import Access, Limits
from .jobs import Job, VisitorJobs
from .models import Model, ModelError, Models, card_datasets, model_folder
from .views import display, rd_plot, save_downloads, terms_plot

MAX_SEED = 2**63 - 1
LOCAL_SESSION = "local"  # the session of a handler called without a page (a script, a test)


class PageError(DDPMError, ValueError):
    """What a visitor asked for that the page refuses; shown in the tab's status line."""


def failures_in_status(outputs: int, status: int) -> Callable:
    """A job's expected failures (the package's refusals: bad input, a model that is not served or cannot open,
    non-finite output) end as its last frame: the message in the status line, where it stays until the next run,
    and the other outputs cleared so that nothing on the page passes for this run's result. Gradio's toast would
    vanish after seconds and print a traceback on the server for each bad input. Anything else is a bug, and is
    left to Gradio to report."""

    def wrap(handler: Callable) -> Callable:
        @functools.wraps(handler)  # Gradio reads the handler's signature (gr.Request, gr.Progress) through it
        def run(*args: Any, **kwargs: Any) -> Iterator[tuple]:
            try:
                yield from handler(*args, **kwargs)
            except (DDPMError, ValueError, NonFiniteSampleError, gr.Error) as e:
                frame: list[Any] = [None] * outputs
                frame[status] = f"**Error:** {e.message if isinstance(e, gr.Error) else e}"
                yield tuple(frame)

        return run

    return wrap


def session_of(request: gr.Request | None) -> str:
    """The visitor's browser session (Gradio's session hash)."""
    return getattr(request, "session_hash", None) or LOCAL_SESSION


def model_input(model: Model, image: Image.Image | None, what: str) -> tuple[torch.Tensor, str]:
    """An uploaded image as the network's input (uint8 [C, H, W]), converted as training converts images, and a
    note saying what the conversion did."""
    if image is None:
        raise PageError(f"{what}: upload an image, or choose dataset images")
    mode = "L" if model.channels == 1 else "RGB"
    try:
        pixels = to_tensor(image, model.size, model.channels)
    except Exception as e:
        raise PageError(f"{what}: this image cannot be used ({type(e).__name__}: {e})") from None
    changes = []
    if image.mode != mode:
        changes.append(f"{image.mode} to {mode}")
    if image.size != (model.size, model.size):
        changes.append(f"{image.width}×{image.height} resized and center-cropped to {model.size}×{model.size}")
    return pixels, (f"{what}: converted " + ", ".join(changes) + " (as training converts images)") if changes else ""


class Demo:
    """The app's handlers, around the models and datasets that `access` lets visitors open."""

    def __init__(
        self,
        access: Access,
        device: str,
        split: str = "train",
        bound_batch_size: int = 256,
        dataset: str | None = None,
    ) -> None:
        self.access, self.device, self.split, self.bound_batch_size = access, device, split, bound_batch_size
        self.limits = access.limits
        self.models = Models(device, token=access.token)
        self.first = self.models.get(access.models[0])  # fails before the page opens: ModelError
        self.dataset = dataset or self.first.dataset  # what the tabs offer first
        self.jobs = VisitorJobs()
        self._datasets: OrderedDict[tuple, ImageDataset] = OrderedDict()
        self._datasets_lock = threading.Lock()

    @classmethod
    def serve(
        cls,
        models: list[str],
        datasets: list[str] = (),
        public: bool = False,
        limits: Limits | None = None,
        device: str = "cpu",
        split: str = "train",
        bound_batch_size: int = 256,
    ) -> Demo:
        """The demo of the owner's `models` (the first opens with the page) and `datasets`, which in public mode are
        all a visitor may open, with the datasets their model cards name and the bundled digits."""
        token = False if public else None
        named = list(dict.fromkeys(datasets))
        for name in dict.fromkeys(models):
            try:
                named += card_datasets(model_folder(name, token))
            except Exception as e:
                raise ModelError(f"{name} could not be opened as a DDPM pipeline: {e}") from e
        default = named[0] if named else None
        if public:
            named.append(DIGITS)
        access = Access(public, tuple(dict.fromkeys(models)), tuple(dict.fromkeys(named)), limits or Limits())
        return cls(access, device, split, bound_batch_size, default)

    def model(self, name: str | None) -> Model:
        return self.models.get(self.access.model(name))

    def stopped(self, tab: str, request: gr.Request | None = None) -> str:
        """The status line a visitor's Stop leaves: how far their stopped job got (not a finished result)."""
        job = self.jobs.get(session_of(request), tab)
        total = f" of {job.total}" if job is not None else ""
        done = job.done if job is not None else 0
        return f"**Stopped** after step {done}{total}: what is shown is not a finished result. Run again to restart."

    def forget(self, request: gr.Request | None = None) -> None:
        """A visitor closed the page: their jobs go."""
        self.jobs.forget(session_of(request))

    # --- Model -------------------------------------------------------------------------------------------------

    def open_model(self, name: str) -> tuple[Any, str]:
        """The model's name for the jobs and its description; if it cannot be opened, why (the jobs keep the
        previous model)."""
        try:
            model = self.model(name)
        except DDPMError as e:
            return gr.skip(), f"**Error:** {e}"
        return model.name, model.describe()

    # --- Sample ------------------------------------------------------------------------------------------------

    @failures_in_status(outputs=5, status=4)
    def sample(
        self,
        name: str,
        batch_size: Any,
        seed: Any,
        steps: Any,
        precision: str,
        request: gr.Request = None,
        progress=gr.Progress(),  # noqa: B008 (Gradio's way)
    ) -> Iterator[tuple]:
        """Sampling with the chain shown as it runs: yields (x_t, x̂_0, samples, downloads, status)."""
        model = self.model(name)
        pipe, T = model.for_job(), model.num_timesteps
        batch_size = whole_number("batch size", batch_size, 1, self.limits.max_batch_size)
        seed = whole_number("seed", seed, 0, MAX_SEED - self.limits.max_batch_size)
        steps = whole_number("number of steps", steps, 1, min(T, self.limits.max_steps or T))
        steps = check_num_inference_steps(pipe.scheduler, steps, "number of steps")  # what this sampler's spacing takes
        if precision not in PRECISIONS:
            raise PageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        sampler = type(pipe.scheduler).__name__
        shows_x0 = gives_pred_original_sample(pipe.scheduler, steps)
        no_x0 = "" if shows_x0 else f" ({sampler} gives no x̂_0)"
        generators = [torch.Generator(pipe.device).manual_seed(seed + i) for i in range(batch_size)]
        job, skip, start = self.jobs.start(session_of(request), "sample", steps), gr.skip(), time.monotonic()

        def call():
            return pipe(
                batch_size,
                generator=generators,
                num_inference_steps=steps,
                precision=precision,
                callback_on_step_end=job.callback,
                callback_on_step_end_tensor_inputs=["latents", "pred_original_sample"] if shows_x0 else ["latents"],
            ).images

        def live(job: Job) -> tuple:
            if job.latest is None:
                return skip, skip, skip, skip, "starting…"
            done, t, tensors = job.latest
            x0 = display(tensors["pred_original_sample"]) if shows_x0 else None
            status = f"step {done} of {steps}: t = {t}, {time.monotonic() - start:.1f} s{no_x0}"
            return display(tensors["latents"]), x0, skip, skip, status

        images = yield from job.follow(call, live, self._progress(progress, "sampling"))
        grid = display(images)
        seconds = time.monotonic() - start
        status = (
            f"{batch_size} samples, {steps} steps ({'the full chain' if steps == T else f'respaced from T = {T}'}), "
            f"seeds {seed}…{seed + batch_size - 1}, {seconds:.1f} s{no_x0}"
        )
        last = live(job)
        with tempfile.TemporaryDirectory(prefix="ddpm_app_") as folder:
            # Gradio copies the files into its cache before the generator resumes and the folder goes away.
            yield last[0], last[1], grid, save_downloads(images, grid, folder), status

    @staticmethod
    def _progress(progress: Any, desc: str) -> Callable[[Job], None]:
        return lambda job: progress((job.done, job.total), desc=desc)

    # --- Interpolate and Likelihood: images from uploads or a dataset ------------------------------------------

    def dataset_images(self, model: Model, dataset: str | None, indices: list[Any]) -> tuple[torch.Tensor, str]:
        """Images of a dataset the visitor may open, at the network's size, uint8 [N, C, H, W], and a note of what
        converting them to it did (as for uploads)."""
        dataset = self.access.dataset(dataset)
        images = self._images_of(dataset, model.size, model.channels)
        chosen = [whole_number(f"image index ({dataset} has {len(images)})", i, 0, len(images) - 1) for i in indices]
        changes = sorted({change for i in chosen if (change := images.conversion(i))})
        note = f"dataset images: converted {', '.join(changes)} (as training converts images)" if changes else ""
        return torch.stack([images[i] for i in chosen]), note

    def _images_of(self, dataset: str, size: int, channels: int, keep: int = 4) -> ImageDataset:
        """A dataset split at a network's size, the last few used kept open."""
        key = (dataset, self.split, size, channels)
        with self._datasets_lock:
            if key not in self._datasets:
                try:
                    ds, column = load_image_dataset(dataset, split=self.split, token=self.access.token)
                except Exception as e:
                    raise PageError(f"dataset {dataset!r} (split {self.split!r}) could not be loaded: {e}") from None
                self._datasets[key] = ImageDataset(ds, column, size, channels)
                while len(self._datasets) > keep:
                    self._datasets.popitem(last=False)
            self._datasets.move_to_end(key)
            return self._datasets[key]

    def sources(
        self, model: Model, source: str, uploads: dict[str, Any], dataset: str, indices: list
    ) -> tuple[torch.Tensor, str]:
        """The images to work on, uint8 [N, C, H, W]: uploads (by label) or dataset images, and conversion notes."""
        if source == "dataset images":
            return self.dataset_images(model, dataset, indices)
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
        request: gr.Request = None,
        progress=gr.Progress(),  # noqa: B008
    ) -> Iterator[tuple]:
        """The paper's interpolation row: yields (row, status)."""
        model = self.model(name)
        t = whole_number("t", t, 0, model.num_timesteps - 1)
        num = whole_number("number of interpolants", num, 2, self.limits.max_interpolants)
        seed = whole_number("seed", seed, 0, MAX_SEED)
        uploads = {"image A": image_a, "image B": image_b}
        pixels, notes = self.sources(model, source, uploads, dataset, [index_a, index_b])
        generator = torch.Generator(model.pipe.device).manual_seed(seed)
        job = self.jobs.start(session_of(request), "interpolate", t + 1)

        pipe = model.for_job()

        def call():
            return pipe.interpolate(
                pixels[0], pixels[1], t=t, num=num, generator=generator, callback_on_step_end=job.callback
            )

        frame = lambda job: (gr.skip(), job.status())  # noqa: E731
        out = yield from job.follow(call, frame, self._progress(progress, f"decoding from t = {t}"))
        ends = scale_to_model(pixels).to(out.images.device)
        row = display(torch.cat([ends[:1], out.images, ends[1:]]), cols=num + 2)
        lambdas = ", ".join(f"{v:.2f}" for v in out.lambdas.tolist())
        status = f"source A, then λ = {lambdas}, then source B; diffused to t = {t}."
        yield row, status + (f" {notes}." if notes else "")

    @failures_in_status(outputs=4, status=1)
    def likelihood(
        self,
        name,
        source,
        image,
        dataset,
        index,
        seed,
        request: gr.Request = None,
        progress=gr.Progress(),  # noqa: B008
    ) -> Iterator[tuple]:
        """An image's bound in bits/dim: yields (image as the model sees it, summary, per-t terms plot, R–D plot)."""
        model = self.model(name)
        seed = whole_number("seed", seed, 0, MAX_SEED)
        pixels, notes = self.sources(model, source, {"image": image}, dataset, [index])
        generator = torch.Generator(model.pipe.device).manual_seed(seed)
        passes = math.ceil(len(pixels) * model.num_timesteps / self.bound_batch_size)
        job = self.jobs.start(session_of(request), "likelihood", passes)

        pipe = model.for_job()

        def call():
            return pipe.bits_per_dim(
                pixels, generator=generator, batch_size=self.bound_batch_size, callback_on_step_end=job.callback
            )

        skip = gr.skip()
        frame = lambda job: (skip, job.status(), skip, skip)  # noqa: E731
        bpd = yield from job.follow(call, frame, self._progress(progress, "the bound, t = 0 … T-1"))
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
