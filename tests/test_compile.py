"""torch.compile (inductor) as an opt-in fast path: the compiled network computes what the eager one does.

`fastpath.compile_network` for sampling (plain, and with inductor's freezing) and Accelerate's `--dynamo_backend
inductor` (a `torch.compile` of the prepared model) for training, on the tiny paper U-Net. Inductor compiles for
the CPU here (C++ kernels through the system's compiler), so these run without a GPU; tests/test_cuda.py checks the
compiled CUDA-graph sampler there.

A cold compile is the cost (tens of seconds per graph on a busy 2-core machine, most of it the C++ compiler): the
kernels are built as scalar C++ (`cpp.vec_isa_ok=False`, about half the compile time of the vectorised build; the
same operations), and the whole module is skipped, with the reason, where inductor cannot compile at all.
"""

import pytest
import torch
import torch._dynamo
import torch._inductor.config
import torch._inductor.freezing
from torch._dynamo.utils import counters

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler, DDPMUNet2DModel
from ddpm_hf.blocks import Dropout
from ddpm_hf.fastpath import compile_network, eps_model, memory_format
from ddpm_hf.training.losses import diffusion_loss, make_loss
from tiny import TINY_UNET

CPU = torch.device("cpu")
# The tiny U-Net with one level (its attention, residual blocks, middle block and time embedding): fewer kernels to
# build than TINY_UNET's two.
ONE_LEVEL = {
    **TINY_UNET,
    "block_out_channels": (32,),
    "down_block_types": ("AttnDownBlock2D",),
    "up_block_types": ("AttnUpBlock2D",),
}


def one_level_unet(seed: int) -> DDPMUNet2DModel:
    """As tiny.tiny_unet: weights perturbed, so that the (zero-initialised) output layer depends on the input."""
    torch.manual_seed(seed)
    unet = DDPMUNet2DModel.from_paper_config("cifar10", **ONE_LEVEL)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return unet


@pytest.fixture(scope="module", autouse=True)
def inductor_here():
    """Skip the module where inductor cannot build a kernel (no C++ compiler, say); build kernels as scalar C++."""
    with torch._inductor.config.patch({"cpp.vec_isa_ok": False}):
        try:
            torch._dynamo.reset()
            x = torch.linspace(0, 1, 16)
            torch.testing.assert_close(torch.compile(lambda v: v.sin() * 2 + 1)(x), x.sin() * 2 + 1)
        except Exception as error:  # what inductor raises varies (a missing compiler, a failed build, ...)
            pytest.skip(f"inductor cannot compile here: {type(error).__name__}: {str(error)[:200]}")
        yield


@pytest.fixture
def compile_counters():
    """dynamo's counters from a clean start: frames compiled (`counters["stats"]`) and graph breaks."""
    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()


@pytest.fixture
def frozen_weights(monkeypatch):
    """For each graph inductor freezes, how many of its parameters and buffers became constants (inductor's
    `replace_params_with_constants` is where freezing turns the graph's weight inputs into constants)."""
    counts: list[int] = []
    original = torch._inductor.freezing.replace_params_with_constants

    def counting(gm, flat_params, fw_metadata):
        kept = original(gm, flat_params, fw_metadata)
        counts.append(sum(i not in kept for i in range(len(flat_params))))
        return kept

    monkeypatch.setattr(torch._inductor.freezing, "replace_params_with_constants", counting)
    return counts


def weight_count(unet: torch.nn.Module) -> int:
    return len([*unet.parameters(), *unet.buffers()])


def relative_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    return ((x - reference).norm() / reference.norm()).item()


def one_graph(counters) -> bool:
    """Whether dynamo compiled at least one frame and broke no graph (a break would run part of the network eagerly)."""
    return counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]


def test_compiled_sampling_equals_eager(compile_counters):
    pipe = DDPMPaperPipeline(one_level_unet(3).eval(), DDPMPaperScheduler())
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"batch_size": 2, "num_inference_steps": 4, "output_type": "pt", "precision": "fp32"}
    eager = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert compile_network(pipe.unet) is pipe.unet  # in place: the pipeline's own network
    compiled = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert one_graph(compile_counters)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    graphs = compile_counters["stats"]["unique_graphs"]
    again = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images  # same shapes: no recompilation
    assert compile_counters["stats"]["unique_graphs"] == graphs
    torch.testing.assert_close(again, compiled, rtol=0, atol=0)


def test_frozen_sampling_equals_eager_with_every_weight_folded(compile_counters, frozen_weights, tmp_path):
    """`compile_network(..., freezing=True)`: the pipeline's own network, frozen (every parameter a constant, one
    graph), samples the eager images within float rounding and compiles once; the state dict and saving are as they
    were; and weights loaded in place afterwards are frozen anew, not read from the old constants."""
    pipe = DDPMPaperPipeline(one_level_unet(3).eval(), DDPMPaperScheduler())
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"batch_size": 2, "num_inference_steps": 4, "output_type": "pt", "precision": "fp32"}

    def sample(p: DDPMPaperPipeline) -> torch.Tensor:
        return p(generator=torch.Generator().manual_seed(0), **kwargs).images

    eager = sample(pipe)
    state = {name: value.clone() for name, value in pipe.unet.state_dict().items()}
    assert compile_network(pipe.unet, freezing=True) is pipe.unet
    frozen = sample(pipe)
    assert frozen_weights == [weight_count(pipe.unet)]  # freezing ran, and took every weight as a constant
    assert one_graph(compile_counters)
    torch.testing.assert_close(frozen, eager, rtol=1e-5, atol=1e-5)
    graphs = compile_counters["stats"]["unique_graphs"]
    torch.testing.assert_close(sample(pipe), frozen, rtol=0, atol=0)
    assert compile_counters["stats"]["unique_graphs"] == graphs and len(frozen_weights) == 1  # no recompilation

    after = pipe.unet.state_dict()
    assert list(after) == list(state) and all(torch.equal(after[name], state[name]) for name in state)

    other = DDPMPaperPipeline(one_level_unet(4).eval(), DDPMPaperScheduler())
    other.set_progress_bar_config(disable=True)
    pipe.unet.load_state_dict(other.unet.state_dict())  # in place: the frozen graph's constants are now stale
    other_eager = sample(other)
    torch.testing.assert_close(sample(pipe), other_eager, rtol=1e-5, atol=1e-5)
    assert frozen_weights == [weight_count(pipe.unet)] * 2

    pipe.save_pretrained(tmp_path)
    reloaded = DDPMPaperPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(sample(reloaded), other_eager, rtol=0, atol=0)


def test_frozen_network_trains_eagerly(compile_counters):
    """Freezing is for inference only: with gradients the frozen network runs eagerly (no graph compiled, the same
    gradients as the plain network, bit for bit); the optimizer's in-place step then makes the next call without
    gradients compile a new graph. (aot_eager: dynamo's graphs, run by PyTorch's kernels; the test above checks
    that inductor's frozen graph follows new weights.)"""
    nets = [one_level_unet(0).eval() for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    compile_network(nets[1], freezing=True, backend="aot_eager")
    x, t = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor(7)
    with torch.no_grad():
        torch.testing.assert_close(nets[1](x, t).sample, nets[0](x, t).sample, rtol=1e-5, atol=1e-5)
    assert compile_counters["stats"]["unique_graphs"] == 1

    grads = []
    for net in nets:
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        with eps_model(net, training=True, device=CPU) as eps:
            loss = (eps(x, torch.tensor([3, 900])) - x).square().mean()
        loss.backward()
        grads.append([p.grad.clone() for p in net.parameters()])
        opt.step()
        net.eval()
    assert compile_counters["stats"]["unique_graphs"] == 1
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))

    with torch.no_grad():
        torch.testing.assert_close(nets[1](x, t).sample, nets[0](x, t).sample, rtol=1e-5, atol=1e-5)
    assert compile_counters["stats"]["unique_graphs"] == 2  # the stepped weights, frozen anew


def test_compiled_training_step_equals_eager(compile_counters):
    """One training step as `ddpm_hf.training` runs it (channels_last, L_simple through `eps_model(training=True)`,
    clip 1.0, Adam), on `torch.compile(model)` as Accelerate's `--dynamo_backend inductor` wraps it, against the same
    step eager: loss, every gradient and every updated weight. (Dropout 0 here: compiled, dropout draws its mask with
    inductor's own generator, so the masks differ from eager's; `test_compiled_dropout_drops` checks that path.)"""
    nets = [one_level_unet(0) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    before = [p.detach().clone() for p in nets[0].parameters()]
    scheduler = DDPMPaperScheduler()
    loss_fn = make_loss("simple", scheduler)
    gen = torch.Generator().manual_seed(1)
    x_0 = torch.rand(4, 3, 8, 8, generator=gen) * 2 - 1
    noise, t = torch.randn(x_0.shape, generator=gen), torch.randint(0, 1000, (4,), generator=gen)

    def step(unet, model) -> tuple[torch.Tensor, list[torch.Tensor]]:
        unet.train().to(memory_format=memory_format(CPU, training=True))
        opt = torch.optim.Adam(unet.parameters(), lr=1e-3)
        with eps_model(model, training=True, device=CPU) as eps:
            loss = diffusion_loss(eps, scheduler, loss_fn, x_0, t, noise).mean()
        loss.backward()
        grads = [p.grad.clone() for p in unet.parameters()]
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        return loss.detach(), grads

    eager_loss, eager_grads = step(nets[0], nets[0])
    compiled_loss, compiled_grads = step(nets[1], torch.compile(nets[1], backend="inductor"))
    assert one_graph(compile_counters)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    # Fused kernels sum in another order, so compare in norm: each gradient within 1e-4 of its own size, plus 1e-6 of
    # all gradients' (the biases of convolutions followed by GroupNorm have a zero gradient, which both sides compute
    # as rounding noise near 1e-10).
    scale = torch.cat([g.flatten() for g in eager_grads]).norm()
    for eager_grad, compiled_grad in zip(eager_grads, compiled_grads, strict=True):
        assert (compiled_grad - eager_grad).norm() <= 1e-4 * eager_grad.norm() + 1e-6 * scale
    updates = [
        torch.cat([(p.detach() - b).flatten() for p, b in zip(n.parameters(), before, strict=True)]) for n in nets
    ]
    assert updates[0].abs().max() > 1e-4  # the step moved the weights
    assert relative_error(updates[1], updates[0]) < 1e-3


@pytest.mark.parametrize(
    ("training", "layout"),  # as each runs: training channels_last; sampling NCHW on CUDA, channels_last on CPUs
    [(True, torch.channels_last), (False, torch.contiguous_format), (False, torch.channels_last)],
)
def test_network_compiles_to_one_graph(training, layout):
    """dynamo traces the whole paper network (dropout on, our blocks, bf16 autocast as eps_model enters it) without a
    graph break, which would run the rest eagerly: the in-place draw of the CPU dropout mask broke it at every
    dropout. Traced only (no kernels built)."""
    unet = DDPMUNet2DModel.from_paper_config("cifar10", **{**TINY_UNET, "dropout": 0.1}).train(training)
    unet.to(memory_format=layout)
    x, t = torch.randn(2, 3, 8, 8).contiguous(memory_format=layout), torch.tensor([1, 500])
    for autocast in (False, True):
        torch._dynamo.reset()
        with torch.set_grad_enabled(training), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            explained = torch._dynamo.explain(unet)(x, t)
        assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons


def test_compiled_dropout_drops():
    """Compiled, `blocks.Dropout` is `F.dropout`: it still zeroes about p of the activations and scales the rest by
    1/(1-p) in training, and is the identity in eval. (aot_eager: the traced graph, run by PyTorch's kernels.)"""
    torch._dynamo.reset()
    layer = Dropout(0.3)
    compiled = torch.compile(layer, backend="aot_eager", dynamic=False)
    x = torch.ones(64, 32, 16, 16)
    y = compiled(x)
    kept = (y != 0).double().mean().item()
    assert abs(kept - 0.7) < 5 * (0.7 * 0.3 / x.numel()) ** 0.5
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    assert torch.equal(compiled.eval()(x), x)
    torch._dynamo.reset()
