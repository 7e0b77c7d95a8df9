#!/usr/bin/env bash
# The GPU measurements in one run of at most BUDGET=520 s (compilation included) on one H200 or H100: every row of
# the targets table in docs/benchmarks.md, each side in the same run with peak memory beside each figure, the
# torch.profiler top kernels of a training step and a sampling step, torch.compile's variants and their compile time,
# the CUDA-only tests. Each section runs under its own time limit (and what is left of BUDGET), so a failure or an
# overrun leaves the others' results; most wanted first. Results (JSON, logs, profiles) go to OUT_DIR; the short
# table comes last.
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#   DEVICE=cpu bash benchmarks/gpu_check.sh /tmp/out     # dry run: toy networks, a few steps, a few minutes
#
# ---- On a GPU machine that cannot download packages (its image has torch, Triton and accelerate but not diffusers
# or datasets; the wheels are pure Python). First, on a machine with network access, in the checkout:
#   grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
#   grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
#   optional: a trained digits pipeline (model_index.json, unet/, scheduler/ of `--preset digits`) in .gpu/digits
#   for the quality row; without it the script trains one on the GPU first (about a minute of the budget).
# Then copy the checkout with .whl/ (and .gpu/) to the GPU machine and run there, as one line, within 600 s:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; TARBALL=gpu_results.tgz bash benchmarks/gpu_check.sh /tmp/r
# The output ends with the table; gpu_results.tgz (repacked after every section) holds every log, JSON, profile
# table and Chrome trace. Copy the figures, the card, the driver, the date and the command into docs/benchmarks.md.
# SECTIONS="sampling_1000 training_bf16 ..." runs only those sections (the names given to `section` below), e.g. to
# finish a run cut short.
# -------------------------------------------------------------------------------------------------------------------
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_results}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
# Inductor's and Triton's caches, shared by the sections (compile_time measures what they save a later process).
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-/tmp/ddpm_inductor_cache}"
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$TORCHINDUCTOR_CACHE_DIR/triton}"
py="${PYTHON:-python3}" dev="${DEVICE:-cuda}"
if [[ "$dev" == cpu ]]; then  # dry run: toy networks, a few steps, compiled sides traced but not built
    export DDPM_BENCH_TOY=1 DDPM_BENCH_COMPILE_BACKEND="${DDPM_BENCH_COMPILE_BACKEND:-aot_eager}"
    : "${BUDGET:=900}" "${SAMPLE_BATCH:=2}" "${SAMPLE_STEPS:=3}" "${VARIANT_STEPS:=2}" "${TRAIN_BATCH:=2}"
    : "${BENCH_STEPS:=1}" "${BIG_BATCH:=2}" "${BIG_RESOLUTION:=32}" "${DIGITS_STEPS:=20}" "${NLL_IMAGES:=4}"
    : "${PRECISION_SAMPLES:=4}" "${QUALITY_STEPS:=10}" "${GRID_STEPS:=10}" "${REPEATS:=1}" "${CALLS:=1}"
fi
budget="${BUDGET:-520}" sample_batch="${SAMPLE_BATCH:-256}" sample_steps="${SAMPLE_STEPS:-1000}"
variant_steps="${VARIANT_STEPS:-100}" train_batch="${TRAIN_BATCH:-128}" bench_steps="${BENCH_STEPS:-20}"
repeats="${REPEATS:-3}" big_batch="${BIG_BATCH:-64}" big_resolution="${BIG_RESOLUTION:-}"
digits_steps="${DIGITS_STEPS:-2000}" nll_images="${NLL_IMAGES:-64}" precision_samples="${PRECISION_SAMPLES:-200}"
quality_steps="${QUALITY_STEPS:-1000}" grid_steps="${GRID_STEPS:-1000}" calls="${CALLS:-5}"
compile_backend="${DDPM_BENCH_COMPILE_BACKEND:-inductor}" sections="${SECTIONS:-all}"
: >"$out/summary.txt"

wanted() {  # train_digits goes with quality, which needs its model
    [[ "$sections" == all || " $sections " == *" $1 "* || ($1 == train_digits && " $sections " == *" quality "*) ]]
}

pack() {  # TARBALL=PATH: OUT_DIR packed after every section, so a run cut short still brings back what it measured
    [[ -n "${TARBALL:-}" ]] && tar -czf "$TARBALL" -C "$(dirname "$out")" "$(basename "$out")" 2>/dev/null
    return 0
}

section() {  # section NAME LIMIT_S COMMAND...: run under the smaller of LIMIT_S and what is left of the budget
    local name=$1 limit=$2 left=$((budget - SECONDS))
    shift 2
    wanted "$name" || return 0
    ((left < limit)) && limit=$left
    if ((limit < 20)); then
        echo "=== $name: skipped, budget spent" | tee -a "$out/summary.txt"
        return 0
    fi
    echo "=== $name (limit ${limit} s, ${SECONDS} s into the run)"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc$( ((rc == 124 || rc == 137)) && echo ' (time limit)') after $((SECONDS - start)) s" |
        tee -a "$out/summary.txt"
    pack
    if ((rc == 124 || rc == 137)) && [[ -d "$TORCHINDUCTOR_CACHE_DIR" ]]; then
        # A compile killed midway can leave a truncated kernel in the cache, which fails every later load of it.
        rm -rf "$TORCHINDUCTOR_CACHE_DIR" "$TRITON_CACHE_DIR"
        echo "    (compile caches emptied after the time limit)" | tee -a "$out/summary.txt"
    fi
}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
    "$py" -c "import torch, diffusers, accelerate; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'diffusers', diffusers.__version__, 'accelerate', accelerate.__version__)
try:
    import triton; print('triton', triton.__version__)
except ImportError:
    print('triton: not installed')
print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu', '| CPUs:', __import__('os').cpu_count())"
} 2>&1 | tee "$out/env.txt"
if [[ "$dev" == cuda* ]] && ! "$py" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "no CUDA device visible: stopping" | tee -a "$out/summary.txt"
    exit 1
fi
bench=benchmarks

# --- The targets' rows, eager (the defaults as they are) -----------------------------------------------------------
# Sampling 256 CIFAR-10 images × 1000 steps: the pipeline's default call (precision="auto") against DDPMPipeline.
section sampling_1000 170 "$py" $bench/bench_sampling.py --device "$dev" --batch_size "$sample_batch" \
    --steps "$sample_steps" --repeats 1 --precision auto --json "$out/sampling_1000.json"
# Training, CIFAR-10 preset, batch 128: Accelerate bf16 and fp32 (TF32) against a train_unconditional-style step.
for mp in bf16 no; do
    section "training_$mp" 70 "$py" $bench/bench_training.py --device "$dev" --batch_size "$train_batch" \
        --steps "$bench_steps" --repeats "$repeats" --mixed_precision "$mp" --json "$out/training_$mp.json"
done
# Where the time goes: top kernels of one training step (bf16 and fp32) and one sampling step (eager bf16, auto).
section profile 70 "$py" $bench/profile_steps.py --device "$dev" --batch_size "$sample_batch" \
    --train_batch_size "$train_batch" --mixed_precision bf16 no --sampling_precision bf16 auto \
    --out_dir "$out/profile"
# The 256×256 network at the paper's batch 64: diffusers (fp32, NCHW, as train_unconditional) with and without its
# gradient checkpointing against ours (bf16) with and without --gradient_checkpointing; a side that runs out of
# memory is retried with gradient accumulation (2, 4, ... micro-batches).
section train256 130 "$py" $bench/memory.py --device "$dev" --model celebahq256 --batch_size "$big_batch" \
    ${big_resolution:+--resolution "$big_resolution"} --optimizer --steps 2 --sides peer peer-ckpt ours ours-ckpt \
    --mixed_precision bf16 --peer_mixed_precision no --peer_layout nchw --accumulate_on_oom \
    --json "$out/train256.json"
# Quality of the fast path (bits/dim and samples against fp32) on a trained digits model, beside the CUDA-only
# tests: neither is a timing, so the two share the GPU.
digits="${DIGITS_MODEL:-.gpu/digits}"
if wanted quality && [[ ! -f "$digits/model_index.json" ]]; then
    digits=/tmp/ddpm_gpu_check_digits
    section train_digits 100 "$py" examples/train_ddpm.py --preset digits --output_dir "$digits" \
        --max_train_steps "$digits_steps" --mixed_precision no --checkpointing_steps 1000000 \
        --save_images_steps 0 --num_grid_images 16 --num_inference_steps "$grid_steps" --logging_steps 250
fi
if wanted cuda_tests; then
    section cuda_tests 110 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py >/dev/null &
    tests_pid=$!
fi
section quality 110 "$py" $bench/check_precision.py --model "$digits" --device "$dev" --num_images "$nll_images" \
    --num_samples "$precision_samples" --sample_steps "$quality_steps" --json "$out/quality.json"
if [[ -n "${tests_pid:-}" ]]; then
    wait "$tests_pid"
    echo "--- cuda_tests (ran beside quality):" && tail -n 15 "$out/cuda_tests.txt"
fi

# --- What could close the gap: torch.compile (inductor), compile time included ---------------------------------------
section sampling_compiled 160 "$py" $bench/bench_sampling.py --device "$dev" --batch_size "$sample_batch" \
    --steps "$variant_steps" --repeats 2 --precision auto --compiled auto --json "$out/sampling_compiled.json"
section compile_time 60 "$py" $bench/compile_time.py --device "$dev" --batch_size "$sample_batch" \
    --precision auto --json "$out/compile_time.json"
section training_compiled 200 "$py" $bench/bench_training.py --device "$dev" --batch_size "$train_batch" \
    --steps "$bench_steps" --repeats "$repeats" --mixed_precision bf16 --dynamo_backend "$compile_backend" \
    --json "$out/training_compiled.json"
section profile_compiled 100 "$py" $bench/profile_steps.py --device "$dev" --batch_size "$sample_batch" \
    --train_batch_size "$train_batch" --mixed_precision bf16 --sampling_precision auto --compiled \
    --out_dir "$out/profile"

# --- Extras, if time is left: layouts and bf16 GroupNorm (layouts.py), the matrix-rate ceiling (roofline.py) -------
section layouts 60 "$py" $bench/layouts.py --device "$dev" --batch_size "$sample_batch" \
    --train_batch_size "$train_batch" --calls "$calls"
section roofline 30 "$py" $bench/roofline.py --device "$dev" --batch_size "$sample_batch" \
    --matmul_size "$( [[ "$dev" == cpu ]] && echo 256 || echo 8192)" --calls "$calls"

echo
echo "=== sections (exit status, seconds; total ${SECONDS} s of a ${budget} s budget)"
cat "$out/summary.txt"
echo
"$py" $bench/summarize.py "$out"
pack
