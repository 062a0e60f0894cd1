#!/usr/bin/env bash
# Issue 16, planned in session 20 (`seed` at 476,683–477,374 tokens/s as shipped, call 5; the bar is 500k):
#   head:   (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4) the head matmul whose epilogue sums each row's
#           exp(capped − cap) (`head_sums_in_matmul`, off until measured): the GPU tests of the head and the ReLU²
#           kernels (their module is now epilogue_matmul_triton), benchmarks/head_loss_gpu.py (the head alone both
#           ways, the forward product of one chunk: cuBLAS against the Triton matmul), then `seed` off / on / off and
#           `record` at its last stage on / off.
#   ws:     (one warm H100 after park; carry .whl/fa4) `seed` on this tree, on a copy whose ReLU² CONFIGS also hold the
#           8-warp warp-specialized tiles (benchmarks/ws_tree.py; session 20's 4-warp ones do not build), this tree.
#   bisect: (any H100, no FA4; carry .devdata/s12 = `git archive f45c00e src`) `12gb` as on consumer cards lost 7.7 %
#           since session 12 (call 8 of session 20): f45c00e, this tree, this tree with `row_grads_by_token=false`,
#           with `fused_qkv_prep=false`.
#   bisect2: (the same machine, right after) both off, f45c00e again, then where a `12gb` step's host time goes.
# Usage (device, repo root): bash benchmarks/speed18_gpu.sh head|ws|bisect|bisect2   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed18
case $stage in
head)
    install_fa4
    gpu_tests 240 tests/test_head_loss.py tests/test_relu_square.py
    timeout 200 python benchmarks/head_loss_gpu.py > "$out/head_loss.txt" 2>&1
    grep -E "tile:|Error" "$out/head_loss.txt" | cut -c1-250; sed -n '/^head | path/,$p' "$out/head_loss.txt"
    bench seed_off --preset seed "${synthetic[@]}" attention=fa4
    bench seed_on --preset seed "${synthetic[@]}" attention=fa4 head_sums_in_matmul=true
    bench seed_off_again --preset seed "${synthetic[@]}" attention=fa4
    bench record_on --preset record "${synthetic[@]}" --at-step 1900 attention=fa4 head_sums_in_matmul=true
    bench record_off --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    ;;
ws)
    install_fa4
    bench seed_main --preset seed "${synthetic[@]}" attention=fa4
    python benchmarks/ws_tree.py /tmp/wstree 8
    TRITON_PRINT_AUTOTUNING=1 PYTHONPATH="/tmp/wstree/src${PYTHONPATH#src}" bench seed_ws --preset seed \
        "${synthetic[@]}" attention=fa4
    grep -A3 "autotuning for function _epilogue_matmul" "$out/seed_ws.txt" | grep -E "key|best" | cut -c1-250
    bench seed_main_again --preset seed "${synthetic[@]}" attention=fa4
    ;;
bisect)
    older s12 12gb_f45c00e --preset 12gb "${synthetic[@]}" "${consumer[@]}"
    bench 12gb_main --preset 12gb "${synthetic[@]}" "${consumer[@]}"
    bench 12gb_rows_off --preset 12gb "${synthetic[@]}" "${consumer[@]}" row_grads_by_token=false
    bench 12gb_prep_off --preset 12gb "${synthetic[@]}" "${consumer[@]}" fused_qkv_prep=false
    ;;
bisect2)
    bench 12gb_both_off --preset 12gb "${synthetic[@]}" "${consumer[@]}" row_grads_by_token=false fused_qkv_prep=false
    older s12 12gb_f45c00e_again --preset 12gb "${synthetic[@]}" "${consumer[@]}"
    timeout 200 python benchmarks/host_phases_gpu.py 12gb "${consumer[@]}" > "$out/host_phases_12gb.txt" 2>&1
    tail -9 "$out/host_phases_12gb.txt"
    ;;
esac
