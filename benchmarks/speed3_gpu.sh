#!/usr/bin/env bash
# Issue 16, session 5, in stages of one device call each; the machine stays warm in between, so /tmp,
# the FA4 install and the inductor cache carry over. Baseline = the code before the issue (1393dca),
# carried as .devdata/baseline/src (git archive 1393dca src); it has no FA4 path (Flex).
#   base:   parks the first half of the split FA4 wheel in /tmp; baseline bench of seed and record.
#   seed:   installs FA4; bench seed at window 1792: new, new with bf16_residual=false, new with
#           8 × 65,536-token micro-batches.
#   record: bench record's last stage: new (FP8 head), fp8_head=false, 6 × 65,536.
#   learn:  300-step seed runs on textmix, bf16_residual true/false; 200-step record runs (micro-batches
#           1/2/3 per stage), fp8_head true/false.
# Usage (device, repo root): bash benchmarks/speed3_gpu.sh STAGE   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed3
site=/tmp/site
fa4_path="$site:$site/nvidia_cutlass_dsl/dsl_packages"  # what the cutlass wheel's .pth adds, which --target skips
[ -d "$site/flash_attn" ] && export PYTHONPATH="src:$fa4_path"
bench() {  # who (baseline|new), log name, bench arguments...
    local who=$1 name=$2; shift 2
    local path=src; [ "$who" = baseline ] && path=.devdata/baseline/src
    PYTHONPATH="$path${PYTHONPATH#src}" python -m cavegpt bench "$@" > "$out/$name.txt" 2>&1
    echo "== $name"; grep -E "^device|^compile|^ *1792 " "$out/$name.txt" || tail -5 "$out/$name.txt"
}
seed=(--preset seed --synthetic --steps 10 --window 1792)
record=(--preset record --synthetic --steps 10 --window 1792 --at-step 1900)
train() {  # run name, preset, overrides...
    local name=$1 preset=$2; shift 2
    python -m cavegpt train --preset "$preset" "${textmix_globs[@]}" val_tokens=2097152 save_checkpoint=false \
        log_dir="$out/logs" run_id="$name" "$@" > "$out/train_$name.txt" 2>&1
    echo "== $name"; grep -E "warm-up|val_loss" "$out/train_$name.txt" | tail -4
}
case $stage in
base)
    mkdir -p /tmp/fa4parts && cp .whl/cu13a/* /tmp/fa4parts/
    bench baseline seed_baseline "${seed[@]}"
    bench baseline record_baseline "${record[@]}"
    ;;
seed)
    cat /tmp/fa4parts/cu13.part.aa .whl/fa4/cu13.part.ab > /tmp/nvidia_cutlass_dsl_libs_cu13-4.8.1-cp312-cp312-manylinux_2_28_x86_64.whl
    python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/fa4/*.whl \
        /tmp/nvidia_cutlass_dsl_libs_cu13-*.whl 2>&1 | tail -3
    export PYTHONPATH="src:$fa4_path"
    python -m pytest -q -rs tests/test_head_loss.py tests/test_attention.py tests/test_gpt.py 2>&1 | tail -4 | tee "$out/gpu_tests.txt"
    bench new seed_new "${seed[@]}"
    bench new seed_fp32_residual "${seed[@]}" bf16_residual=false
    bench new seed_65k "${seed[@]}" seq_len=65536 grad_accum=8
    ;;
record)
    bench new record_new "${record[@]}"
    bench new record_bf16_head "${record[@]}" fp8_head=false
    bench new record_65k "${record[@]}" seq_len=65536 grad_accum=8 batch_ramp=2,4,6
    ;;
learn)
    common=(grad_accum=2 num_iterations=300 cooldown_iters=110 val_every=25 log_every=25)
    train seed300_bf16_residual seed "${common[@]}"
    train seed300_fp32_residual seed "${common[@]}" bf16_residual=false
    common=(num_iterations=200 batch_ramp=1,2,3 cooldown_iters=110 val_every=25 log_every=25)
    train record200_fp8_head record "${common[@]}"
    train record200_bf16_head record "${common[@]}" fp8_head=false
    ;;
esac
