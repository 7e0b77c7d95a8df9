"""Progressive generation, interpolation, rate–distortion and the pipeline's analysis methods on a tiny model."""

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.analysis import rate_distortion, to_pil
from ddpm_hf.data import images_to_model
from ddpm_hf.fastpath import eps_model
from ddpm_hf.likelihood import BitsPerDim
from ddpm_hf.sampling import p_sample_loop
from tiny import tiny_unet

T = 20  # a short chain keeps each test to seconds; the math does not depend on T


@pytest.fixture(scope="module")
def pipe():
    pipe = DDPMPaperPipeline(unet=tiny_unet(), scheduler=DDPMPaperScheduler(num_train_timesteps=T))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def uint8_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def test_progressive_reproduces_sampling(pipe):
    gen = torch.Generator().manual_seed(0)
    expected = pipe(batch_size=2, generator=gen, num_inference_steps=T, output_type="pt", precision="fp32")
    run = pipe.progressive(batch_size=2, every=5, generator=torch.Generator().manual_seed(0), return_xt=True)
    assert torch.allclose((run.images / 2 + 0.5).clamp(0, 1), expected.images, atol=1e-6)
    assert run.timesteps == [15, 10, 5, 0]
    assert run.pred_xstart.shape == run.x_t.shape == (2, 4, 3, 8, 8)
    assert float(run.pred_xstart.abs().max()) <= 1.0  # x̂_0 clipped as the sampler clips it
    # At t = 0 the posterior mean is x̂_0 itself: the last column is the sample.
    assert torch.allclose(run.pred_xstart[:, -1], run.images, atol=1e-6)
    assert pipe.progressive(batch_size=1, every=T).x_t is None


def test_progressive_generators_per_image(pipe):
    one = pipe.progressive(batch_size=1, every=T, generator=[torch.Generator().manual_seed(7)])
    two = pipe.progressive(batch_size=2, every=T, generator=[torch.Generator().manual_seed(s) for s in (7, 8)])
    assert torch.allclose(one.images[0], two.images[0], atol=1e-6)


def test_progressive_rejects_bad_batches(pipe):
    with pytest.raises(ValueError, match="batch_size"):
        pipe.progressive(batch_size=0)
    with pytest.raises(ValueError, match="one per image"):
        pipe.progressive(batch_size=2, generator=[torch.Generator()])


@pytest.mark.parametrize("every", [0, T + 1, 2.5, True])
def test_progressive_rejects_bad_every(pipe, every):
    with pytest.raises(ValueError, match="every"):
        pipe.progressive(every=every)


def test_interpolate_endpoints_and_shared_noise(pipe):
    a, b = uint8_images(2)
    out = pipe.interpolate(a, b, t=10, num=5, generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (5, 3, 8, 8) and out.lambdas.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    again = pipe.interpolate(a, b, t=10, num=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.images, again.images)
    # λ = 0 is image a's x_t decoded alone, with the same reverse-process noise as every other interpolant.
    g = torch.Generator().manual_seed(0)
    sources = images_to_model([a, b], 8, 3)
    x_t = pipe.scheduler.q_sample(sources, torch.full((2,), 10), torch.randn(sources.shape, generator=g))
    with eps_model(pipe.unet) as eps:
        alone = p_sample_loop(eps, pipe.scheduler, x_t[:1], g, from_timestep=10, shared_noise=True, progress=False)
    assert torch.allclose(alone[0], out.images[0], atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"t": T}, "t must"), ({"t": -1}, "t must"), ({"t": 1.0}, "t must"), ({"t": 5, "num": 1}, "num must")],
)
def test_interpolate_rejects_bad_arguments(pipe, kwargs, match):
    a, b = uint8_images(2)
    with pytest.raises(ValueError, match=match):
        pipe.interpolate(a, b, **kwargs)
    with pytest.raises(ValueError, match="one image_a"):
        pipe.interpolate(uint8_images(2), b, t=5)


def test_rate_distortion_from_terms():
    # two images, T = 4: terms[:, 0] is L_0, terms[:, t ≥ 1] the KLs
    terms = torch.tensor([[5.0, 1.0, 2.0, 3.0], [7.0, 3.0, 4.0, 5.0]], dtype=torch.float64)
    x0_mse = torch.tensor([[0.0, 1.0, 4.0, 9.0], [0.0, 3.0, 4.0, 7.0]], dtype=torch.float64)
    prior = torch.tensor([0.5, 1.5], dtype=torch.float64)
    rd = rate_distortion(BitsPerDim(total=prior + terms.sum(1), prior=prior, terms=terms, x0_mse=x0_mse))
    assert rd.reverse_steps.tolist() == [1, 2, 3, 4] and rd.timesteps.tolist() == [3, 2, 1, 0]
    # holding x_3: L_T only; x_2: + L_3; x_1: + L_2; x_0: + L_1 (L_0 is never part of the rate)
    assert rd.rate.tolist() == pytest.approx([1.0, 5.0, 8.0, 10.0])
    assert rd.distortion.tolist() == pytest.approx([127.5 * np.sqrt(8.0), 127.5 * 2.0, 127.5 * np.sqrt(2.0), 0.0])


def test_pipeline_bits_per_dim_accepts_every_image_kind(pipe):
    arrays = uint8_images(2)
    kinds = [
        arrays,
        list(arrays),
        [Image.fromarray(a) for a in arrays],
        torch.from_numpy(arrays).permute(0, 3, 1, 2),
        torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 127.5 - 1,
    ]
    results = [pipe.bits_per_dim(k, generator=torch.Generator().manual_seed(0), batch_size=10) for k in kinds]
    for r in results[1:]:
        assert torch.allclose(r.total, results[0].total, rtol=1e-6)
    r = results[0]
    assert r.total.shape == r.prior.shape == (2,) and r.terms.shape == r.x0_mse.shape == (2, T)
    assert torch.isfinite(r.total).all() and (r.terms[:, 1:] >= 0).all()


def test_pipeline_rate_distortion(pipe):
    rd = pipe.rate_distortion(uint8_images(3), generator=torch.Generator().manual_seed(0), batch_size=30)
    assert rd.rate.shape == rd.distortion.shape == (T,)
    assert (np.diff(rd.rate) >= 0).all()  # each step sends a KL ≥ 0 more
    assert (rd.distortion >= 0).all() and rd.distortion[0] > rd.distortion[-1]


@pytest.mark.parametrize(
    ("images", "match"),
    [
        ([], "expected images"),
        (np.zeros((8, 8, 3), dtype=np.float32), "uint8 HWC"),
        (torch.full((3, 8, 8), 2.0), r"\[-1, 1\]"),
        (np.zeros((4, 4, 3), dtype=np.uint8), "3×8×8"),
        ("image.png", "expected images"),
    ],
)
def test_images_to_model_rejects_bad_inputs(images, match):
    with pytest.raises(ValueError, match=match):
        images_to_model(images, 8, 3)


def test_images_to_model_and_to_pil_round_trip():
    arrays = uint8_images(2)
    x = images_to_model(arrays, 8, 3)
    assert x.shape == (2, 3, 8, 8) and float(x.min()) >= -1 and float(x.max()) <= 1
    back = to_pil(x)
    assert all(np.array_equal(np.asarray(p), a) for p, a in zip(back, arrays, strict=True))
    gray = images_to_model(Image.new("L", (16, 16), 255), 8, 1)
    assert gray.shape == (1, 1, 8, 8) and torch.all(gray == 1)
