#!/usr/bin/env bash
# Issue 16, session 24 (`seed` at 488,400–489,011 tokens/s on one H100 in calls 2–3, 1.073 s a step; the bar is 500k,
# ≤ 1.0486 s):
#   quack: (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4) quack's CuTe-DSL GEMMs (installed with FA4)
#         against cuBLAS and the Triton ReLU² kernels at a `seed` micro-batch's shapes (benchmarks/quack_gemm_gpu.py).
#   mlp: (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4) `quack_gemms`: the GPU tests of the MLP and the
#         head, then `seed` with it off / on / off / on.
#   mlp2: (as mlp) `seed` with `quack_gemms` off / on (the backward's epilogue with a fast square root) / on with
#         Triton's backward kernel (cavegpt.model.relu_square.QUACK_BACKWARD=False, a switch of the measured tree
#         that is gone since: the quack backward won, so this line of the stage no longer runs as written) / off.
#   record: (planned for session 25; one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4) `record` at its last
#         stage with `quack_gemms` off / on / off: its speed and its peak (owed since the head's chunks shared one
#         buffer, f789d9c), with quack's tiles tuned for its 131,072-token micro-batches.
#   profile: (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4) where a `seed` step goes with the overrides
#         given after the stage's name, and the GPU's idle time (benchmarks/profile_step_gpu.py).
# Usage (device, repo root): bash benchmarks/speed22_gpu.sh quack|mlp|mlp2|record|profile [OVERRIDES...]   (figures in $OUT)
set -uo pipefail
stage=$1; shift
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed22
case $stage in
quack)
    install_fa4
    timeout 500 python benchmarks/quack_gemm_gpu.py > "$out/quack_gemm.txt" 2>&1
    grep -E "ms, first call|^device" "$out/quack_gemm.txt"  # the rows so far, should the run stop early
    grep -E "Error|error:" "$out/quack_gemm.txt" | sort | uniq -c | head -8
    ;;
mlp)
    install_fa4
    gpu_tests 300 tests/test_relu_square.py tests/test_head_loss.py -k "gpu"
    for run in off on off_again on_again; do
        setting=false; [[ $run == on* ]] && setting=true
        bench "seed_quack_$run" --preset seed "${synthetic[@]}" attention=fa4 quack_gemms=$setting
    done
    ;;
mlp2)
    install_fa4
    bench seed_quack_off --preset seed "${synthetic[@]}" attention=fa4
    bench seed_quack_on --preset seed "${synthetic[@]}" attention=fa4 quack_gemms=true
    CAVEGPT="python benchmarks/module_settings.py cavegpt.model.relu_square.QUACK_BACKWARD=False --" \
        bench seed_quack_triton_backward --preset seed "${synthetic[@]}" attention=fa4 quack_gemms=true
    bench seed_quack_off_again --preset seed "${synthetic[@]}" attention=fa4
    ;;
record)
    install_fa4
    for run in off on off_again; do
        setting=false; [[ $run == on* ]] && setting=true
        bench "record_quack_$run" --preset record "${synthetic[@]}" --at-step 1900 attention=fa4 quack_gemms=$setting
    done
    ;;
profile)
    install_fa4
    python benchmarks/profile_step_gpu.py seed attention=fa4 "$@" > "$out/profile_seed.txt" 2>&1
    head -32 "$out/profile_seed.txt" | cut -c1-150; grep -E "^GPU idle|Error" "$out/profile_seed.txt"
    ;;
esac
