#!/usr/bin/env bash
# Issue 11, first call: the record presets on the GPU. tokens/s at the batch ramp's first stage
# (4 micro-batches, window 128) and last stage (12, window 1792), peak memory, record-24gb under a
# 22 GiB cap, and a 40-step compiled training run. Usage: bash benchmarks/record_gpu.sh [OUT_DIR]
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh" "${1:-}" /tmp/cavegpt-record
textmix=("${textmix_globs[@]}" val_tokens=2097152)
git log -1 --format='commit %H' 2>/dev/null | tee -a "$out/gpu.txt"
python -m cavegpt bench --preset record --steps 10 --window 128 "${textmix[@]}" 2>&1 | tee "$out/bench_record_first.txt"
python -m cavegpt bench --preset record --steps 6 --window 1792 --at-step 1900 "${textmix[@]}" 2>&1 \
    | tee "$out/bench_record_last.txt"
python -m cavegpt train --preset record "${textmix[@]}" num_iterations=40 cooldown_iters=22 val_every=20 \
    muon_momentum_warmup=6 log_dir="$out/logs" run_id=record40 2>&1 | grep -v "^step [0-9]" | tee "$out/train_record40.txt"
python -m cavegpt bench --preset record-24gb --steps 4 --window 1792 --at-step 1900 --memory-limit-gib 22 \
    "${textmix[@]}" 2>&1 | tee "$out/bench_record24_last.txt"
du -sh /tmp/torchinductor_* ~/.triton 2>/dev/null | tee "$out/compile_cache_size.txt"
