#!/usr/bin/env bash
# Issue 16, after session 15 (`seed` at 461,618 tokens/s with FA4 in session 14; the bar is 500k):
#   park:    (carry .whl/cu13a) the first half of the FA4 wheels to /tmp; the next call must follow at once.
#   casts:   (one warm H100 after park, carry .whl/fa4 and .devdata/session15start, made with `mkdir -p
#            .devdata/session15start && git archive 566951a src | tar -x -C .devdata/session15start`) the block
#            weights cast to bf16 once per step (cavegpt.train.bf16_weights): its GPU test (the same losses and
#            weights as autocast's casts, compiled), then `seed` with FA4 before and after, then `record` at its
#            last stage after.
# Usage (device, repo root): bash benchmarks/speed10_gpu.sh park|casts   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed10
case $stage in
park)
    park_fa4_half
    ;;
casts)
    install_fa4
    python -m pytest -q tests/test_bf16_weights.py > "$out/bf16_weights_tests.txt" 2>&1
    tail -1 "$out/bf16_weights_tests.txt"
    older session15start seed_before --preset seed "${synthetic[@]}" attention=fa4
    bench seed_after --preset seed "${synthetic[@]}" attention=fa4
    bench record_after --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    ;;
esac
