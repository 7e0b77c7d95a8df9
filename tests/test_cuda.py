"""What only a CUDA GPU can check (skipped elsewhere; benchmarks/gpu_check.sh runs it): the CUDA-graph sampler
of precision="auto" (counted replays, bf16 autocast), the same with the network compiled (inductor's Triton kernels
recorded in the graph), fp32 parity with diffusers on the GPU, and the training loop's GPU fast path."""

import json

import pytest
import torch
import torch._dynamo
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from torch._dynamo.utils import counters

from ddpm_hf import DDPMPaperPipeline, DDPMUNet2DModel
from ddpm_hf.fastpath import GraphedFunction, compile_network
from tiny import TINY_UNET, tiny_pipeline

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def generators(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator(CUDA).manual_seed(seed + i) for i in range(n)]


def test_graph_replays_compute_what_the_function_computes():
    torch.backends.cudnn.allow_tf32 = False  # exact fp32 kernels on both sides
    try:
        unet = DDPMUNet2DModel.from_paper_config("cifar10").to(CUDA).eval()
        x, t = torch.randn(4, 3, 32, 32, device=CUDA), torch.tensor(500, device=CUDA)
        with torch.no_grad():
            graphed = GraphedFunction(lambda x, t: unet(x, t).sample, x, t)
            for step in (999, 3):  # new inputs are copied in at every call
                x_new, t_new = torch.randn_like(x), torch.tensor(step, device=CUDA)
                eager = unet(x_new, t_new).sample
                torch.testing.assert_close(graphed(x_new, t_new), eager, rtol=1e-5, atol=1e-5)
    finally:
        torch.backends.cudnn.allow_tf32 = True


def test_auto_samples_from_a_cuda_graph_in_bf16(monkeypatch):
    """precision="auto" replays one recorded graph per denoising step, recorded under bf16 autocast; its images equal
    eager bf16's and differ from fp32's by about bf16's resolution."""
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bf16, so precision='auto' is eager fp32 here")
    replayed = []  # the id of the graph behind each replay
    replay = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda graph: (replayed.append(id(graph)), replay(graph))[1])
    pipe = tiny_pipeline().to(CUDA)
    conv_dtypes = []  # seen while the graph is recorded (a replay runs no Python)
    for module in pipe.unet.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda _m, _i, out: conv_dtypes.append(out.dtype))
    for batch in (3, 5):  # a new shape records a new graph
        kwargs = {"batch_size": batch, "num_inference_steps": 20, "output_type": "pt"}
        replayed.clear(), conv_dtypes.clear()
        graphed = pipe(generator=generators(batch), precision="auto", **kwargs).images
        assert len(replayed) == 20 and len(set(replayed)) == 1  # every step a replay of one graph
        assert conv_dtypes and set(conv_dtypes) == {torch.bfloat16}
        eager = pipe(generator=generators(batch), precision="bf16", **kwargs).images
        fp32 = pipe(generator=generators(batch), precision="fp32", **kwargs).images
        assert len(replayed) == 20  # "bf16" and "fp32" run eagerly
        assert graphed.shape == (batch, 3, 8, 8)
        assert (graphed - eager).abs().max().item() < 2e-3
        assert 1e-5 < (graphed - fp32).abs().mean().item() < 0.05


def test_compiled_network_in_the_auto_graph(monkeypatch):
    """compile_network + precision="auto": the compiled network, under bf16 autocast, replayed from one CUDA graph per
    shape. Its images equal the same compiled network's launched without the graph ("bf16"), differ from fp32's as
    bf16 does (a compile that dropped autocast would give fp32's), and the compiled fp32 network gives fp32's."""
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bf16, so precision='auto' is eager fp32 here")
    torch._dynamo.reset()
    counters.clear()
    replayed = []
    replay = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda graph: (replayed.append(id(graph)), replay(graph))[1])
    pipe = tiny_pipeline().to(CUDA)
    kwargs = {"batch_size": 3, "num_inference_steps": 20, "output_type": "pt"}
    eager_fp32 = pipe(generator=generators(3), precision="fp32", **kwargs).images
    compile_network(pipe.unet)
    graphed = pipe(generator=generators(3), precision="auto", **kwargs).images
    assert len(replayed) == 20 and len(set(replayed)) == 1
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]
    compiled = {p: pipe(generator=generators(3), precision=p, **kwargs).images for p in ("bf16", "fp32")}
    assert len(replayed) == 20  # "bf16" and "fp32" launch the compiled kernels without a graph
    assert (graphed - compiled["bf16"]).abs().max().item() < 2e-3
    assert 1e-5 < (graphed - eager_fp32).abs().mean().item() < 0.05
    torch.testing.assert_close(compiled["fp32"], eager_fp32, rtol=1e-3, atol=1e-3)
    torch._dynamo.reset()


def test_fp32_on_the_gpu_matches_diffusers():
    pipe = tiny_pipeline().to(CUDA)
    vanilla = UNet2DModel.from_config(pipe.unet.config)
    vanilla.load_state_dict(pipe.unet.state_dict())
    peer = DDPMPipeline(unet=vanilla.to(CUDA).eval(), scheduler=DDPMScheduler(variance_type="fixed_large"))
    peer.set_progress_bar_config(disable=True)
    ours = pipe(batch_size=4, generator=torch.Generator(CUDA).manual_seed(0), precision="fp32", output_type="np")
    theirs = peer(batch_size=4, generator=torch.Generator(CUDA).manual_seed(0), output_type="np")
    assert abs(ours.images - theirs.images).max() < 1e-3


def test_training_runs_on_the_gpu_in_bf16(tmp_path):
    from ddpm_hf.training import parse_args, train

    unet_config = {k: v for k, v in TINY_UNET.items() if k != "dropout"} | {"in_channels": 1, "out_channels": 1}
    args = ["--preset", "digits", "--output_dir", str(tmp_path), "--max_train_steps", "6", "--mixed_precision", "bf16"]
    args += ["--unet_config", json.dumps(unet_config), "--train_batch_size", "16"]
    args += ["--num_grid_images", "4", "--num_inference_steps", "5", "--save_images_steps", "0", "--logging_steps", "2"]
    train(parse_args(args))
    pipe = DDPMPaperPipeline.from_pretrained(tmp_path).to(CUDA)
    images = pipe(batch_size=2, num_inference_steps=5, output_type="pt").images
    assert images.is_cuda and torch.isfinite(images).all()
