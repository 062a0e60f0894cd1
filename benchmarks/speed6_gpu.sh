#!/usr/bin/env bash
# Issues 16 and 18, the GPU work planned in session 8, in stages of one device call each (one H100 kept warm
# between calls, so /tmp, the FA4 install and the inductor cache carry over):
#   qkv:     parks the first half of the split FA4 wheel (carry .whl/cu13a and .devdata/preqkv, made by
#            `mkdir -p .devdata/preqkv && git archive 3fe03ae src | tar -x -C .devdata/preqkv`): seed and record
#            (last stage) with Q, K and V as three matmuls (3fe03ae) and as one (this tree), Flex.
#   (head and learn, the row kernel's options A/B'd in session 9, ran at 1dbe9d1: the option that won became the
#   kernel's only path, the other was cut; then the bars with FA4, baseline 1393dca side by side:
#   `bash benchmarks/speed5_gpu.sh seed` and `record`)
#   (its h100, layouts and compile stages, not run, moved to benchmarks/speed7_gpu.sh)
# Usage (device, repo root): bash benchmarks/speed6_gpu.sh qkv   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed6
case $stage in
qkv)
    park_fa4_half
    older preqkv seed_three_matmuls --preset seed "${synthetic[@]}" attention=flex
    bench seed_one_matmul --preset seed "${synthetic[@]}" attention=flex
    older preqkv record_three_matmuls --preset record "${synthetic[@]}" --at-step 1900 attention=flex
    bench record_one_matmul --preset record "${synthetic[@]}" --at-step 1900 attention=flex
    ;;
esac
