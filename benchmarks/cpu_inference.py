"""CPU inference of the U-Net, one forward (one denoising step's network call): the pipeline's paths against
diffusers' and the same network exported to OpenVINO and ONNX Runtime, in one process, on the same weights.

    pip install -e ".[bench]"
    flock /tmp/ddpm_heavy.lock python benchmarks/cpu_inference.py --batch_size 8 --repeats 7

Sides (`--sides`; all but `compiled` and `frozen_cl` by default, which measured no faster than `eager`/`frozen`):
  diffusers      diffusers' UNet2DModel as DDPMPipeline calls it (fp32, NCHW): the peer
  eager          ddpm_hf's network through `fastpath.eps_model`, as `DDPMPaperPipeline` runs it (`--precision`)
  eager_cl       the same with the weights in channels_last
  compiled       `compile_network(unet)`: torch.compile (inductor), no freezing
  frozen         `compile_network(unet, freezing=True)`: inductor with the weights frozen as constants
  frozen_cl      the same, weights in channels_last before freezing
  openvino       `ov.convert_model` of the torch module, compiled for the CPU in f32
  onnxruntime    `torch.onnx.export` (TorchScript exporter) run by an ONNX Runtime CPU session, all graph optimisations

After one untimed call each (compilation, export and the runtimes' first call are timed apart, as setup), the
repeats go round-robin over the sides, so drift of the machine's speed hits them alike; the median and the range
are reported, and each ratio is the median over rounds of the two sides' times in the same round. Each side's
output is compared with the eager fp32 ε̂, and the compiled sides also run `pipe(...,
num_inference_steps=--pipeline_steps)` to check the images against the eager pipeline's. The runtimes get the
same number of threads as torch (`--threads`, default torch's). `DDPM_BENCH_TOY=1` and
`DDPM_BENCH_COMPILE_BACKEND=aot_eager` (see common.py) make a quick dry run, never figures.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.metadata
import json
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import compile_backend, describe_device, timed, toy, twin_unets

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.fastpath import compile_network, eps_model, resolve_precision
from ddpm_hf.unet import variance_scaling_

CPU = torch.device("cpu")
SIDES = ["diffusers", "eager", "eager_cl", "compiled", "frozen", "frozen_cl", "openvino", "onnxruntime"]
DEFAULT_SIDES = ["diffusers", "eager", "eager_cl", "frozen", "openvino", "onnxruntime"]
PEERS = ["diffusers", "openvino", "onnxruntime"]
FLAGS = ["avx512f", "avx512_bf16", "amx_bf16"]
Forward = Callable[[], torch.Tensor]


def cpu_flags() -> dict[str, bool]:
    """Which of the instruction-set flags that decide CPU inference speed this CPU reports."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line.split(":", 1)[1].split() for line in f if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = []
    return {flag: flag in flags for flag in FLAGS}


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def wake_up_(unet: torch.nn.Module) -> None:
    """Give the paper initialisation's near-zero layers (1e-10 scale) ordinary weights, as training would: at
    initialisation ε̂ is ≈ 1e-10, which would hide any difference between the sides' outputs. (Not for speed: on
    a 2-core AMD EPYC an eager forward took 868 ms with the paper's initialisation and 852 ms with these weights.)"""
    for module in unet.modules():
        # The near-zero weights stay within a few 1e-6 (scale 1e-10), ordinary ones reach ~1e-2.
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.weight.abs().max() < 1e-4:
            variance_scaling_(module.weight, 1.0)


class Network(torch.nn.Module):
    """The U-Net as a plain (x, t) -> ε̂ function, which is what the exporters trace."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t).sample


def openvino_side(unet, x, t, threads: int, _: Path) -> Forward:
    import openvino as ov

    with torch.no_grad():
        model = ov.convert_model(Network(unet).eval(), example_input=(x, t))
    # f32 pinned: on CPUs with bf16 units OpenVINO's default hint would compute in bf16.
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    inputs = [x.numpy(), t.numpy()]
    return lambda: torch.from_numpy(request.infer(inputs)[0].copy())


def onnxruntime_side(unet, x, t, threads: int, workdir: Path) -> Forward:
    import onnxruntime as ort

    path = workdir / "unet.onnx"
    with torch.no_grad():
        # The TorchScript exporter: torch 2.13's default (dynamo) exporter needs onnxscript and gave no faster graph.
        torch.onnx.export(Network(unet).eval(), (x, t), path, input_names=["x", "t"], dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy(), "t": t.numpy()}
    return lambda: torch.from_numpy(session.run(None, feed)[0])


def torch_side(unet: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, precision: str) -> Forward:
    def forward() -> torch.Tensor:
        with torch.no_grad(), eps_model(unet, precision, device=CPU) as eps:
            return eps(x, t)

    return forward


def pipeline_images(unet, batch_size: int, steps: int, precision: str) -> torch.Tensor:
    pipe = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler(variance_type="fixed_large"))
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator(CPU).manual_seed(0)
    return pipe(batch_size, gen, steps, output_type="pt", precision=precision).images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cifar10", help="a DDPMUNet2DModel.from_paper_config name")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds over all sides")
    parser.add_argument("--sides", nargs="+", default=DEFAULT_SIDES, choices=SIDES)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "auto"], help="of ddpm_hf's sides")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="for every side")
    parser.add_argument("--timestep", type=int, default=500)
    parser.add_argument("--pipeline_steps", type=int, default=2, help="pipeline steps for the image check (0: none)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    torch.manual_seed(0)
    ours, peer = twin_unets(args.model, CPU)
    wake_up_(ours)
    peer.load_state_dict(ours.state_dict())
    ours.eval()
    peer.eval()
    size = ours.config.sample_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, ours.config.in_channels, size, size, generator=gen)
    t = torch.tensor(args.timestep)  # 0-d, as the pipeline passes it
    with torch.no_grad():
        reference = ours(x, t).sample

    def ours_copy(layout: torch.memory_format = torch.contiguous_format) -> torch.nn.Module:
        return copy.deepcopy(ours).to(memory_format=layout)

    def compiled(layout: torch.memory_format, freezing: bool) -> torch.nn.Module:
        return compile_network(ours_copy(layout), freezing=freezing, backend=compile_backend())

    def peer_forward() -> torch.Tensor:
        with torch.no_grad():
            return peer(x, t).sample

    workdir = Path(tempfile.mkdtemp(prefix="cpu_inference_"))
    # Each builds a side: the network ddpm_hf's pipeline would hold (None for the others) and its forward.
    builders: dict[str, Callable[[], tuple[torch.nn.Module | None, Forward]]] = {
        "diffusers": lambda: (None, peer_forward),
        "eager": lambda: (ours, None),
        "eager_cl": lambda: (ours_copy(torch.channels_last), None),
        "compiled": lambda: (compiled(torch.contiguous_format, freezing=False), None),
        "frozen": lambda: (compiled(torch.contiguous_format, freezing=True), None),
        "frozen_cl": lambda: (compiled(torch.channels_last, freezing=True), None),
        "openvino": lambda: (None, openvino_side(peer, x, t, args.threads, workdir)),
        "onnxruntime": lambda: (None, onnxruntime_side(peer, x, t, args.threads, workdir)),
    }
    sides: dict[str, Forward] = {}
    networks: dict[str, torch.nn.Module] = {}
    results: dict[str, dict] = {}
    for name in args.sides:
        start = time.perf_counter()
        try:
            unet, forward = builders[name]()
        except ImportError as error:
            print(f"{name}: skipped ({error}; pip install -e '.[bench]')", flush=True)
            continue
        if unet is not None:
            networks[name], forward = unet, torch_side(unet, x, t, args.precision)
        built = time.perf_counter() - start
        first = timed(forward, CPU)  # the compiled sides compile here
        results[name] = {
            "setup_s": built + first,
            "max_abs_diff": (forward() - reference).abs().max().item(),
        }
        print(f"{name}: setup {built + first:.1f} s (export/build {built:.1f} s, first call {first:.1f} s)", flush=True)
        sides[name] = forward

    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, forward in sides.items():
            times[name].append(timed(forward, CPU))
    for name in sides:
        results[name].update(
            median_ms=statistics.median(times[name]) * 1e3,
            min_ms=min(times[name]) * 1e3,
            max_ms=max(times[name]) * 1e3,
            times_ms=[s * 1e3 for s in times[name]],
        )

    if args.pipeline_steps:
        # The compiled networks inside DDPMPaperPipeline, against the eager pipeline: the same images, and no
        # compilation on the way (the pipeline's calls have the shapes of the timed ones).
        eager_images = pipeline_images(ours, args.batch_size, args.pipeline_steps, args.precision)
        for name in ("compiled", "frozen", "frozen_cl"):
            if name in networks:
                start = time.perf_counter()
                images = pipeline_images(networks[name], args.batch_size, args.pipeline_steps, args.precision)
                results[name]["pipeline_s"] = time.perf_counter() - start
                results[name]["image_max_abs_diff"] = (images - eager_images).abs().max().item()

    flags = cpu_flags()
    machine = f"{describe_device(CPU)}; " + ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in flags.items())
    versions = {p: version(p) for p in ("torch", "diffusers", "openvino", "onnxruntime", "onnx")}
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    resolved = resolve_precision(args.precision, CPU)
    print(f"machine: {machine}")
    print(f"date: {date}; " + ", ".join(f"{p} {v}" for p, v in versions.items()))
    print(f"command: {command}")
    print(
        f"network {args.model}{' (toy size: DDPM_BENCH_TOY=1)' if toy() else ''}, batch {args.batch_size}, "
        f"t = {args.timestep}, {args.repeats} rounds; ddpm_hf precision {args.precision!r} (here: {resolved}), "
        f"compile backend {compile_backend()}, {args.threads} threads for every side"
    )
    present = [p for p in ["eager", *PEERS] if p in results]

    def ratio(p: str, name: str) -> float:
        return statistics.median(a / b for a, b in zip(times[p], times[name], strict=True))

    header = "| side | ms/forward (median) | range | " + " | ".join(f"× {p}" for p in present)
    print(f"\n{header} | max abs Δ ε̂ vs eager | max abs Δ images | setup s |")
    print("|---" * (6 + len(present)) + "|")
    for name, r in results.items():
        ratios = " | ".join(f"{ratio(p, name):.3f}" for p in present)
        image = r.get("image_max_abs_diff")
        print(
            f"| {name} | {r['median_ms']:.1f} | {r['min_ms']:.1f}–{r['max_ms']:.1f} | {ratios} | "
            f"{r['max_abs_diff']:.1e} | {'—' if image is None else f'{image:.1e}'} | {r['setup_s']:.1f} |"
        )
    print(
        f"(× p: the median over rounds of p's time over this side's, above 1 when this side is faster; "
        f"max |ε̂| = {reference.abs().max().item():.2f})"
    )
    if args.json:
        summary = {
            "args": vars(args),
            "command": command,
            "machine": describe_device(CPU),
            "flags": flags,
            "date": date,
            "versions": versions,
            "toy": toy(),
            "results": results,
        }
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
