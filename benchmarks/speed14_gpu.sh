#!/usr/bin/env bash
# Issue 16, session 19 (planned; `seed` at 475,011-478,567 tokens/s with FA4 in session 18; the bar is 500k):
#   park:  (carry .whl/cu13a) the first half of the FA4 wheels to /tmp; the next call must follow at once.
#   rows:  (one warm H100 after park, carry .whl/fa4 and .devdata/textmix_val, a copy of
#          ../shared/data/textmix/textmix_val_000000.bin) the embedding rows summed by token before .grad
#          (`row_grads_by_token`, off by default): its GPU tests, the kernel over blocks and warps against index_add_
#          on uniform and English tokens (benchmarks/row_grads_gpu.py), then `seed` without, with, without again.
#   profile: (the same machine, right after rows) where a `seed` step goes, with cuBLAS's matmuls by shape and rate
#          (which products run far from peak: call 7's kernel list named a 128×128 tile at 180 µs a call, 192 a step).
# Issue 16's learning check with the prep op on (2 GPUs, no FA4; carry .devdata/textmix, a copy of
# ../shared/data/textmix, and .devdata/s18start, made with `git archive 821e6b3 src | tar -x -C .devdata/s18start`):
#   BEFORE=s18start SEEDS="0 1 2" bash benchmarks/speed9_gpu.sh seeds
# (300 `seed` steps on textmix per init seed, session 18's start on GPU 1 beside this tree on GPU 0).
# Usage (device, repo root): bash benchmarks/speed14_gpu.sh park|rows|profile   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed14
case $stage in
park)
    park_fa4_half
    ;;
rows)
    install_fa4
    gpu_tests 200 tests/test_row_grads.py tests/test_gpt.py
    python benchmarks/row_grads_gpu.py > "$out/row_grads.txt" 2>&1
    tail -30 "$out/row_grads.txt"
    bench seed_index_add --preset seed "${synthetic[@]}" --window 1792 attention=fa4
    bench seed_by_token --preset seed "${synthetic[@]}" --window 1792 attention=fa4 row_grads_by_token=true
    bench seed_index_add_again --preset seed "${synthetic[@]}" --window 1792 attention=fa4
    ;;
profile)
    install_fa4
    python benchmarks/profile_step_gpu.py seed attention=fa4 > "$out/profile_seed.txt" 2>&1
    head -14 "$out/profile_seed.txt"; grep -A25 "matmuls by shape" "$out/profile_seed.txt"
    ;;
esac
