#!/usr/bin/env bash
# One device call for the report and torchrun issues:
#   1. a real run of the seed model on textmix (250 steps of 2 × 32,768 tokens) whose report.md and
#      loss.png are the example in docs/;
#   2. `cavegpt bench --preset seed` plain, then the same under torchrun with one process.
# Usage: bash benchmarks/report_torchrun_gpu.sh [OUT_DIR]
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh" "${1:-}" /tmp/cavegpt-bench
textmix=("${textmix_globs[@]}" val_tokens=1048576)

python -m cavegpt train --preset seed "${textmix[@]}" grad_accum=2 num_iterations=250 cooldown_iters=91 \
    muon_momentum_warmup=43 val_every=25 save_checkpoint=false log_dir="$out/logs" run_id=textmix_seed250 \
    > "$out/train.txt" 2>&1
tail -3 "$out/train.txt"
python -m cavegpt bench --preset seed --steps 10 "${textmix[@]}" 2>&1 | tee "$out/bench_plain.txt" | tail -3
python -m torch.distributed.run --standalone --nproc_per_node=1 -m cavegpt bench --preset seed --steps 10 \
    "${textmix[@]}" 2>&1 | tee "$out/bench_torchrun1.txt" | tail -3
