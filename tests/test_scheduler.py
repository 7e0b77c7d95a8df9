"""DDPMPaperScheduler: diffusers' API and config, parity with DDPMScheduler, clear errors."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from ddpm_hf import DDPMPaperScheduler


def diffusers_twin(ours: DDPMPaperScheduler) -> DDPMScheduler:
    """diffusers' scheduler on the same config, given float64 ᾱ (its float32 ᾱ is off by up to 5.5e-5 at t = 1)."""
    twin = DDPMScheduler.from_config(ours.config)
    twin.alphas_cumprod = ours.alphas_cumprod.clone()
    return twin


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("num_inference_steps", [1000, 50, 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_matches_diffusers(variance_type, num_inference_steps, dtype):
    ours = DDPMPaperScheduler(variance_type=variance_type)
    theirs = diffusers_twin(ours)
    ours.set_timesteps(num_inference_steps)
    theirs.set_timesteps(num_inference_steps)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    g = torch.Generator().manual_seed(0)
    for t in ours.timesteps[:-1]:  # t ≥ 1: every scheduled step but the last, noiseless one
        sample, eps = (
            torch.randn(2, 3, 4, 4, generator=g, dtype=dtype),
            torch.randn(2, 3, 4, 4, generator=g, dtype=dtype),
        )
        a = ours.step(eps, t, sample, generator=torch.Generator().manual_seed(int(t)))
        b = theirs.step(eps, t, sample, generator=torch.Generator().manual_seed(int(t)))
        assert a.prev_sample.dtype == dtype
        assert (a.prev_sample - b.prev_sample).abs().max() < 1e-6
        # x̂_0 = (x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t) cancels catastrophically at large t: in float32 both
        # implementations are exact only to float32's resolution of the unclipped x̂_0, up to sqrt(1/ᾱ_t) ≈ 160.
        tol = 1e-12 if dtype == torch.float64 else 1e-6 * float(ours.sqrt_recip_alphas_cumprod[t])
        assert (a.pred_original_sample - b.pred_original_sample).abs().max() <= tol


def test_last_step_is_noiseless_and_clips():
    sched = DDPMPaperScheduler()
    sched.set_timesteps(10)
    x, eps = torch.randn(1, 3, 4, 4), 10 * torch.randn(1, 3, 4, 4)
    a = sched.step(eps, 0, x, generator=torch.Generator().manual_seed(0)).prev_sample
    b = sched.step(eps, 0, x, generator=torch.Generator().manual_seed(1)).prev_sample
    assert torch.equal(a, b)
    assert sched.step(eps, 0, x).pred_original_sample.abs().max() <= 1.0
    unclipped = DDPMPaperScheduler(clip_sample=False).step(eps, 0, x).pred_original_sample
    assert unclipped.abs().max() > 1.0


def test_respaced_step_is_the_subchain_posterior():
    sched = DDPMPaperScheduler(variance_type="fixed_small")
    sched.set_timesteps(4, device="cpu")
    assert sched.timesteps.tolist() == [750, 500, 250, 0]
    abar = sched.alphas_cumprod
    t, s = 500, 250
    beta = 1 - abar[t] / abar[s]
    x0, xt = torch.zeros(1, 1, 2, 2, dtype=torch.float64), torch.ones(1, 1, 2, 2, dtype=torch.float64)
    eps = (xt - abar[t].sqrt() * x0) / (1 - abar[t]).sqrt()  # the ε that makes x̂_0 = x0 exactly
    out = sched.step(eps, t, xt, generator=torch.Generator().manual_seed(0))
    mean = (1 - beta).sqrt() * (1 - abar[s]) / (1 - abar[t]) * xt  # coef2 · x_t; coef1 · x0 vanishes
    var = beta * (1 - abar[s]) / (1 - abar[t])
    noise = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(out.prev_sample, mean + var.sqrt() * noise, atol=1e-12)
    assert sched.previous_timestep(t) == s and sched.previous_timestep(0) == -1


SPACINGS = ["leading", "linspace", "trailing"]
# (T, β_1, β_T, steps_offset, step counts): the paper's schedule, and a short one whose large betas make any table
# error large. The counts include T itself, 1, and ones that do not divide T (where spacings round differently).
SCHEDULES = [
    (1000, 1e-4, 0.02, 0, [1, 3, 7, 50, 333, 999, 1000]),
    (1000, 1e-4, 0.02, 1, [3, 7, 50, 999]),
    (20, 1e-3, 0.2, 0, [1, 3, 6, 7, 19, 20]),
]


@pytest.mark.parametrize("spacing", SPACINGS)
def test_timesteps_are_diffusers_for_every_spacing(spacing):
    """diffusers' own `DDPMScheduler.set_timesteps` is the reference for which timesteps each spacing picks."""
    for num_train, beta_start, beta_end, offset, counts in SCHEDULES:
        kwargs = {"num_train_timesteps": num_train, "beta_start": beta_start, "beta_end": beta_end}
        kwargs |= {"timestep_spacing": spacing, "steps_offset": offset}
        ours, theirs = DDPMPaperScheduler(**kwargs), DDPMScheduler(**kwargs)
        for n in counts:
            ours.set_timesteps(n)
            theirs.set_timesteps(n)
            assert ours.timesteps.tolist() == theirs.timesteps.tolist(), (num_train, offset, n)


def reference_alphas_cumprod(num_train: int, beta_start: float, beta_end: float) -> np.ndarray:
    """ᾱ_t = Π_{s≤t} (1 − β_s) for the linear schedule, in float64 numpy (nothing from ddpm_hf)."""
    return np.cumprod(1.0 - np.linspace(beta_start, beta_end, num_train, dtype=np.float64))


def reference_subchain_step(abar, t, s, x_t, eps, z, variance_type, clip):
    """One step of the sub-chain that jumps from t to s (s = -1: the last step, to x_0), from the definitions:
    β' = 1 − ᾱ_t/ᾱ_s; q(x_s | x_t, x_0) has mean (√ᾱ_s β' x̂_0 + √(1−β') (1 − ᾱ_s) x_t) / (1 − ᾱ_t) and variance
    β̃' = β' (1 − ᾱ_s)/(1 − ᾱ_t); σ² is β̃' (fixed_small) or β' (fixed_large); x̂_0 = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t."""
    a_t = abar[t]
    a_s = abar[s] if s >= 0 else 1.0
    beta = 1.0 - a_t / a_s
    x0 = (x_t - np.sqrt(1.0 - a_t) * eps) / np.sqrt(a_t)
    if clip:
        x0 = np.clip(x0, -1.0, 1.0)
    if s < 0:  # the last step adds no noise: x_0 = x̂_0
        return x0, x0
    mean = (np.sqrt(a_s) * beta * x0 + np.sqrt(1.0 - beta) * (1.0 - a_s) * x_t) / (1.0 - a_t)
    variance = beta * (1.0 - a_s) / (1.0 - a_t) if variance_type == "fixed_small" else beta
    return mean + np.sqrt(variance) * z, x0


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_respaced_steps_are_the_subchain_posterior_from_its_definition(spacing, variance_type):
    """Every step of every respaced chain against its posterior computed from the definition in float64 numpy, on
    the timesteps diffusers picks (so a wrong schedule fails here too, with "not in the current schedule")."""
    rng = np.random.default_rng(0)
    for num_train, beta_start, beta_end, offset, counts in SCHEDULES:
        kwargs = {"num_train_timesteps": num_train, "beta_start": beta_start, "beta_end": beta_end}
        kwargs |= {"timestep_spacing": spacing, "steps_offset": offset}
        abar = reference_alphas_cumprod(num_train, beta_start, beta_end)
        ours, theirs = DDPMPaperScheduler(variance_type=variance_type, **kwargs), DDPMScheduler(**kwargs)
        for n in (n for n in counts if n <= 50):  # every step is checked: the long chains add only time
            ours.set_timesteps(n)
            theirs.set_timesteps(n)
            chain = theirs.timesteps.tolist()
            for t, s in zip(chain, [*chain[1:], -1], strict=True):
                x_t, eps, z = (rng.standard_normal((2, 1, 3, 3)) for _ in range(3))
                eps *= 3  # x̂_0 then leaves [-1, 1] at most t: clipping matters
                eps_t, x_t_t, z_t = (torch.from_numpy(v) for v in (eps, x_t, z))
                out = ours.step(eps_t, t, x_t_t, variance_noise=z_t)
                prev, x0 = reference_subchain_step(abar, t, s, x_t, eps, z, variance_type, clip=True)
                where = (num_train, offset, n, t)
                close = {"rtol": 1e-12, "atol": 1e-12, "err_msg": str(where)}
                np.testing.assert_allclose(out.pred_original_sample.numpy(), x0, **close)
                np.testing.assert_allclose(out.prev_sample.numpy(), prev, **close)


def test_step_reads_nothing_back_from_the_device():
    # Meta tensors hold no data: any host sync (.item(), nonzero, bool()) on them would raise.
    sched = DDPMPaperScheduler()
    sched.set_timesteps(20)
    x = torch.empty(2, 3, 4, 4, device="meta")
    for t in sched.timesteps[:3]:
        x = sched.step(torch.empty_like(x), t, x).prev_sample
    assert x.device.type == "meta" and x.shape == (2, 3, 4, 4)


def test_add_noise_computes_in_float32_for_bf16():
    sched = DDPMPaperScheduler()
    x0, noise = torch.rand(4, 3, 8, 8).bfloat16(), torch.randn(4, 3, 8, 8).bfloat16()
    t = torch.tensor([1, 10, 500, 999])
    out = sched.add_noise(x0, noise, t)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, sched.q_sample(x0.float(), t, noise.float()).bfloat16())
    assert torch.allclose(sched.add_noise(x0.float(), noise.float(), t), sched.q_sample(x0, t, noise))


def test_api_surface():
    sched = DDPMPaperScheduler()
    assert len(sched) == 1000 and sched.init_noise_sigma == 1.0 and sched.order == 1
    x = torch.randn(1, 3, 4, 4)
    assert sched.scale_model_input(x, 5) is x
    assert sched.timesteps.tolist() == list(range(999, -1, -1))
    assert sched.step(x, 5, x, return_dict=False)[0].shape == x.shape
    for name in ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "posterior_variance",
                 "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
                 "model_log_variance"):  # fmt: skip
        assert getattr(sched, name).dtype == torch.float64 and getattr(sched, name).shape == (1000,)


def test_config_round_trips(tmp_path):
    ours = DDPMPaperScheduler(variance_type="fixed_small", beta_end=0.03, num_train_timesteps=500, clip_sample=False)
    ours.save_pretrained(tmp_path)
    back = DDPMPaperScheduler.from_pretrained(tmp_path)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(back.config) == public(ours.config)
    assert torch.equal(back.posterior_variance, ours.posterior_variance)

    from_diffusers = DDPMPaperScheduler.from_config(DDPMScheduler(variance_type="fixed_small", beta_end=0.03).config)
    assert from_diffusers.config.variance_type == "fixed_small" and from_diffusers.config.beta_end == 0.03

    to_diffusers = DDPMScheduler.from_config(ours.config)
    assert to_diffusers.config.variance_type == "fixed_small" and to_diffusers.config.num_train_timesteps == 500
    assert torch.allclose(to_diffusers.alphas_cumprod.double(), ours.alphas_cumprod, rtol=1e-5)
    ddim = DDIMScheduler.from_config(ours.config)
    assert torch.allclose(ddim.alphas_cumprod.double(), ours.alphas_cumprod, rtol=1e-5)
    assert "DDIMScheduler" in [c.__name__ for c in ours.compatibles]


def test_trained_betas():
    betas = np.linspace(1e-4, 0.02, 1000)
    assert torch.equal(DDPMPaperScheduler(trained_betas=betas.tolist()).betas, DDPMPaperScheduler().betas)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variance_type": "learned_range"}, "learned_range"),
        ({"beta_start": 0.02, "beta_end": 0.02}, "beta_end"),
        ({"beta_start": 0.5, "beta_end": 1.5}, r"betas\[500\] = 1.0005"),
        ({"trained_betas": [0.1, 0.0, 0.2]}, r"betas\[1\] = 0.0"),
        ({"trained_betas": [0.1, 0.2], "num_train_timesteps": 3}, "num_train_timesteps=3"),
        ({"beta_schedule": "squaredcos_cap_v2"}, "squaredcos_cap_v2"),
        ({"prediction_type": "v_prediction"}, "v_prediction"),
        ({"timestep_spacing": "random"}, "random"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDPMPaperScheduler(**kwargs)


def test_bad_timesteps_raise():
    sched = DDPMPaperScheduler()
    for bad in (0, 1001, -3):
        with pytest.raises(ValueError, match=str(bad)):
            sched.set_timesteps(bad)
    with pytest.raises(ValueError, match=r"2\.5"):
        sched.set_timesteps(2.5)
    sched.set_timesteps(10)
    x = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match="timestep 5 is not in the current schedule"):
        sched.step(x, 5, x)
    with pytest.raises(ValueError, match="1000"):
        DDPMPaperScheduler().step(x, 1000, x)


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_single_step_schedule_returns_the_clipped_prediction(variance_type):
    sched = DDPMPaperScheduler(variance_type=variance_type)
    sched.set_timesteps(1)
    assert sched.timesteps.tolist() == [0]
    x, eps = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    out = sched.step(eps, 0, x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out.prev_sample, out.pred_original_sample)  # one step: x_0 = x̂_0, no noise
