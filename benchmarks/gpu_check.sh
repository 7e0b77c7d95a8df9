#!/usr/bin/env bash
# GPU checks of the Performance issue in one run (< 8 minutes on one H100): sampling 256 CIFAR-10 images with
# 1000 steps and training at batch 128, ours against diffusers on the same card. Results go to $1 (default
# gpu_results/); copy the printed figures into docs/benchmarks.md with the card's name.
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-gpu_results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python bench_training.py --device cuda --batch_size 128 --steps 20 --repeats 3 --mixed_precision bf16 \
    --json "$out/training.json" | tee "$out/training.txt"
python bench_sampling.py --device cuda --batch_size 256 --steps 1000 --repeats 1 --precision auto \
    --json "$out/sampling.json" | tee "$out/sampling.txt"
