#!/usr/bin/env bash
# Issue 16, session 18 (planned; `seed` at 471,689-472,484 tokens/s with FA4 in session 17; the bar is 500k):
#   park:    (carry .whl/cu13a) the first half of the FA4 wheels to /tmp; the next call must follow at once.
#   prep:    (one warm H100 after park, carry .whl/fa4) the prep op's GPU tests (`fused_qkv_prep`, off by default),
#            its Q/K kernels over block sizes beside inductor's plain path (benchmarks/qkv_prep_gpu.py), then `seed`
#            without the op, with it, and without it again (A-B-A in one call).
# Usage (device, repo root): bash benchmarks/speed12_gpu.sh park|prep   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed12
case $stage in
park)
    park_fa4_half
    ;;
prep)
    install_fa4
    gpu_tests 200 tests/test_qkv_prep.py
    python benchmarks/qkv_prep_gpu.py > "$out/qkv_prep.txt" 2>&1
    tail -30 "$out/qkv_prep.txt"
    bench seed_plain --preset seed "${synthetic[@]}" attention=fa4 fused_qkv_prep=false
    bench seed_prep --preset seed "${synthetic[@]}" attention=fa4 fused_qkv_prep=true
    bench seed_plain_again --preset seed "${synthetic[@]}" attention=fa4 fused_qkv_prep=false
    ;;
esac
