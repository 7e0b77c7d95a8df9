"""examples/app.py, the Gradio demo, through its handlers: what the page gets for each action and each bad input.

The page itself, in a real browser, is tests/demo/test_app_browser.py.
"""

import io
import re
import threading
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.analysis import to_pil
from ddpm_hf.card import render_model_card
from ddpm_hf.data import scale_to_model, to_tensor
from ddpm_hf.grid import image_grid

gr = pytest.importorskip("gradio", reason="gradio is not installed (the demo extra: pip install -e '.[demo]')")
from ddpm_hf.demo import Demo, Job, display  # noqa: E402
from example_scripts import load_example  # noqa: E402
from tiny import train_tiny_digits  # noqa: E402

T = 50  # the tiny model's diffusion length
app = load_example("app")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny digits model saved as training leaves it: the pipeline and a card naming its dataset."""
    folder = tmp_path_factory.mktemp("app") / "tiny-digits"
    train_tiny_digits(steps=40, num_train_timesteps=T).save_pretrained(folder)
    render_model_card("tiny-digits", dataset="sklearn-digits").save(folder / "README.md")
    return folder


@pytest.fixture(scope="module")
def demo(model_dir):
    return Demo.serve([str(model_dir)], device="cpu")


@pytest.fixture(scope="module")
def pipe(model_dir):
    pipe = DDPMPaperPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def error_of(job, status: int) -> str:
    """Run a job to its end; the error its last frame states (nothing else shown), with no exception raised."""
    *_, last = job
    assert last[status].startswith("**Error:** "), last[status]
    assert all(value is None for i, value in enumerate(last) if i != status)  # no stale result beside the error
    return last[status]


def test_the_model_is_described_with_its_training_dataset(demo, model_dir):
    assert demo.dataset == "sklearn-digits"  # from the model card
    assert demo.first.describe().startswith(f"**{model_dir}**: 8×8×1 images")
    assert f"T = {T}" in demo.first.describe()


def test_sample_streams_the_chain_and_ends_with_the_pipelines_images(demo, model_dir, pipe):
    frames, downloads = [], {}
    for frame in demo.sample(str(model_dir), 3, 7, 20, "fp32"):
        frames.append(frame)
        if isinstance(frame[3], list):  # the final frame: read the downloads while Gradio would copy them
            downloads = {Path(p).name: Path(p).read_bytes() for p in frame[3]}
    live, final = frames[:-1], frames[-1]

    # The pipeline's own chain for those seeds and steps, in the precision the page asked for, step by step.
    generators = [torch.Generator().manual_seed(7 + i) for i in range(3)]
    chain = []
    expected = pipe(
        batch_size=3,
        generator=generators,
        num_inference_steps=20,
        output_type="pil",
        precision="fp32",
        callback_on_step_end=lambda p, i, t, kw: chain.append({k: v.clone() for k, v in kw.items()}) or {},
        callback_on_step_end_tensor_inputs=["latents", "pred_original_sample"],
    ).images
    # Every live frame shows the chain at the step its status names: the running sample and its x̂_0.
    shown = [f for f in live if isinstance(f[4], str) and f[4].startswith("step ")]
    for xt, x0, samples, files, status in shown:
        k = int(status.split()[1])
        assert np.array_equal(pixels(xt), pixels(display(chain[k - 1]["latents"])))
        assert np.array_equal(pixels(x0), pixels(display(chain[k - 1]["pred_original_sample"])))
        assert samples == gr.skip() and files == gr.skip()  # no samples before the chain ends
        assert f"of 20: t = {int(pipe.scheduler.timesteps[k - 1])}," in status

    # The end: exactly what DDPMPaperPipeline gives for those seeds and steps, on the page and in the downloads.
    grid = image_grid(expected, cols=2, pad=1, scale=8)  # as square as possible
    assert np.array_equal(pixels(final[2]), pixels(grid))
    with zipfile.ZipFile(io.BytesIO(downloads["samples.zip"])) as zf:
        names = sorted(zf.namelist())
        assert names == ["sample_000.png", "sample_001.png", "sample_002.png"]
        for name, image in zip(names, expected, strict=True):
            assert np.array_equal(pixels(Image.open(io.BytesIO(zf.read(name)))), pixels(image))
    assert np.array_equal(pixels(Image.open(io.BytesIO(downloads["samples_grid.png"]))), pixels(grid))
    assert "20 steps (respaced from T = 50)" in final[4] and "seeds 7…9" in final[4]
    # The last frame shows the last step: x_0, and x̂_0 at t = 0, which the last step returns as x_0 (no noise)
    assert np.array_equal(pixels(final[0]), pixels(grid)) and np.array_equal(pixels(final[1]), pixels(grid))


def test_closing_a_sample_job_stops_the_chain(demo, model_dir):
    """Gradio cancels a running job by closing its generator: the chain must not go on behind the page's back."""
    calls = []
    hook = demo.first.pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        job = demo.sample(str(model_dir), 2, 0, T, "fp32")
        next(job)  # the job is running
        job.close()
        time.sleep(0.5)
        count = len(calls)
        time.sleep(0.5)
    finally:
        hook.remove()
    assert len(calls) == count < T


def test_a_cancelled_job_ends_its_pipeline_call_through_the_step_callback(demo):
    """Interpolation and the bound run in a worker thread too; closing the job's generator interrupts the call."""
    pipe = demo.first.pipe
    job, seen = Job(total=T), []

    def call():
        def callback(p, i, t, kwargs):
            seen.append(i)
            time.sleep(0.01)
            return job.callback(p, i, t, kwargs)

        return pipe.progressive(1, every=10, callback_on_step_end=callback)

    follow = job.follow(call, frame=lambda job: ("idle",))
    assert next(follow) == ("idle",)
    follow.close()  # as Gradio does on Stop
    time.sleep(0.3)
    count = len(seen)
    time.sleep(0.3)
    assert len(seen) == count < T
    assert threading.active_count() < 50


def test_interpolation_row_is_the_pipelines(demo, model_dir, pipe):
    *_, (row, status) = demo.interpolate(str(model_dir), "dataset images", None, None, "sklearn-digits", 3, 8, 20, 5, 1)
    digits, note = demo.dataset_images(demo.first, "sklearn-digits", [3, 8])
    assert note == ""  # the digits network takes the digits as they are
    out = pipe.interpolate(digits[0], digits[1], t=20, num=5, generator=torch.Generator().manual_seed(1))
    expected = display(torch.cat([scale_to_model(digits[:1]), out.images, scale_to_model(digits[1:])]), cols=7)
    assert np.array_equal(pixels(row), pixels(expected))
    assert row.size == (7 * 64 + 6, 64)
    assert "λ = 0.00, 0.25, 0.50, 0.75, 1.00" in status and "t = 20" in status


def test_uploads_are_converted_as_training_converts_them(demo, model_dir, pipe):
    a = Image.new("RGB", (40, 30), (250, 250, 250))
    b = Image.fromarray(np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1)), mode="L")  # 16×16 gradient
    *_, (row, status) = demo.interpolate(str(model_dir), "uploaded images", a, b, "", 0, 0, 10, 3, 0)
    assert "image A: converted RGB to L, 40×30 resized and center-cropped to 8×8" in status
    assert "image B: converted 16×16 resized and center-cropped to 8×8" in status
    x_a, x_b = to_tensor(a, 8, 1), to_tensor(b, 8, 1)
    out = pipe.interpolate(x_a, x_b, t=10, num=3, generator=torch.Generator().manual_seed(0))
    ends = scale_to_model(torch.stack([x_a, x_b]))
    expected = display(torch.cat([ends[:1], out.images, ends[1:]]), cols=5)
    assert np.array_equal(pixels(row), pixels(expected))


def test_dataset_images_of_another_format_are_converted_and_said(demo):
    other = types.SimpleNamespace(size=16, channels=3)  # what dataset_images reads of a model
    images, note = demo.dataset_images(other, "sklearn-digits", [0, 1])
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    assert note == "dataset images: converted 8×8 grayscale to 16×16 colour (as training converts images)"


def test_likelihood_is_the_pipelines_bound_with_its_curves(demo, model_dir, pipe):
    *_, (seen, summary, terms, curve) = demo.likelihood(str(model_dir), "dataset images", None, "sklearn-digits", 5, 3)
    digit, _ = demo.dataset_images(demo.first, "sklearn-digits", [5])
    bpd = pipe.bits_per_dim(digit, generator=torch.Generator().manual_seed(3), batch_size=256)
    assert summary.startswith(f"**{float(bpd.total[0]):.3f} bits/dim**")
    assert np.array_equal(pixels(seen), pixels(display(scale_to_model(digit))))
    (line,) = terms.axes[0].get_lines()
    assert np.allclose(line.get_ydata(), bpd.terms[0].numpy())  # L_0 … L_(T-1), as computed
    rate_vs_distortion = curve.axes[0].get_lines()[0]
    assert len(rate_vs_distortion.get_xdata()) == T
    assert np.isclose(rate_vs_distortion.get_xdata()[-1], float(bpd.total[0] - bpd.terms[0, 0]))  # all but L_0


BAD_SAMPLES = [
    ({"steps": 0}, "number of steps must be a whole number from 1 to 50, got 0"),
    ({"steps": 51}, "number of steps must be a whole number from 1 to 50, got 51"),
    ({"steps": 2.5}, "number of steps must be a whole number from 1 to 50, got 2.5"),
    ({"steps": None}, "number of steps: enter a whole number from 1 to 50"),
    ({"batch_size": 0}, "batch size must be a whole number from 1 to 64, got 0"),
    ({"batch_size": 65}, "batch size must be a whole number from 1 to 64, got 65"),
    ({"seed": -1}, "seed must be a whole number from 0"),
    ({"precision": "fp16"}, "precision must be one of auto, fp32, bf16, got 'fp16'"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_SAMPLES)
def test_bad_sample_settings_are_messages(demo, model_dir, bad, message):
    settings = {"batch_size": 2, "seed": 0, "steps": 5, "precision": "fp32", **bad}
    assert message in error_of(demo.sample(str(model_dir), **settings), status=4)


def test_bad_interpolation_and_bound_inputs_are_messages(demo, model_dir):
    model = str(model_dir)
    cases = [
        (lambda: demo.interpolate(model, "dataset images", None, None, "sklearn-digits", 0, 1, T, 4, 0), "t must be"),
        (lambda: demo.interpolate(model, "dataset images", None, None, "sklearn-digits", 0, 1, 5, 1, 0), "from 2 to"),
        (
            lambda: demo.interpolate(model, "dataset images", None, None, "sklearn-digits", 0, 5000, 5, 4, 0),
            "image index (sklearn-digits has 1500) must be a whole number from 0 to 1499, got 5000",
        ),
        (lambda: demo.interpolate(model, "dataset images", None, None, " ", 0, 1, 5, 4, 0), "name a dataset"),
        (
            lambda: demo.interpolate(model, "uploaded images", Image.new("L", (8, 8)), None, "", 0, 1, 5, 4, 0),
            "image B: upload an image",
        ),
        (lambda: demo.likelihood(model, "uploaded images", None, "", 0, 0), "image: upload an image"),
        (lambda: demo.likelihood(model, "dataset images", None, "no/such-dataset-here", 0, 0), "could not be loaded"),
    ]
    for job, message in cases:
        assert message in error_of(job(), status=1)


def test_a_folder_that_is_not_a_pipeline_is_a_message(demo, tmp_path):
    name, info = demo.open_model(str(tmp_path))
    assert isinstance(name, type(gr.skip())) and name == gr.skip()  # the jobs keep the model they had
    assert re.match(r"\*\*Error:\*\* .* could not be opened as a DDPM pipeline: .* not a saved pipeline", info)
    assert "could not be opened as a DDPM pipeline" in demo.open_model(str(tmp_path / "missing"))[1]
    assert "could not be opened" in error_of(demo.sample(str(tmp_path), 1, 0, 5, "fp32"), status=4)  # a job's too


def test_opening_another_model(demo, model_dir, tmp_path):
    other = tmp_path / "other"
    train_tiny_digits(steps=2, num_train_timesteps=20, seed=1).save_pretrained(other)
    name, info = demo.open_model(str(other))
    assert name == str(other) and "T = 20" in info
    assert "from 1 to 20, got 50" in error_of(demo.sample(name, 1, 0, 50, "fp32"), status=4)  # that model's T
    assert demo.open_model(str(model_dir))[0] == str(model_dir)


def test_jobs_share_one_queue_slot_and_can_be_stopped(demo):
    blocks = app.build(demo)
    names = ("sample", "interpolate", "likelihood")
    jobs = [fn for fn in blocks.fns.values() if fn.fn is not None and fn.name in names]
    assert sorted(fn.name for fn in jobs) == ["interpolate", "likelihood", "sample"]
    assert {fn.concurrency_id for fn in jobs} == {app.CONCURRENCY}
    assert all(fn.concurrency_limit in (1, "default") for fn in jobs) and blocks._queue.default_concurrency_limit == 1
    stops = [fn for fn in blocks.fns.values() if fn.fn is None and fn.cancels]
    cancelled = {blocks.fns[i].name for fn in stops for i in fn.cancels}
    assert cancelled == {"sample", "interpolate", "likelihood"}
    for stop in stops:  # the same button also writes the stopped job's status line
        (job,) = (blocks.fns[i] for i in stop.cancels)
        (said,) = (fn for fn in blocks.fns.values() if fn.targets == stop.targets and fn.fn is not None)
        assert said.fn.__name__ == f"stop_{job.name}"
        assert [o._id for o in said.outputs] == [job.outputs[1 if job.name != "sample" else 4]._id]


def test_a_stop_stays_in_the_status_line(demo, model_dir):
    """After Stop, the status used to keep saying "step 47 of 1000" as if the job were still running."""
    job = demo.sample(str(model_dir), 1, 0, T, "fp32")
    frames = iter(job)
    while demo.jobs.get("local", "sample").latest is None or demo.jobs.get("local", "sample").latest[0] < 2:
        next(frames)
    job.close()  # what Gradio does to a cancelled generator
    said = demo.stopped("sample")
    assert re.fullmatch(rf"\*\*Stopped\*\* after step \d+ of {T}: what is shown is not a finished result\. .*", said)
    assert int(said.split("step ")[1].split(" ")[0]) >= 2


def test_without_a_model_it_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(app.MODEL_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_:
        app.default_models(str(tmp_path / "app.py"))
    assert "python examples/train_ddpm.py --preset digits" in str(exit_.value)
    assert "--model DIR_OR_REPO_ID" in str(exit_.value)
    (tmp_path / "runs" / "digits").mkdir(parents=True)
    assert app.default_models(str(tmp_path / "app.py")) == ["runs/digits"]  # the README's run, when it is there
    (tmp_path / "README.md").write_text("---\nsdk: gradio\napp_file: app.py\nmodels:\n- someone/ddpm-digits\n---\n")
    assert app.default_models(str(tmp_path / "app.py")) == ["someone/ddpm-digits"]  # in a Space: its model
    monkeypatch.setenv(app.MODEL_ENV, "other/model")
    assert app.default_models(str(tmp_path / "app.py")) == ["other/model"]


def test_the_command_line_refuses_a_folder_that_is_not_a_pipeline(tmp_path):
    with pytest.raises(SystemExit) as exit_:
        app.make_demo(app.parse_args(["--model", str(tmp_path)]))
    assert "holds no model_index.json: it is not a saved pipeline" in str(exit_.value)


def test_display_enlarges_small_images():
    images = torch.full((2, 1, 8, 8), -1.0)  # black
    images[1] = 1.0  # white
    grid = pixels(display(images))
    assert grid.shape == (64, 2 * 64 + 1)  # 8× nearest-neighbour, one mid-gray pixel between
    assert grid[:, :64].max() == 0 and (grid[:, 64] == 128).all() and grid[:, 65:].min() == 255
    assert pixels(display(torch.zeros(16, 1, 8, 8))).shape == (4 * 65 - 1, 4 * 65 - 1)  # a square grid
    assert to_pil(images)[0].size == (8, 8)


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_the_command_line_checks_the_bound_batch_size_before_starting(value, capsys):
    """--bound_batch_size 0 used to start the app, then fail every Likelihood job with a message a visitor cannot act
    on."""
    with pytest.raises(SystemExit):
        app.parse_args(["--bound_batch_size", value])
    assert "--bound_batch_size" in capsys.readouterr().err


def test_a_non_finite_network_is_a_message_in_every_tab(demo, tmp_path):
    """The Interpolate tab showed black interpolants and the Likelihood tab "nan bits/dim" as results."""
    broken = tmp_path / "nan-model"
    pipe = train_tiny_digits(steps=1, num_train_timesteps=T)
    with torch.no_grad():
        pipe.unet.conv_out.bias[0] = float("nan")
    pipe.save_pretrained(broken)
    interpolation = demo.interpolate(str(broken), "dataset images", None, None, "sklearn-digits", 0, 1, 10, 3, 0)
    assert "interpolants hold NaN or infinite values" in error_of(interpolation, status=1)
    bound = demo.likelihood(str(broken), "dataset images", None, "sklearn-digits", 0, 0)
    assert "bounds hold NaN or infinite values" in error_of(bound, status=1)
    assert "samples hold NaN or infinite values" in error_of(demo.sample(str(broken), 2, 0, 3, "fp32"), status=4)
