"""The work of a sharded evaluation: sampling with features, features of finished shards, the bound image by image,
and the metrics read back from the shards.

Every result is a function of its image's index alone (image i is sampled from a generator seeded `seed + i`; the
bound of test image i draws its noise from one seeded `seed + i`), and batches are cut inside a shard from its
start, so the same shard holds the same bytes whichever process made it and however many processes there were.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from ..errors import InputError
from ..pixels import unit_to_uint8
from .frechet import FeatureSums, FIDStatistics
from .store import SampleStore, Shard, ShardStore

if TYPE_CHECKING:
    from ..pipeline import DDPMPaperPipeline


class FeatureExtractor(Protocol):
    """What the jobs need of a feature network (`InceptionV3`, `DINOv2`)."""

    name: str
    weights_id: str

    def extract(self, images: torch.Tensor, probabilities: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features [N, D] and, if asked, class probabilities [N, K] of uint8 NCHW images (on CPU)."""
        ...


@dataclass
class FeatureSpec:
    """One extractor's arrays kept per shard: `NAME-ID` (features) and, if asked, `NAME-ID-probs`."""

    extractor: FeatureExtractor
    probabilities: bool = False

    @property
    def features_name(self) -> str:
        return f"{self.extractor.name}-{self.extractor.weights_id}"

    @property
    def probabilities_name(self) -> str:
        return f"{self.features_name}-probs"

    @property
    def names(self) -> list[str]:
        return [self.features_name] + ([self.probabilities_name] if self.probabilities else [])

    def compute(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        features, probs = self.extractor.extract(images, probabilities=self.probabilities)
        arrays = {self.features_name: features.numpy().astype(np.float32)}
        if self.probabilities:
            arrays[self.probabilities_name] = probs.numpy().astype(np.float64)
        return arrays


class Progress(Protocol):
    def advance(self, images: int) -> None: ...


@dataclass
class SamplingSettings:
    """How image i is made: Algorithm 2 from a generator seeded `seed + i`, batches of `batch_size` in a shard."""

    seed: int
    batch_size: int
    num_inference_steps: int
    precision: str


@dataclass
class Timings:
    """Seconds this process spent in each part of the work."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, part: str, start: float) -> None:
        self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start


def sample_batches(pipe: DDPMPaperPipeline, shard: Shard, settings: SamplingSettings) -> Iterator[torch.Tensor]:
    """The shard's images as uint8 NCHW batches, image i drawn with its own generator seeded `seed + i`."""
    for start in range(shard.start, shard.end, settings.batch_size):
        indices = range(start, min(start + settings.batch_size, shard.end))
        generators = [torch.Generator().manual_seed(settings.seed + i) for i in indices]
        images = pipe(
            batch_size=len(indices),
            generator=generators,
            num_inference_steps=settings.num_inference_steps,
            output_type="pt",
            precision=settings.precision,
        ).images
        yield unit_to_uint8(images)


def make_sample_shards(
    pipe: DDPMPaperPipeline,
    store: SampleStore,
    shards: list[Shard],
    settings: SamplingSettings,
    specs: list[FeatureSpec],
    progress: Progress,
    timings: Timings,
) -> None:
    """Sample each shard, compute its features batch by batch as the images come, and write it whole."""
    for shard in shards:
        images, arrays = [], {}
        batches = sample_batches(pipe, shard, settings)
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            timings.add("sampling", start)
            start = time.perf_counter()
            for spec in specs:
                for name, array in spec.compute(batch).items():
                    arrays.setdefault(name, []).append(array)
            timings.add("features", start)
            images.append(batch)
            progress.advance(len(batch))
        store.write_samples(shard, torch.cat(images), {k: np.concatenate(v) for k, v in arrays.items()})


def shards_lacking(store: ShardStore, count: int, names: list[str]) -> list[Shard]:
    """The finished shards among images 0 .. count − 1 that lack one of the arrays `names`."""
    return [s for s in store.finished() if s.start < count and not all(store.has(s, n) for n in names)]


def add_missing_features(
    store: SampleStore,
    shards: list[Shard],
    specs: list[FeatureSpec],
    batch_size: int,
    progress: Progress,
    timings: Timings,
) -> None:
    """Compute the features that finished shards lack (a metric asked for after they were made) from their PNGs."""
    for shard in shards:
        start = time.perf_counter()
        images = store.images(shard)
        wanted = [spec for spec in specs if not all(store.has(shard, n) for n in spec.names)]
        arrays = {}
        for begin in range(0, len(images), batch_size):
            batch = images[begin : begin + batch_size]
            for spec in wanted:
                for name, array in spec.compute(batch).items():
                    arrays.setdefault(name, []).append(array)
            progress.advance(len(batch))
        store.add(shard, {k: np.concatenate(v) for k, v in arrays.items() if not store.has(shard, k)})
        timings.add("features", start)


@dataclass
class BoundSettings:
    """How the bound of test image i is computed: `pipe.bits_per_dim` with noise from a generator seeded seed + i."""

    seed: int
    batch_size: int
    clip_denoised: bool = True
    precision: str = "fp32"
    num_inference_steps: int | None = None  # the respaced chain's bound; None: the full chain


def bound_shards(
    pipe: DDPMPaperPipeline,
    store: ShardStore,
    shards: list[Shard],
    images: torch.utils.data.Dataset,
    settings: BoundSettings,
    progress: Progress,
    timings: Timings,
) -> None:
    """The variational bound of each test image of each shard (bits/dim, its L_T, per-t terms and x̂_0 errors).

    Image by image, so that its value depends on its index only, never on which images share a process or batch;
    `batch_size` (image, t) pairs go through the network at a time.
    """
    device = pipe.device
    for shard in shards:
        parts: dict[str, list[np.ndarray]] = {"total": [], "prior": [], "terms": [], "x0_mse": []}
        for index in shard.indices:
            start = time.perf_counter()
            bpd = pipe.bits_per_dim(
                images[index][None].to(device),
                generator=torch.Generator(device).manual_seed(settings.seed + index),
                clip_denoised=settings.clip_denoised,
                batch_size=settings.batch_size,
                precision=settings.precision,
                num_inference_steps=settings.num_inference_steps,
            )
            for name in parts:
                parts[name].append(getattr(bpd, name).cpu().numpy())
            timings.add("nll", start)
            progress.advance(1)
        store.write(shard, {name: np.concatenate(arrays) for name, arrays in parts.items()})


# --- metrics read back from the shards --------------------------------------------------------------------------


def feature_sums(store: ShardStore, name: str, count: int) -> FeatureSums:
    """Float64 sums of features NAME of images 0 .. count − 1, added shard by shard in index order.

    The order is fixed by the indices, not by the processes that made the shards, so the statistics are
    bit-identical for any process count; memory is one shard's features plus D² sums.
    """
    sums = None
    for block in store.blocks(name, count):
        sums = sums or FeatureSums(block.shape[1])
        sums.add(block)
    if sums is None:
        raise InputError("no images to compute statistics of")
    return sums


def shard_statistics(store: ShardStore, spec: FeatureSpec, count: int) -> FIDStatistics:
    """FID (or FD_DINOv2) statistics of the features of images 0 .. count − 1, recording their extractor."""
    return FIDStatistics.from_sums(
        feature_sums(store, spec.features_name, count),
        weights_id=spec.extractor.weights_id,
        extractor=spec.extractor.name,
    )


def bound_summary(store: ShardStore, count: int) -> dict[str, float | int | list[float]]:
    """Mean bits/dim of images 0 .. count − 1 with its standard error, its parts, and the per-timestep means."""
    totals = np.concatenate(list(store.blocks("total", count)))
    prior = np.concatenate(list(store.blocks("prior", count)))
    terms_sum, mse_sum, decoder, kl = None, None, 0.0, 0.0
    for terms, mse in zip(store.blocks("terms", count), store.blocks("x0_mse", count), strict=True):
        terms, mse = np.asarray(terms, dtype=np.float64), np.asarray(mse, dtype=np.float64)
        terms_sum = terms.sum(axis=0) if terms_sum is None else terms_sum + terms.sum(axis=0)
        mse_sum = mse.sum(axis=0) if mse_sum is None else mse_sum + mse.sum(axis=0)
        decoder += float(terms[:, 0].sum())
        kl += float(terms[:, 1:].sum())
    stderr = float(totals.std(ddof=1) / math.sqrt(len(totals))) if len(totals) > 1 else None  # one image: none
    return {
        "num_images": len(totals),
        "num_timesteps": len(terms_sum),
        "bpd": float(totals.mean()),
        "bpd_stderr": stderr,
        "prior_bpd": float(prior.mean()),  # L_T
        "decoder_bpd": decoder / len(totals),  # L_0
        "kl_bpd": kl / len(totals),  # Σ_{t≥1} L_t
        "terms_bpd": (terms_sum / len(totals)).tolist(),  # per timestep t = 0..T-1
        "x0_rmse_0_255": (127.5 * np.sqrt(mse_sum / len(totals))).tolist(),
    }
