#!/usr/bin/env bash
# The trainer issue's GPU figures, in one device call: a compiled smoke run, then `cavegpt bench`
# for the seed and 4090 presets on textmix. Usage: bash benchmarks/trainer_gpu.sh [OUT_DIR]
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh" "${1:-}" /tmp/cavegpt-bench
textmix=("${textmix_globs[@]}" val_tokens=2097152)
git log -1 --format='commit %H' 2>/dev/null | tee -a "$out/gpu.txt"
python -m cavegpt train --preset tiny device=cuda "${textmix[@]}" val_tokens=8192 num_iterations=20 \
    cooldown_iters=5 val_every=10 log_dir="$out/logs" run_id=smoke 2>&1 | tee "$out/smoke.txt" | tail -4
python -m cavegpt bench --preset seed --steps 20 "${textmix[@]}" 2>&1 | tee "$out/bench_seed.txt"
python -m cavegpt bench --preset 4090 --steps 20 --memory-limit-gib 22 "${textmix[@]}" 2>&1 | tee "$out/bench_4090.txt"
