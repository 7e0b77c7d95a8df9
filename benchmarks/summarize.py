"""The short table gpu_check.sh prints last: each row of the GPU targets (docs/benchmarks.md) from the JSON files its
sections wrote, with peak memory beside each figure and whether the target was met. A row whose section did not
finish says so.

    python benchmarks/summarize.py OUT_DIR          # also writes OUT_DIR/table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PAPER_TPU_TRAIN = 2690  # images/s, the paper's TPU v3-8 on CIFAR-10 at batch 128
PAPER_TPU_SAMPLE = 17.0  # seconds for 256 CIFAR-10 images × 1000 steps on the same TPU


def load(out: Path, name: str) -> dict | None:
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return None


def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"


def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def training_rows(out: Path) -> list[str]:
    rows = []
    for name, label in (
        ("training_bf16.json", "Accelerate bf16"),
        ("training_no.json", "no mixed precision (fp32; TF32 convs on CUDA)"),
        ("training_compiled.json", "bf16 compiled"),
    ):
        data = load(out, name)
        if data is not None and "compiled" in name:
            label = f"bf16 + {data['args']['dynamo_backend']}"
        if data is None:
            rows.append(f"training CIFAR-10, b128, ours {label}: not measured ({name} missing: section skipped/failed)")
            continue
        (peer_name, peer), (_, ours) = list(data["results"].items())[:2]
        rate = data["images_per_s"]
        peer_rate, ours_rate = rate[peer_name], list(rate.values())[1]
        ratio = ours_rate / peer_rate
        ok = ratio >= 2 and ours_rate >= PAPER_TPU_TRAIN
        compile_s = f"; warm-up {ours['warmup_seconds']:.0f} s" if "compiled" in name else ""
        rows.append(
            f"training CIFAR-10, b{data['args']['batch_size']}, ours {label}: diffusers {peer_rate:,.0f} img/s "
            f"(peak {mib(peer['peak_bytes'])}), ours {ours_rate:,.0f} img/s (peak {mib(ours['peak_bytes'])}){compile_s}"
            f" → {ratio:.2f}× [target ≥ 2× and ≥ {PAPER_TPU_TRAIN:,} img/s: {verdict(ok)}; stretch 5,000: "
            f"{verdict(ours_rate >= 5000)}]"
        )
    return rows


def sampling_rows(out: Path) -> list[str]:
    rows = []
    data = load(out, "sampling_1000.json")
    if data is None:
        rows.append("sampling 256 × 1000 steps: not measured (sampling_1000.json missing)")
    else:
        steps, batch = data["args"]["steps"], data["args"]["batch_size"]
        items = list(data["results"].items())
        (_, peer), (ours_name, ours) = items[0], items[-1]
        ratio = peer["seconds"] / ours["seconds"]
        scale = f" (measured at {steps} steps, × {1000 / steps:g})" if steps != 1000 else ""
        peer_s, ours_s = peer["seconds"] * 1000 / steps, ours["seconds"] * 1000 / steps
        ok = ours_s <= PAPER_TPU_SAMPLE and ratio >= 2
        rows.append(
            f"sampling {batch} × 1000 steps{scale}: diffusers {peer_s:.1f} s (peak {mib(peer['peak_bytes'])}), "
            f"{ours_name} {ours_s:.1f} s (peak {mib(ours['peak_bytes'])}) → {ratio:.2f}× "
            f"[target ≤ {PAPER_TPU_SAMPLE:g} s and ≥ 2×: {verdict(ok)}; stretch 8 s: {verdict(ours_s <= 8)}]"
        )
    data = load(out, "sampling_compiled.json")
    if data is None:
        rows.append("sampling, compiled variants: not measured (sampling_compiled.json missing)")
    else:
        steps, batch = data["args"]["steps"], data["args"]["batch_size"]
        peer = next(iter(data["results"].values()))
        parts = []
        for name, r in data["results"].items():
            per_step = r["seconds"] / steps * 1e3
            warm = f", warm-up {r['warmup_seconds']:.0f} s" if "compiled" in name else ""
            ratio = peer["seconds"] / r["seconds"]
            parts.append(f"{name} {per_step:.1f} ms/step ({ratio:.2f}×, peak {mib(r['peak_bytes'])}{warm})")
        rows.append(f"sampling b{batch}, {steps} steps a call (ms/step × 1000 = a 1000-step run): " + "; ".join(parts))
    data = load(out, "compile_time.json")
    if data is not None:
        rows.append(
            f"compile_network in a fresh process after sampling_compiled ({data['cache_files_before']} files in the "
            f"compile cache): first call {data['first_s']:.1f} s, compilation ≈ {data['compile_s']:.1f} s"
        )
    return rows


def train256_rows(out: Path) -> list[str]:
    data = load(out, "train256.json")
    if data is None:
        return ["celebahq256 training: not measured (train256.json missing)"]
    batch = data["args"]["batch_size"]
    parts, done = [], {}
    for side, r in data["results"].items():
        if "seconds" in r:
            micro = f", {r['micro_batches']} micro-batches" if r["micro_batches"] > 1 else ""
            parts.append(f"{side} {r['seconds']:.2f} s/step ({r['precision']}, peak {mib(r['peak_bytes'])}{micro})")
            done[side] = r
        else:
            parts.append(f"{side}: {'out of memory' if r.get('oom') else r.get('error', 'failed')}")
    rows = [f"celebahq256 training, batch {batch}: " + "; ".join(parts)]
    peers = [s for s in ("peer", "peer-ckpt") if s in done]
    for side in (s for s in ("ours", "ours-ckpt") if s in done):
        if peers:
            best = min(peers, key=lambda s: done[s]["seconds"])
            ratio = done[best]["seconds"] / done[side]["seconds"]
            rows.append(
                f"  {side} vs the faster diffusers side ({best}): {ratio:.2f}× [target ≥ 1.5×: {verdict(ratio >= 1.5)}]"
            )
    return rows


def quality_rows(out: Path) -> list[str]:
    data = load(out, "quality.json")
    if data is None:
        return ["quality (bits/dim, samples): not measured (quality.json missing)"]
    bpd = data["bits_per_dim"]
    delta = abs(bpd["fp32"] - bpd["fast"])
    compiled = ", compiled" if data.get("compiled") else ""
    close = data["fd_fast_seed1"] <= 1.1 * data["fd_fp32_seed1"]
    return [
        f"quality ({data['fast_precision']}{compiled} vs fp32): bits/dim {bpd['fp32']:.4f} vs {bpd['fast']:.4f}, "
        f"|Δ| {delta:.4f} [target < 0.01: {verdict(delta < 0.01)}]; pixel Fréchet distance to fp32 samples: "
        f"{data['fd_fast_seed1']:.4f} vs another fp32 seed's {data['fd_fp32_seed1']:.4f} "
        f"[as close, within 10%: {verdict(close)}]"
    ]


def profile_rows(out: Path) -> list[str]:
    rows = []
    for name in ("profile/profile.json", "profile/profile_compiled.json"):
        data = load(out, name)
        if data is None:
            continue
        for step, s in data["steps"].items():
            kinds = ", ".join(f"{k} {ms / s['kernel_ms']:.0%}" for k, ms in list(s["kinds"].items())[:4])
            rows.append(
                f"profile {step}: wall {s['wall_ms']:.1f} ms, {s['kernels']} kernels = {s['kernel_ms']:.1f} ms; {kinds}"
            )
    return rows or ["profile: not taken (profile/profile.json missing)"]


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu_results")
    header = load(out, "sampling_1000.json") or load(out, "training_bf16.json") or {}
    device = header.get("device", "?")
    toy = " — TOY SIZES (DDPM_BENCH_TOY=1): a dry run, not figures" if header.get("toy") else ""
    lines = [f"== GPU targets on {device}, torch {header.get('torch', '?')}{toy} =="]
    for rows in (training_rows, sampling_rows, train256_rows, quality_rows, profile_rows):
        lines += rows(out)
    text = "\n".join(lines)
    print(text)
    (out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
