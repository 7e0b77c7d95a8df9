"""Any diffusers scheduler on the pipeline: each samples what diffusers' own protocol samples, none is replaced, the
ones that cannot work are refused with the reason, and step callbacks behave as in diffusers' pipelines."""

import inspect

import diffusers
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.schedulers import SUPPORTED_SCHEDULERS
from tiny import tiny_unet

STEPS = 10
BATCH = 2
# The pipeline runs the same float32 operations as the reference loop, in the same order: any difference beyond
# float rounding means another algorithm, another noise draw or another scaling.
ATOL = 1e-5

# (scheduler class, its config overrides, the pipeline's eta): every supported diffusers scheduler, each variant once.
CASES = {
    "DDPMScheduler": (DDPMScheduler, {}, None),
    "DDIM, eta 0": (DDIMScheduler, {}, 0.0),
    "DDIM, eta 1": (DDIMScheduler, {}, 1.0),
    "DPM-Solver++ multistep": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}, None),
    "DPM-Solver++ singlestep": (diffusers.DPMSolverSinglestepScheduler, {"algorithm_type": "dpmsolver++"}, None),
    "SDE-DPM-Solver++": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++"}, None),
    "UniPC": (diffusers.UniPCMultistepScheduler, {}, None),
    "DEIS": (diffusers.DEISMultistepScheduler, {}, None),
    "PNDM": (diffusers.PNDMScheduler, {"skip_prk_steps": True}, None),
    "PNDM with PRK steps": (diffusers.PNDMScheduler, {}, None),
    "Euler": (diffusers.EulerDiscreteScheduler, {}, None),
    "Euler ancestral": (diffusers.EulerAncestralDiscreteScheduler, {}, None),
    "Heun": (diffusers.HeunDiscreteScheduler, {}, None),
    "LMS": (diffusers.LMSDiscreteScheduler, {}, None),
    "KDPM2": (diffusers.KDPM2DiscreteScheduler, {}, None),
    "KDPM2 ancestral": (diffusers.KDPM2AncestralDiscreteScheduler, {}, None),
}
# Those diffusers' DDPMPipeline runs correctly itself: x_T unscaled, no scale_model_input, a step taking `generator`.
DDPM_PIPELINE_RUNS = {"DDPMScheduler", "DDIM, eta 0", "DPM-Solver++ multistep", "DPM-Solver++ singlestep"}


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def generators(seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(BATCH)]


def paper_config() -> dict:
    return DDPMPaperScheduler(variance_type="fixed_large").config


def reference_loop(unet, scheduler, steps: int = STEPS, eta: float | None = None, raw: bool = False) -> np.ndarray:
    """diffusers' documented denoising loop, written out: x_T · init_noise_sigma, then for each t in `timesteps`,
    scale_model_input → the network → step (with the generator and η where the step takes them)."""
    scheduler.set_timesteps(steps)
    gens = generators()
    x = randn_tensor((BATCH, 3, 8, 8), generator=gens, dtype=torch.float32) * scheduler.init_noise_sigma
    accepted = inspect.signature(scheduler.step).parameters
    extra = {"generator": gens} if "generator" in accepted else {}
    if eta is not None:
        extra["eta"] = eta
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = unet(scheduler.scale_model_input(x, t), t).sample
            x = scheduler.step(eps, t, x, **extra).prev_sample
    return x.numpy() if raw else (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def pipeline_images(pipe, steps: int = STEPS, **kwargs) -> np.ndarray:
    return pipe(BATCH, generator=generators(), num_inference_steps=steps, output_type="np", precision="fp32", **kwargs)[
        0
    ]


def test_every_supported_scheduler_is_tested():
    tested = {cls.__name__ for cls, _, _ in CASES.values()} | {"DDPMPaperScheduler"}
    assert tested == set(SUPPORTED_SCHEDULERS)


@pytest.mark.parametrize("case", list(CASES))
def test_each_scheduler_samples_what_diffusers_protocol_samples(unet, case):
    cls, overrides, eta = CASES[case]
    scheduler = cls.from_config(paper_config(), **overrides)
    pipe = DDPMPaperPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.scheduler is scheduler  # kept, not converted

    calls, last = [], {}
    hook = unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        got = pipeline_images(pipe, eta=eta, callback_on_step_end=lambda p, i, t, kw: last.update(kw) or {})
    finally:
        hook.remove()
    assert len(calls) == len(scheduler.timesteps)  # one network call per scheduled timestep (2nd order: repeats)
    expected = reference_loop(unet, cls.from_config(paper_config(), **overrides), eta=eta)
    assert np.abs(got - expected).max() < ATOL
    # Before the clamp to [0, 1] too (the σ-based samplers drive this untrained network's samples far outside it).
    raw = reference_loop(unet, cls.from_config(paper_config(), **overrides), eta=eta, raw=True)
    assert np.abs(last["latents"].numpy() - raw).max() < ATOL * max(1.0, np.abs(raw).max())

    if case in DDPM_PIPELINE_RUNS:
        peer = DDPMPipeline(unet=unet, scheduler=cls.from_config(paper_config(), **overrides))
        peer.set_progress_bar_config(disable=True)
        theirs = peer(BATCH, generator=generators(), num_inference_steps=STEPS, output_type="np").images
        assert np.abs(got - theirs).max() < ATOL

    # Not the paper's sampler under another name: its images differ from the DDPM ancestral sampler's.
    paper = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler(variance_type="fixed_large"))
    paper.set_progress_bar_config(disable=True)
    if cls is not DDPMScheduler:
        assert np.abs(got - pipeline_images(paper)).max() > 0.05


def test_a_scheduler_swapped_in_by_assignment_is_run(unet):
    pipe = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler())
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    expected = reference_loop(unet, DPMSolverMultistepScheduler.from_config(paper_config()))
    assert np.abs(pipeline_images(pipe) - expected).max() < ATOL


def test_the_paper_scheduler_is_the_default_and_compatibles_list_what_works():
    # Itself among them, as diffusers' own schedulers list themselves (ddpm_hf makes it known to diffusers by name).
    compatibles = {cls.__name__ for cls in DDPMPaperScheduler().compatibles}
    assert compatibles == set(SUPPORTED_SCHEDULERS)
    assert "LCMScheduler" not in compatibles and "EDMEulerScheduler" not in compatibles


@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        (lambda: diffusers.LCMScheduler(), "LCMScheduler cannot sample this pipeline: it samples a consistency"),
        (lambda: diffusers.EDMEulerScheduler(), "EDM-preconditioned network"),
        (lambda: diffusers.FlowMatchEulerDiscreteScheduler(), "flow-matching velocity"),
        (lambda: DDIMScheduler(prediction_type="v_prediction"), "prediction_type='v_prediction', but the network"),
        (lambda: DDIMScheduler(prediction_type="sample"), "prediction_type='sample'"),
        (lambda: DDPMScheduler(variance_type="learned_range"), "also predicts its variance"),
    ],
)
def test_a_scheduler_that_cannot_work_is_refused_with_the_reason(unet, scheduler, message):
    with pytest.raises(ValueError, match=message):
        DDPMPaperPipeline(unet=unet, scheduler=scheduler())
    pipe = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler())
    pipe.scheduler = scheduler()  # assigned later: refused when sampling, before any network call
    with pytest.raises(ValueError, match=message):
        pipe(1, num_inference_steps=2)


def test_eta_only_where_the_step_takes_it(unet):
    pipe = DDPMPaperPipeline(unet=unet, scheduler=diffusers.EulerDiscreteScheduler.from_config(paper_config()))
    with pytest.raises(ValueError, match=r"EulerDiscreteScheduler\.step takes no eta"):
        pipe(1, num_inference_steps=2, eta=0.5)


@pytest.mark.parametrize("analysis", ["bits_per_dim", "progressive", "interpolate", "rate_distortion"])
def test_the_analyses_say_they_need_the_papers_scheduler(unet, analysis):
    pipe = DDPMPaperPipeline(unet=unet, scheduler=DDIMScheduler.from_config(paper_config()))
    image = torch.zeros(3, 8, 8)
    call = {
        "bits_per_dim": lambda: pipe.bits_per_dim(image[None]),
        "progressive": lambda: pipe.progressive(1),
        "interpolate": lambda: pipe.interpolate(image, image),
        "rate_distortion": lambda: pipe.rate_distortion(image[None]),
    }[analysis]
    with pytest.raises(ValueError, match=r"needs the paper's posterior .* holds a DDIMScheduler"):
        call()


@pytest.fixture(scope="module")
def vanilla_folder(tmp_path_factory, unet):
    folder = tmp_path_factory.mktemp("vanilla")
    vanilla = UNet2DModel.from_config(unet.config)
    vanilla.load_state_dict(unet.state_dict())
    DDPMPipeline(unet=vanilla, scheduler=DDPMScheduler(variance_type="fixed_large")).save_pretrained(folder)
    return folder


def test_loading_a_vanilla_folder_converts_its_ddpm_scheduler_only_by_choice(vanilla_folder, unet):
    assert type(DDPMPaperPipeline.from_pretrained(vanilla_folder).scheduler) is DDPMPaperScheduler
    kept = DDPMPaperPipeline.from_pretrained(vanilla_folder, paper_scheduler=False)
    assert type(kept.scheduler) is DDPMScheduler
    given = DDIMScheduler.from_config(paper_config())
    assert DDPMPaperPipeline.from_pretrained(vanilla_folder, scheduler=given).scheduler is given
    kept.set_progress_bar_config(disable=True)
    assert np.abs(pipeline_images(kept) - reference_loop(unet, DDPMScheduler(variance_type="fixed_large"))).max() < ATOL


def test_a_pipeline_saved_with_another_scheduler_loads_it(tmp_path, unet):
    pipe = DDPMPaperPipeline(unet=unet, scheduler=diffusers.UniPCMultistepScheduler.from_config(paper_config()))
    pipe.save_pretrained(tmp_path)
    back = DDPMPaperPipeline.from_pretrained(tmp_path)
    assert type(back.scheduler) is diffusers.UniPCMultistepScheduler
    back.set_progress_bar_config(disable=True)
    pipe.set_progress_bar_config(disable=True)
    assert np.abs(pipeline_images(back) - pipeline_images(pipe)).max() < ATOL  # layouts may differ: not bit-equal


# --- step callbacks ------------------------------------------------------------------------------------------------


@pytest.fixture(params=["paper", "DDIM"])
def pipe(request, unet):
    scheduler = DDPMPaperScheduler() if request.param == "paper" else DDIMScheduler.from_config(paper_config())
    pipe = DDPMPaperPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_callback_sees_every_step_with_diffusers_arguments(pipe):
    seen = []

    def callback(p, i, t, kwargs):
        seen.append((p, i, t, kwargs["latents"].clone(), kwargs["pred_original_sample"].clone()))
        return {}

    final = pipe(
        BATCH,
        generator=generators(),
        num_inference_steps=STEPS,
        output_type="pt",
        precision="fp32",
        callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=["latents", "pred_original_sample"],
    ).images
    assert [s[1] for s in seen] == list(range(STEPS))
    assert [s[2] for s in seen] == pipe.scheduler.timesteps.tolist()
    assert all(s[0] is pipe for s in seen)
    assert torch.equal((seen[-1][3] / 2 + 0.5).clamp(0, 1), final)  # the last latents are the samples
    assert seen[0][4].abs().max() <= 1.0  # x̂_0, clipped as both schedulers clip it


def test_a_callback_can_replace_the_latents(pipe):
    def zero_at_the_end(p, i, t, kwargs):
        return {"latents": torch.zeros_like(kwargs["latents"])} if i == STEPS - 1 else {}

    images = pipe(BATCH, num_inference_steps=STEPS, output_type="pt", callback_on_step_end=zero_at_the_end).images
    assert torch.equal(images, torch.full_like(images, 0.5))
    # Replaced mid-chain, the rest of the chain continues from the new latents.
    reference = pipe(BATCH, generator=generators(), num_inference_steps=STEPS, output_type="pt", precision="fp32")
    changed = pipe(
        BATCH,
        generator=generators(),
        num_inference_steps=STEPS,
        output_type="pt",
        precision="fp32",
        callback_on_step_end=lambda p, i, t, kw: {"latents": kw["latents"] * 0.5} if i == 3 else {},
    )
    assert (reference.images - changed.images).abs().max() > 0.01


def test_interrupt_ends_sampling_after_that_step(pipe, unet):
    calls, latents = [], {}
    hook = unet.register_forward_hook(lambda *args: calls.append(1))

    def stop_at_4(p, i, t, kwargs):
        latents[i] = kwargs["latents"]
        if i == 4:
            p._interrupt = True
        return {}

    try:
        images = pipe(BATCH, num_inference_steps=STEPS, output_type="pt", callback_on_step_end=stop_at_4).images
    finally:
        hook.remove()
    assert len(calls) == 5 and max(latents) == 4
    assert torch.equal(images, (latents[4] / 2 + 0.5).clamp(0, 1))
    # The next call starts afresh.
    assert pipe(1, num_inference_steps=3, output_type="pt", callback_on_step_end=lambda *a: {}).images.shape[0] == 1
    assert not pipe.interrupt


def test_bad_callbacks_are_refused(unet):
    pipe = DDPMPaperPipeline(unet=unet, scheduler=DPMSolverMultistepScheduler.from_config(paper_config()))
    pipe.set_progress_bar_config(disable=True)
    with pytest.raises(
        ValueError, match=r"must be among \['latents', 'pred_original_sample'\], got \['prompt_embeds'\]"
    ):
        pipe(
            1,
            num_inference_steps=2,
            callback_on_step_end=lambda *a: {},
            callback_on_step_end_tensor_inputs=["prompt_embeds"],
        )
    with pytest.raises(ValueError, match=r"DPMSolverMultistepScheduler\.step gives no pred_original_sample"):
        pipe(
            1,
            num_inference_steps=2,
            callback_on_step_end=lambda *a: {},
            callback_on_step_end_tensor_inputs=["pred_original_sample"],
        )
    with pytest.raises(TypeError, match="must return a dict"):
        pipe(1, num_inference_steps=2, callback_on_step_end=lambda *a: None)
    with pytest.raises(TypeError, match="must be callable"):
        pipe(1, num_inference_steps=2, callback_on_step_end="not a function")


def test_diffusers_pipeline_callback_objects_work(unet):
    from diffusers.callbacks import PipelineCallback

    class Count(PipelineCallback):
        tensor_inputs = ["latents"]

        def __init__(self):
            super().__init__(cutoff_step_ratio=None, cutoff_step_index=0)
            self.steps = []

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            return callback_kwargs

        def __call__(self, pipeline, step_index, timestep, callback_kwargs):
            self.steps.append(step_index)
            return {}

    pipe = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler())
    pipe.set_progress_bar_config(disable=True)
    count = Count()
    pipe(1, num_inference_steps=3, callback_on_step_end=count)
    assert count.steps == [0, 1, 2]


def test_the_analyses_take_callbacks(unet):
    pipe = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler(num_train_timesteps=20))
    pipe.set_progress_bar_config(disable=True)
    steps = []
    pipe.progressive(1, every=5, callback_on_step_end=lambda p, i, t, kw: steps.append(t) or {})
    assert steps == list(range(19, -1, -1))

    def stop(p, i, t, kw):
        p._interrupt = i == 2
        return {}

    image = torch.zeros(3, 8, 8)
    calls = []
    hook = unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        pipe.interpolate(image, image, t=10, num=2, callback_on_step_end=stop)
        assert len(calls) == 3
        with pytest.raises(InterruptedError, match="after 3 network passes"):
            pipe.bits_per_dim(image[None], batch_size=4, callback_on_step_end=stop)
    finally:
        hook.remove()
