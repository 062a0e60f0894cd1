#!/usr/bin/env bash
# Issue 16, session 21 (`seed` at 481–483k tokens/s as shipped in this session's calls 3–6; the bar is 500k):
#   presets: (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4) the Q/K prep op's GPU tests (its backward
#            now reads FlexAttention's heads-first gradients in place), then `seed`, `h100` (the seed's recipe in
#            4 × 131,072-token micro-batches, what `auto` picks on an 80 GB card; last measured in session 12)
#            and `seed` again, all with FA4.
#   flex:    (the same machine, right after) the consumer cards' path on the H100 (`attention=flex fused_mlp=false`):
#            `12gb` with the prep op on / off / on (call 5 measured it on with the gradients copied: 367,766 against
#            390,257 off), then `4090` on / off.
#   strided: (any H100; carry .devdata/s21start = `git archive a99daad src`, where the prep op copied the gradients
#            contiguous first) the Q/K prep op's GPU tests (V's embedding gradient reshaped: the new test's heads-first
#            gradients failed its view in call 8), then `4090` on the consumer path: a99daad / this tree / a99daad.
# Usage (device, repo root): bash benchmarks/speed19_gpu.sh presets|flex|strided   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed19
case $stage in
presets)
    install_fa4
    gpu_tests 200 tests/test_qkv_prep.py
    bench seed --preset seed "${synthetic[@]}" attention=fa4
    bench h100 --preset h100 "${synthetic[@]}" attention=fa4
    bench seed_again --preset seed "${synthetic[@]}" attention=fa4
    ;;
flex)
    bench 12gb_prep_on --preset 12gb "${synthetic[@]}" "${consumer[@]}"
    bench 12gb_prep_off --preset 12gb "${synthetic[@]}" "${consumer[@]}" fused_qkv_prep=false
    bench 12gb_prep_on_again --preset 12gb "${synthetic[@]}" "${consumer[@]}"
    bench 4090_prep_on --preset 4090 "${synthetic[@]}" "${consumer[@]}"
    bench 4090_prep_off --preset 4090 "${synthetic[@]}" "${consumer[@]}" fused_qkv_prep=false
    ;;
strided)
    gpu_tests 200 tests/test_qkv_prep.py
    older s21start 4090_copies --preset 4090 "${synthetic[@]}" "${consumer[@]}"
    bench 4090_strided --preset 4090 "${synthetic[@]}" "${consumer[@]}"
    older s21start 4090_copies_again --preset 4090 "${synthetic[@]}" "${consumer[@]}"
    ;;
esac
