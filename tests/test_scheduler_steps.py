"""How many steps each scheduler can take: every count in `valid_num_inference_steps` samples, every other count is
refused before the network is called, with the scheduler's name and its range.

Each scheduler turns a step count into timesteps by its own spacing rule, and at some counts the rule collapses:
diffusers' 'leading' spacing for DPM-Solver, UniPC and DEIS puts every step on t = 0 at T steps (an IndexError or an
assertion mid-chain), PNDM's Runge-Kutta warm-up needs 4 timesteps and half steps of at least one, PNDM's 1-step
chain and any chain past T leave x_T as it was. The chains are checked here by running them: on a stand-in network
over every count at a small T, with the tiny network at the edges, and at the edges of T = 1000.
"""

import copy
import inspect
import logging
from contextlib import contextmanager

import diffusers
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.analytic import GammaEstimate, with_analytic_variance
from ddpm_hf.errors import InputError
from ddpm_hf.schedulers import SUPPORTED_SCHEDULERS, check_num_inference_steps, valid_num_inference_steps
from tiny import tiny_unet

T = 20  # small enough to run every count; the spacing rules behave as at T = 1000 (checked at its edges below)

# Every supported scheduler, and each variant whose step counts differ, with its valid counts at T = 1000 as
# diffusers 0.42's spacing rules give them.
CASES = {
    "DDPMPaperScheduler": (DDPMPaperScheduler, {}, range(1, 1001)),
    "DDPMScheduler": (diffusers.DDPMScheduler, {}, range(1, 1001)),
    "DDIM": (DDIMScheduler, {}, range(1, 1001)),
    "DDIM, set_alpha_to_one=False": (DDIMScheduler, {"set_alpha_to_one": False}, range(1, 1001)),
    # Its one step goes from ᾱ_0 to ᾱ_0: without clipping x̂_0, x_T comes back as it was.
    "DDIM, set_alpha_to_one=False, no clipping": (
        DDIMScheduler,
        {"set_alpha_to_one": False, "clip_sample": False},
        range(2, 1001),
    ),
    "DPM-Solver++ multistep": (DPMSolverMultistepScheduler, {}, range(1, 1000)),
    "SDE-DPM-Solver++": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++"}, range(1, 1000)),
    "DPM-Solver singlestep": (diffusers.DPMSolverSinglestepScheduler, {}, range(1, 1000)),
    "UniPC": (diffusers.UniPCMultistepScheduler, {}, range(1, 1000)),
    "DEIS": (diffusers.DEISMultistepScheduler, {}, range(1, 1000)),
    "PNDM with PRK steps": (PNDMScheduler, {}, range(4, 501)),
    "PNDM, PLMS only": (PNDMScheduler, {"skip_prk_steps": True}, range(2, 1001)),
    "Euler": (diffusers.EulerDiscreteScheduler, {}, range(1, 1001)),
    "Euler ancestral": (diffusers.EulerAncestralDiscreteScheduler, {}, range(1, 1001)),
    "Heun": (diffusers.HeunDiscreteScheduler, {}, range(1, 1001)),
    "LMS": (diffusers.LMSDiscreteScheduler, {}, range(1, 1001)),
    "KDPM2": (diffusers.KDPM2DiscreteScheduler, {}, range(1, 1001)),
    "KDPM2 ancestral": (diffusers.KDPM2AncestralDiscreteScheduler, {}, range(1, 1001)),
}
# Counts refused although their chain runs: DPM-Solver singlestep spaces its timesteps by np.linspace(0, T - 1,
# n + 1), which at n = T rounds two steps onto one timestep; the chain runs, but with T - 1 distinct steps.
REPEATED_STEPS = {("DPM-Solver singlestep", T), ("DPM-Solver singlestep", 1000)}


def scheduler(case: str, num_train_timesteps: int = T):
    cls, overrides, _ = CASES[case]
    return cls.from_config(DDPMPaperScheduler(num_train_timesteps=num_train_timesteps).config, **overrides)


def run_chain(scheduler, n: int) -> str | None:
    """What goes wrong when a copy of `scheduler` runs n steps on a stand-in network (ε̂ = 0.5 tanh(x) + 0.1, three
    pixels) by diffusers' protocol, or None if the chain runs: finite, away from x_T, no step wasted on a no-op
    (but PNDM's last, which steps from ᾱ_0 to ᾱ_0 by design)."""
    s = copy.deepcopy(scheduler)
    try:
        s.set_timesteps(n)
        x_T = torch.tensor([0.3, -1.1, 0.8]).reshape(1, 1, 1, 3) * s.init_noise_sigma
        x, no_ops = x_T, 0
        keywords = (
            {"generator": torch.Generator().manual_seed(0)}
            if "generator" in inspect.signature(s.step).parameters
            else {}
        )
        for t in s.timesteps:
            eps = 0.5 * torch.tanh(s.scale_model_input(x, t)) + 0.1
            x_next = s.step(eps, t, x, **keywords).prev_sample
            no_ops += torch.equal(x_next, x)
            x = x_next
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    if not torch.isfinite(x).all():
        return "NaN"
    if torch.allclose(x, x_T, rtol=1e-5, atol=1e-5):
        return "x_T unchanged"
    if no_ops > 1:
        return f"{no_ops} steps leave the sample as it is"
    return None


@contextmanager
def network_calls(unet):
    """The list of the network's calls made inside the block, one entry each."""
    calls = []
    hook = unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        yield calls
    finally:
        hook.remove()


def test_every_supported_scheduler_has_a_case():
    assert {cls.__name__ for cls, _, _ in CASES.values()} == set(SUPPORTED_SCHEDULERS)


@pytest.mark.parametrize("case", list(CASES))
def test_the_valid_counts_are_one_range_and_the_others_cannot_run(case):
    s = scheduler(case)
    valid = valid_num_inference_steps(s)
    accepted = []
    for n in range(1, T + 1):
        try:
            assert check_num_inference_steps(s, n) == n
            accepted.append(n)
        except InputError:
            pass
    assert accepted == list(valid)
    for n in range(1, T + 1):
        fault = run_chain(s, n)
        if n in valid:
            assert fault is None, f"{n} steps: {fault}"
        elif (case, n) in REPEATED_STEPS:
            chain = copy.deepcopy(s)
            chain.set_timesteps(n)
            assert fault is None and len(set(chain.sigmas[:-1].tolist())) < n
        else:
            assert fault is not None, f"{n} steps were refused, but the chain runs"
    for n in (T + 1, T + 10):
        with pytest.raises(InputError, match=f"at most T = {T} steps"):
            check_num_inference_steps(s, n)


def test_a_1_step_chain_that_returns_x_T_up_to_rounding_is_refused():
    """DDIM's step from ᾱ_0 back to ᾱ_0 computes x_T through x̂_0, which rounds to x_T ± 6e-8 on this schedule."""
    config = DDPMPaperScheduler(beta_start=0.001).config
    s = DDIMScheduler.from_config(config, set_alpha_to_one=False, clip_sample=False)
    assert run_chain(s, 1) == "x_T unchanged"
    with pytest.raises(InputError, match="its one step, at t = 0, returns x_T unchanged"):
        check_num_inference_steps(s, 1)


def test_karras_sigmas_may_round_two_steps_onto_one_network_timestep():
    """DPM-Solver++ on Karras σ rounds the network's timesteps, so nearby steps share one; each step still starts
    from a σ of its own, and every count runs."""
    s = DPMSolverMultistepScheduler.from_config(
        DDPMPaperScheduler(num_train_timesteps=T).config, use_karras_sigmas=True
    )
    chain = copy.deepcopy(s)
    chain.set_timesteps(T)
    assert len(set(chain.timesteps.tolist())) < T
    assert valid_num_inference_steps(s) == range(1, T + 1)
    assert all(run_chain(s, n) is None for n in range(1, T + 1))


def test_probing_holds_back_a_scheduler_s_warnings_only_while_it_probes():
    """DPM-Solver singlestep logs a warning at every set_timesteps; the probes' copies are silent, the scheduler's
    own call is not."""
    s = scheduler("DPM-Solver singlestep")
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("diffusers")
    logger.addHandler(handler)
    try:
        check_num_inference_steps(s, 5)
        with pytest.raises(InputError):
            check_num_inference_steps(s, T)
        assert records == []
        s.set_timesteps(5)
    finally:
        logger.removeHandler(handler)
    assert [r.name for r in records] == [type(s).__module__]


def test_a_repeated_step_is_what_the_refusal_says():
    s = scheduler("DPM-Solver singlestep")
    s.set_timesteps(T)
    assert len(set(s.timesteps.tolist())) == T - 1  # np.linspace(0, T - 1, T + 1) rounds two steps together
    with pytest.raises(InputError, match=f"rounds the {T} steps onto {T - 1} distinct noise levels"):
        check_num_inference_steps(scheduler("DPM-Solver singlestep"), T)


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def pipeline(unet, s) -> DDPMPaperPipeline:
    pipe = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler(num_train_timesteps=s.config.num_train_timesteps))
    pipe.scheduler = s  # as the README swaps one in
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("case", list(CASES))
def test_the_edges_of_each_range_sample_images_that_are_not_x_T(unet, case):
    s = scheduler(case)
    valid = valid_num_inference_steps(s)
    pipe = pipeline(unet, s)
    for n in sorted({valid[0], valid[1], valid[2], valid[-2], valid[-1]}):
        with network_calls(unet) as calls:
            images = pipe(1, generator=torch.Generator().manual_seed(0), num_inference_steps=n, output_type="pt")[0]
        x_T = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * s.init_noise_sigma
        assert len(calls) == len(s.timesteps) and torch.isfinite(images).all()
        assert (images - (x_T / 2 + 0.5).clamp(0, 1)).abs().max() > 1e-3, f"{n} steps returned x_T"


@pytest.mark.parametrize("num_train_timesteps", [T, 1000])
@pytest.mark.parametrize("case", list(CASES))
def test_other_counts_are_refused_before_any_network_call(unet, case, num_train_timesteps):
    s = scheduler(case, num_train_timesteps)
    valid = valid_num_inference_steps(s)
    if num_train_timesteps == 1000:
        assert valid == CASES[case][2]
    pipe = pipeline(unet, s)
    name = type(s).__name__
    with network_calls(unet) as calls:
        for n in sorted({valid[0] - 1, valid[-1] + 1, num_train_timesteps + 1, num_train_timesteps + 10} - {0}):
            takes = f"it takes {valid[0]} to {valid[-1]} steps"
            with pytest.raises(InputError, match=rf"^num_inference_steps: {name} cannot take {n} steps?: .*{takes}$"):
                pipe(1, num_inference_steps=n)
        for bad in (0, 2.5, True):
            with pytest.raises(InputError, match="num_inference_steps must be an integer ≥ 1"):
                pipe(1, num_inference_steps=bad)
    assert calls == []


@pytest.mark.parametrize("case", [c for c, (_, _, valid) in CASES.items() if valid != range(1, 1001)])
def test_at_T_1000_the_last_valid_count_runs_and_the_next_cannot(case):
    s = scheduler(case, 1000)
    valid = valid_num_inference_steps(s)
    assert run_chain(s, valid[-1]) is None and run_chain(s, valid[0]) is None
    if valid[-1] < 1000 and (case, valid[-1] + 1) not in REPEATED_STEPS:
        assert run_chain(s, valid[-1] + 1) is not None
    if valid[0] > 1:
        assert run_chain(s, valid[0] - 1) is not None


def test_the_reported_failures_are_refusals_now(unet):
    """PNDM at T + 1 ran every call at t = 0 and returned x_T; DPM-Solver++ at T raised an IndexError, UniPC an
    AssertionError; KDPM2 at T + 10 blamed the network's weights for NaN; PNDM at 1 step raised numpy's error."""
    for case, n, message in [
        ("PNDM, PLMS only", T + 1, "at most T = 20 steps"),
        ("PNDM, PLMS only", 1, "its one step, at t = 0, returns x_T unchanged"),
        ("PNDM with PRK steps", 1, r"its set_timesteps\(1\) fails"),
        ("PNDM with PRK steps", T, "Runge-Kutta warm-up"),
        ("DPM-Solver++ multistep", T, "onto 1 distinct noise level"),
        ("UniPC", T, "onto 1 distinct noise level"),
        ("DEIS", T, "onto 1 distinct noise level"),
        ("KDPM2", T + 10, "at most T = 20 steps"),
    ]:
        with pytest.raises(InputError, match=message):
            pipeline(unet, scheduler(case))(1, num_inference_steps=n)


def test_a_missing_gamma_is_refused_with_its_own_reason(unet):
    """An analytic variance whose Γ covers only the 5-step chain: a 4-step chain is a count the schedule takes, refused
    by the scheduler for the Γ it lacks."""
    paper = DDPMPaperScheduler(num_train_timesteps=T)
    steps = sorted(paper.chain(5).timesteps.tolist())
    estimate = GammaEstimate.from_samples(steps, np.full((2, 5), 0.9), np.full((2, 5), 0.1))
    pipe = pipeline(unet, with_analytic_variance(paper, estimate))
    assert valid_num_inference_steps(pipe.scheduler) == range(1, T + 1)
    with network_calls(unet) as calls:
        with pytest.raises(ValueError, match="variance_type='analytic' needs Γ_t at timesteps"):
            pipe(1, num_inference_steps=4)
        pipe(1, num_inference_steps=5)
    assert len(calls) == 5


def test_a_steps_offset_narrows_the_range(unet):
    """'leading' spacing with steps_offset=1 puts T steps' last timestep at T: one past the schedule."""
    config = DDPMPaperScheduler(num_train_timesteps=T, steps_offset=1).config
    for s in (DDPMPaperScheduler.from_config(config), DDIMScheduler.from_config(config)):
        assert valid_num_inference_steps(s) == range(1, T)
        with pytest.raises(InputError, match=f"it takes 1 to {T - 1} steps"):
            pipeline(unet, s)(1, num_inference_steps=T)


# --- the paper's analyses take step counts too -------------------------------------------------------------------


@pytest.fixture
def paper_pipe(unet):
    pipe = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler(num_train_timesteps=T))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_analyses_refuse_a_count_before_any_network_call(paper_pipe, unet):
    images = torch.zeros(2, 3, 8, 8)
    with network_calls(unet) as calls:
        for analysis in (
            lambda n: paper_pipe.bits_per_dim(images, num_inference_steps=n),
            lambda n: paper_pipe.estimate_gamma(images, num_inference_steps=n),
            lambda n: paper_pipe.estimate_gamma(images, num_inference_steps=[5, n]),
        ):
            with pytest.raises(InputError, match=f"DDPMPaperScheduler cannot take {T + 1} steps: .* 1 to {T} steps"):
                analysis(T + 1)
            with pytest.raises(InputError, match=r"must be an integer ≥ 1, got 2\.5"):
                analysis(2.5)
        with pytest.raises(InputError, match="num_inference_steps is empty"):
            paper_pipe.estimate_gamma(images, num_inference_steps=[])
    assert calls == []


def test_estimate_gamma_takes_one_count_as_the_pipeline_does(paper_pipe):
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    one = paper_pipe.estimate_gamma(images, num_inference_steps=5, generator=torch.Generator().manual_seed(0))
    listed = paper_pipe.estimate_gamma(images, num_inference_steps=[5], generator=torch.Generator().manual_seed(0))
    assert one.timesteps == listed.timesteps == sorted(paper_pipe.scheduler.chain(5).timesteps.tolist())
    assert np.array_equal(one.gamma, listed.gamma)
    assert paper_pipe.estimate_gamma(images, num_inference_steps=np.int64(5)).timesteps == one.timesteps
