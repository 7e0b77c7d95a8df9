"""The demo as strangers reach it (`ddpm_hf.demo` in public mode), through its handlers: what a visitor can open,
what they can see of the server and of each other, the owner's limits, and every sampler a folder may hold.

The same app served over HTTP (uploads, file serving, the queue, two visitors at once) is tests/demo/test_app_live.py.
"""

import re
import time

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from PIL import Image

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.card import render_model_card

gr = pytest.importorskip("gradio", reason="gradio is not installed (the demo extra: pip install -e '.[demo]')")
from ddpm_hf.demo import PUBLIC_LIMITS, Access, Demo, Limits, NotServedError  # noqa: E402
from ddpm_hf.errors import DDPMError  # noqa: E402
from example_scripts import load_example  # noqa: E402
from tiny import tiny_pipeline, train_tiny_digits, write_image_folder  # noqa: E402

T = 50


def visitor(name: str) -> gr.Request:
    return gr.Request(session_hash=name)


def error_of(job, status: int) -> str:
    """Run a job to its end; the error its last frame states, with nothing else shown."""
    *_, last = job
    assert last[status].startswith("**Error:** "), last[status]
    assert all(value is None for i, value in enumerate(last) if i != status)
    return last[status]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two pipeline folders side by side: the one the owner serves, and another that is not served."""
    root = tmp_path_factory.mktemp("public")
    train_tiny_digits(steps=20, num_train_timesteps=T).save_pretrained(root / "served")
    render_model_card("served", dataset="sklearn-digits").save(root / "served" / "README.md")
    train_tiny_digits(steps=2, num_train_timesteps=20, seed=1).save_pretrained(root / "another_pipeline")
    write_image_folder(root / "server_images", count=2, size=8)
    return root


@pytest.fixture(scope="module")
def public(served):
    return Demo.serve([str(served / "served")], public=True, limits=PUBLIC_LIMITS)


@pytest.fixture(scope="module")
def local(served):
    return Demo.serve([str(served / "served")])


def test_a_public_demo_serves_its_models_and_the_datasets_of_their_cards(public, served):
    assert public.access.public and public.access.models == (str(served / "served"),)
    assert public.access.datasets == ("sklearn-digits",)  # the card's, and the bundled digits
    assert public.access.token is False  # nothing a visitor causes is fetched with the server's token
    other = Demo.serve([str(served / "served")], datasets=["someone/faces"], public=True)
    assert other.access.datasets == ("someone/faces", "sklearn-digits")
    assert other.dataset == "someone/faces"  # the owner's first, offered first
    no_card = Demo.serve([str(served / "another_pipeline")], public=True)
    assert no_card.access.datasets == ("sklearn-digits",) and no_card.dataset is None  # the bundled digits alone
    assert Demo.serve([str(served / "another_pipeline")]).access.datasets == ()  # locally, typed names open


def test_a_visitor_cannot_open_a_server_folder_as_a_dataset(public, local, served):
    """A folder path typed as the dataset used to be read, and its image shown pixel for pixel with its bits/dim."""
    folder = str(served / "server_images")
    job = public.likelihood(str(served / "served"), "dataset images", None, folder, 0, 0, request=visitor("a"))
    message = error_of(job, status=1)
    assert "does not serve the dataset" in message and "server_images" in message
    # On your own machine the same folder is yours to open.
    *_, (seen, summary, *_) = local.likelihood(str(served / "served"), "dataset images", None, folder, 0, 0)
    assert "bits/dim" in summary and seen is not None


@pytest.mark.parametrize("name", ["{root}/another_pipeline", "{root}/served/../another_pipeline", "user/private-repo"])
def test_a_visitor_cannot_open_models_that_are_not_served(public, served, name):
    name = name.format(root=served)
    chosen, info = public.open_model(name)
    assert chosen == gr.skip()  # the visitor keeps the served model
    assert info == f"**Error:** this demo does not serve the model {name!r}; choose one of: {served / 'served'}"
    assert "does not serve the model" in error_of(public.sample(name, 1, 0, 5, "fp32"), status=4)
    assert len(public.models.loaded) == 1  # nothing else was loaded


def test_refusals_do_not_tell_which_server_paths_exist(public, tmp_path):
    """'/etc' used to say "holds no model_index.json" and a missing folder "does not exist"."""
    messages = {path: public.open_model(path)[1].replace(path, "PATH") for path in ("/etc", str(tmp_path / "none"))}
    assert len(set(messages.values())) == 1, messages
    datasets = [
        error_of(public.likelihood(public.first.name, "dataset images", None, path, 0, 0), 1).replace(path, "PATH")
        for path in ("/etc", str(tmp_path / "none"))
    ]
    assert datasets[0] == datasets[1]


def test_locally_any_folder_opens(local, served):
    name, info = local.open_model(f"{served}/served/../another_pipeline")
    assert name.endswith("another_pipeline") and "T = 20" in info


def test_public_repos_are_fetched_without_the_servers_token(hub_server, tmp_path):
    """A private repo was downloaded with the server's own token and sampled by a visitor."""
    tiny_pipeline().push_to_hub("owner/ddpm-private", private=True)
    tiny_pipeline().push_to_hub("owner/ddpm-public")
    # In public, a repo is fetched without credentials (the server's HF_TOKEN stays unused): a private one cannot open.
    with pytest.raises(DDPMError, match="owner/ddpm-private could not be opened"):
        Demo.serve(["owner/ddpm-public", "owner/ddpm-private"], public=True)
    # Locally, your own token opens your private repo.
    assert Demo.serve(["owner/ddpm-private"]).first.name == "owner/ddpm-private"
    demo = Demo.serve(["owner/ddpm-public"], public=True)
    assert demo.first.name == "owner/ddpm-public"
    assert "does not serve the model 'owner/ddpm-private'" in demo.open_model("owner/ddpm-private")[1]


def test_a_stop_reports_only_the_visitors_own_job(public, served):
    """Visitor A's Stop used to report the progress of visitor B's job: one job table for every tab."""
    name = str(served / "served")
    b_job = public.sample(name, 1, 0, T, "fp32", request=visitor("b"))
    frames = iter(b_job)
    while (job := public.jobs.get("b", "sample")) is None or job.done < 5:
        next(frames)
    assert public.stopped("sample", visitor("a")) == (
        "**Stopped** after step 0: what is shown is not a finished result. Run again to restart."
    )
    a_job = public.sample(name, 1, 0, 10, "fp32", request=visitor("a"))
    *_, a_last = a_job  # A's own job runs to its end
    assert a_last[4].startswith("1 samples, 10 steps")
    assert public.stopped("sample", visitor("a")).startswith("**Stopped** after step 10 of 10:")
    assert public.jobs.get("b", "sample").total == T  # B's job is still B's
    *_, b_last = frames
    assert b_last[4].startswith(f"1 samples, {T} steps")  # and ran to its end: A's Stop did not end it
    public.forget(visitor("a"))
    assert public.jobs.get("a", "sample") is None and public.jobs.get("b", "sample") is not None


def test_the_job_table_is_bounded():
    from ddpm_hf.demo import VisitorJobs

    jobs = VisitorJobs(keep=3)
    for i in range(10):
        jobs.start(f"visitor-{i}", "sample", 5)
    assert len(jobs) == 3 and jobs.get("visitor-9", "sample") is not None and jobs.get("visitor-0", "sample") is None


def test_the_owners_limits_bound_each_job(public, served):
    name = str(served / "served")
    limit = PUBLIC_LIMITS.max_batch_size
    message = error_of(public.sample(name, limit + 1, 0, 5, "fp32"), status=4)
    assert f"batch size must be a whole number from 1 to {limit}, got {limit + 1}" in message
    capped = Demo.serve([name], public=True, limits=Limits(max_steps=10, max_interpolants=3))
    assert "number of steps must be a whole number from 1 to 10, got 11" in error_of(
        capped.sample(name, 1, 0, 11, "fp32"), status=4
    )
    job = capped.interpolate(name, "dataset images", None, None, "sklearn-digits", 0, 1, 5, 4, 0)
    assert "number of interpolants must be a whole number from 2 to 3, got 4" in error_of(job, status=1)


@pytest.mark.parametrize(
    "bad", [{"max_batch_size": 0}, {"max_queue": -1}, {"concurrency": 1.5}, {"max_interpolants": 1}, {"max_steps": 0}]
)
def test_bad_limits_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Limits(**bad)


def test_access_is_decided_in_one_place():
    access = Access(public=True, models=("a/b",), datasets=("sklearn-digits",))
    assert access.model("a/b") == "a/b" and access.dataset(" sklearn-digits ") == "sklearn-digits"
    for name in ("a/c", "/etc", "../a/b", "a/b/.."):
        with pytest.raises(NotServedError):
            access.model(name)
    with pytest.raises(ValueError, match="choose a model: one of a/b"):
        access.model("  ")
    mine = Access(public=False, models=("a/b",))
    assert mine.model("/anything/at/all") == "/anything/at/all" and mine.token is None


SCHEDULERS_WITHOUT_X0 = [DPMSolverMultistepScheduler, UniPCMultistepScheduler, DEISMultistepScheduler, PNDMScheduler]


@pytest.mark.parametrize("scheduler", SCHEDULERS_WITHOUT_X0, ids=lambda s: s.__name__)
def test_every_saved_sampler_samples_in_the_sample_tab(local, served, tmp_path, scheduler):
    """A folder saved with DPM-Solver++, UniPC, DEIS or PNDM failed: the tab always asked the step for x̂_0."""
    pipe = DDPMPaperPipeline.from_pretrained(served / "served")
    pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
    pipe.save_pretrained(tmp_path / "pipe")
    frames = list(local.sample(str(tmp_path / "pipe"), 2, 3, 10, "fp32"))
    live, (_, x0, samples, files, status) = frames[:-1], frames[-1]
    assert status.startswith("2 samples, 10 steps") and f"({scheduler.__name__} gives no x̂_0)" in status
    assert x0 is None and samples is not None and len(files) == 2
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(2, generator=[torch.Generator().manual_seed(3 + i) for i in range(2)], num_inference_steps=10)
    from ddpm_hf.demo import display

    assert np.array_equal(np.asarray(samples), np.asarray(display(expected.images)))
    assert all(frame[1] is None or frame[1] == gr.skip() for frame in live)  # no stale x̂_0 shown while it runs


def test_a_sampler_that_gives_x0_shows_it(local, served, tmp_path):
    pipe = DDPMPaperPipeline.from_pretrained(served / "served")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.save_pretrained(tmp_path / "ddim")
    *_, (_, x0, _, _, status) = local.sample(str(tmp_path / "ddim"), 1, 0, 10, "fp32")
    assert isinstance(x0, Image.Image) and "gives no x̂_0" not in status


def test_the_command_line_is_public_in_a_space_or_when_asked(monkeypatch, served):
    app = load_example("app")
    monkeypatch.delenv("SPACE_ID", raising=False)
    args = app.parse_args(["--model", str(served / "served")])
    assert not args.public and args.limits.max_batch_size == 64 and args.limits.max_file_size is None
    args = app.parse_args(["--public", "--model", "m", "--model", "n", "--max_batch_size", "4", "--max_queue", "2"])
    assert args.public and args.model == ["m", "n"]
    assert args.limits == Limits(max_batch_size=4, max_interpolants=8, max_file_size="2mb", max_queue=2)
    monkeypatch.setenv("SPACE_ID", "owner/space")
    args = app.parse_args(["--public", "false"])  # a Space is public whatever its command line says
    assert args.public and args.limits == PUBLIC_LIMITS
    with pytest.raises(SystemExit):
        app.parse_args(["--max_batch_size", "0"])


def test_a_space_serves_every_model_of_its_front_matter(monkeypatch, served, tmp_path):
    app = load_example("app")
    monkeypatch.setenv("SPACE_ID", "owner/space")
    monkeypatch.delenv(app.MODEL_ENV, raising=False)
    first, second = served / "served", served / "another_pipeline"
    (tmp_path / "README.md").write_text(f"---\nsdk: gradio\nmodels:\n- {first}\n- {second}\n---\n")
    assert app.default_models(str(tmp_path / "app.py")) == [str(first), str(second)]
    args = app.parse_args(["--model", str(first), "--model", str(second)])
    demo = app.make_demo(args)
    assert demo.access.public and demo.access.models == (str(first), str(second))
    assert re.match(r"\*\*.*another_pipeline\*\*", demo.open_model(str(second))[1])
    start = time.monotonic()
    blocks = app.build(demo)
    assert blocks._queue.max_size == PUBLIC_LIMITS.max_queue and time.monotonic() - start < 60
