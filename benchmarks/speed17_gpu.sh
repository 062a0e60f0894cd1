#!/usr/bin/env bash
# Issue 16, session 20 (`seed` at 477,520 tokens/s in session 19; the bar is 500k): the residual stream in bf16
# under autocast (`low_precision_residual`, as the modded-nanogpt records keep it). Session 19's profile put 158 ms
# of a 1,085 ms `seed` step in inductor's elementwise kernels, which read and write the float32 residual.
#   resid: (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4) the model's GPU tests, then `seed` with the
#          residual in float32, in bf16, in float32 again, and `record` at its last stage both ways.
# The learning check of the change: `BEFORE=s19end SEEDS="0 1 2" bash benchmarks/speed9_gpu.sh seeds` on two GPUs.
# Usage (device, repo root): bash benchmarks/speed17_gpu.sh resid   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed17
case $stage in
resid)
    install_fa4
    gpu_tests 200 tests/test_gpt.py
    bench seed_fp32 --preset seed "${synthetic[@]}" attention=fa4 low_precision_residual=false
    bench seed_bf16 --preset seed "${synthetic[@]}" attention=fa4
    bench seed_fp32_again --preset seed "${synthetic[@]}" attention=fa4 low_precision_residual=false
    bench record_bf16 --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    bench record_fp32 --preset record "${synthetic[@]}" --at-step 1900 attention=fa4 low_precision_residual=false
    ;;
esac
