#!/usr/bin/env bash
# One device call for the report and torchrun issues:
#   1. a real run of the seed model on textmix (250 steps of 2 × 32,768 tokens) whose report.md and
#      loss.png are the example in docs/;
#   2. `cavegpt bench --preset seed` plain, then the same under torchrun with one process.
# Usage: bash benchmarks/report_torchrun_gpu.sh [OUT_DIR]
set -uo pipefail
out=${1:-${OUT:-/tmp/cavegpt-bench}}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
data=${TEXTMIX:-.devdata/textmix}
textmix=(train_glob="$data/textmix_train_*.bin" val_glob="$data/textmix_val_*.bin" val_tokens=1048576)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"

python -m cavegpt train --preset seed "${textmix[@]}" grad_accum=2 num_iterations=250 cooldown_iters=91 \
    muon_momentum_warmup=43 val_every=25 save_checkpoint=false log_dir="$out/logs" run_id=textmix_seed250 \
    > "$out/train.txt" 2>&1
tail -3 "$out/train.txt"
python -m cavegpt bench --preset seed --steps 10 "${textmix[@]}" 2>&1 | tee "$out/bench_plain.txt" | tail -3
python -m torch.distributed.run --standalone --nproc_per_node=1 -m cavegpt bench --preset seed --steps 10 \
    "${textmix[@]}" 2>&1 | tee "$out/bench_torchrun1.txt" | tail -3
