#!/usr/bin/env bash
# The GPU checks in one run (at most BUDGET=480 s on one H100), each section under its own time limit so that one
# failure or overrun leaves the others' results: the CUDA-only tests, training at batch 128 and sampling 256
# CIFAR-10 images with 1000 steps against diffusers on the same card, precision and layout variants, the fast
# path's quality on a trained digits model, the training script on real CIFAR-10 images, torch.compile for
# sampling and training, gradient checkpointing's memory on the 256×256 network, bits/dim.
#
#   bash benchmarks/gpu_check.sh OUT_DIR        # DIGITS_MODEL=... CIFAR_DIR=... enable the last sections
#
# Sizes come from the environment (DEVICE, TRAIN_BATCH, SAMPLE_BATCH, ...), so a CPU dry run can try the script.
# Copy the printed figures into docs/benchmarks.md with the card's name.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py="${PYTHON:-python3}" dev="${DEVICE:-cuda}" budget="${BUDGET:-480}"
train_batch="${TRAIN_BATCH:-128}" bench_steps="${BENCH_STEPS:-20}"
sample_batch="${SAMPLE_BATCH:-256}" sample_steps="${SAMPLE_STEPS:-1000}" variant_steps="${VARIANT_STEPS:-50}"
train_steps="${TRAIN_STEPS:-300}" run_dir="${RUN_DIR:-/tmp/ddpm_gpu_check_run}" nll_images="${NLL_IMAGES:-256}" precision_samples="${PRECISION_SAMPLES:-200}"

section() {  # section NAME LIMIT_S COMMAND...: run under the smaller of LIMIT_S and what is left of the budget
    local name=$1 limit=$2 left=$((budget - SECONDS))
    shift 2
    ((left < limit)) && limit=$left
    if ((limit < 20)); then
        echo "=== $name: skipped, budget spent" | tee -a "$out/summary.txt"
        return
    fi
    echo "=== $name (limit ${limit} s)"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$out/gpu.txt"
"$py" -c "import torch, diffusers, accelerate; print('torch', torch.__version__, 'diffusers', diffusers.__version__,
'accelerate', accelerate.__version__)" | tee -a "$out/gpu.txt"

# Most wanted first: the official rows, then what could close the gap (layouts and their kernel profile, compile).
section cuda_tests 60 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py
section sampling_1000 150 "$py" benchmarks/bench_sampling.py --device "$dev" --batch_size "$sample_batch" \
    --steps "$sample_steps" --repeats 1 --precision auto --json "$out/sampling_1000.json"
for mp in bf16 no; do
    section "training_$mp" 60 "$py" benchmarks/bench_training.py --device "$dev" --batch_size "$train_batch" \
        --steps "$bench_steps" --repeats 3 --mixed_precision "$mp" --json "$out/training_$mp.json"
done
section layouts 60 "$py" benchmarks/layouts.py --device "$dev" --batch_size "$sample_batch" \
    --train_batch_size "$train_batch" --calls 5
section roofline 30 "$py" benchmarks/roofline.py --device "$dev" --batch_size "$sample_batch" --matmul_size 8192 \
    --calls 10
section sampling_compiled 120 "$py" benchmarks/bench_sampling.py --device "$dev" --batch_size "$sample_batch" \
    --steps "$variant_steps" --repeats 2 --precision auto --compile --json "$out/sampling_compiled.json"
section training_compiled 150 "$py" benchmarks/bench_training.py --device "$dev" --batch_size "$train_batch" \
    --steps "$bench_steps" --repeats 3 --mixed_precision bf16 --dynamo_backend inductor \
    --json "$out/training_compiled.json"
section sampling_variants 90 "$py" benchmarks/bench_sampling.py --device "$dev" --batch_size "$sample_batch" \
    --steps "$variant_steps" --repeats 2 --precision fp32 bf16 auto --json "$out/sampling_variants.json"
section memory_256 60 "$py" benchmarks/memory.py --device "$dev" --model celebahq256 --batch_size 16
if [[ -n "${DIGITS_MODEL:-}" ]]; then
    section precision_quality 90 "$py" benchmarks/check_precision.py --model "$DIGITS_MODEL" --num_images 64 \
        --num_samples "$precision_samples"
fi
if [[ -n "${CIFAR_DIR:-}" ]]; then
    section train_cifar10 100 accelerate launch --num_processes 1 --num_machines 1 --dynamo_backend no \
        examples/train_ddpm.py --preset cifar10 --dataset_name "$CIFAR_DIR" --dataset_split "${CIFAR_SPLIT:-test}" \
        --mixed_precision bf16 --train_batch_size "$train_batch" --max_train_steps "$train_steps" \
        --dataloader_num_workers 4 --logging_steps 25 --checkpointing_steps "$train_steps" --save_images_steps 0 \
        --num_grid_images 64 --num_inference_steps "${GRID_STEPS:-1000}" --report_to tensorboard --output_dir "$run_dir"
    cp -r "$run_dir/logs" "$run_dir/samples.png" "$out/" 2>/dev/null  # checkpoints stay behind: too big to keep
fi
if [[ -n "${CIFAR_DIR:-}" && -f "$run_dir/model_index.json" ]]; then
    section nll_cifar10 60 "$py" examples/evaluate_nll.py --model "$run_dir" --device "$dev" \
        --dataset_name "$CIFAR_DIR" --split test --num_images "$nll_images" --batch_size 2048 \
        --output "$out/nll_cifar10.json"
fi
cat "$out/summary.txt"
