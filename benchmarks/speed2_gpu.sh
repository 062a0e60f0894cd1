#!/usr/bin/env bash
# Issue 16 on the GPU, in stages that fit one device call each (the machine stays warm in between, so
# /tmp, the installed FA4 wheels and the inductor cache carry over). The baseline is the code before
# the issue, carried as .devdata/baseline/src (git archive 1393dca src).
#   head:   GPU tests of the fused head; benchmarks/head_loss_gpu.py; `cavegpt bench` seed, FlexAttention.
#           Also parks the first half of the split FA4 wheel (.whl/cu13a) in /tmp.
#   fa4:    installs FA4 from .whl/fa4 + the parked half; its GPU test; bench seed: baseline, then new (auto = FA4).
#   record: bench record at its last stage, baseline then new; a 300-step seed run on textmix with the new paths.
# Usage (device, repo root): bash benchmarks/speed2_gpu.sh STAGE   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed2
case $stage in
head)
    park_fa4_half
    python -m pytest -q -rs tests/test_head_loss.py tests/test_attention.py 2>&1 | tail -5 | tee "$out/gpu_tests.txt"
    python benchmarks/head_loss_gpu.py 2>&1 | tee "$out/head_loss.txt" | tail -16
    bench seed_fused_flex --preset seed --synthetic --steps 20 --window 1792 --window 128 attention=flex
    ;;
fa4)
    install_fa4
    md5sum /tmp/nvidia_cutlass_dsl_libs_cu13-*.whl
    python -c "import flash_attn.cute.interface; print('flash_attn.cute imported')" 2>&1 | tail -3
    python -m pytest -q -rs tests/test_attention.py 2>&1 | tail -5 | tee "$out/gpu_tests_fa4.txt"
    older baseline seed_baseline --preset seed --synthetic --steps 20 --window 1792 --window 128
    bench seed_new --preset seed --synthetic --steps 20 --window 1792 --window 128
    ;;
record)
    older baseline record_baseline --preset record --synthetic --steps 20 --window 1792 --at-step 1900
    bench record_new --preset record --synthetic --steps 20 --window 1792 --at-step 1900
    python -m cavegpt train --preset seed "${textmix_globs[@]}" val_tokens=2097152 grad_accum=2 num_iterations=300 \
        cooldown_iters=110 val_every=25 log_every=25 save_checkpoint=false log_dir="$out/logs" run_id=seed300 \
        > "$out/train_seed300.txt" 2>&1
    grep -E "val_loss|warm-up" "$out/train_seed300.txt" | tail -15
    ;;
esac
