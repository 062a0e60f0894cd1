#!/usr/bin/env bash
# Issue 16, planned for session 20 (`seed` at 477,520 tokens/s in session 19; the bar is 500k):
#   park: (carry .whl/cu13a) the first half of the FA4 wheels to /tmp; the next call must follow at once.
#   ws:   (one warm H100 after park; carry .whl/fa4 and .devdata/s19end, made with
#         `git archive c21daa0 src | tar -x -C .devdata/s19end`) the ReLU² kernels with the loads in a warp of their
#         own (`WARP_SPECIALIZE`, not in the autotuned CONFIGS yet): the GPU tests, benchmarks/mlp_gpu.py (CONFIGS
#         and the warp-specialized CANDIDATES, forward and backward kernel alone, beside cuBLAS), then `seed` on
#         c21daa0, on this tree (the kernel's loop body moved into `_output_tile`: the same code for CONFIGS), on a copy
#         of this tree under /tmp whose CONFIGS also hold mlp_gpu.py's warp-specialized CANDIDATES (the autotuner
#         picks among all), and on c21daa0 again; the head's row kernel with and without its second pass
#         (benchmarks/head_rows_gpu.py: which pass holds its time); then the profile with the matmuls' rates (the
#         profiler's FLOP count, new in session 19).
#   fa4tiles: (the same warm machine, right after ws; carry .whl/fa4 and .devdata/textmix_val) FA4's sm_90 tiles
#         at a `seed` micro-batch's attention, forward and backward alone, on synthetic and English document lengths
#         (benchmarks/fa4_tiles_gpu.py; each setting compiles its own kernels, ≈ 14 of them).
# If the copy wins, add the tiles its autotuner kept (its "best config" lines, TRITON_PRINT_AUTOTUNING) to CONFIGS.
# Usage (device, repo root): bash benchmarks/speed16_gpu.sh park|ws|fa4tiles   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed16
case $stage in
park)
    park_fa4_half
    ;;
ws)
    install_fa4
    gpu_tests 200 tests/test_relu_square.py
    timeout 240 python benchmarks/mlp_gpu.py > "$out/mlp.txt" 2>&1
    grep -E "autotuned|Error|^(fwd|bwd) .*WARP_SPECIALIZE: True" "$out/mlp.txt" | cut -c1-200
    sed -n '/^what/,$p' "$out/mlp.txt" | head -8
    older s19end seed_before --preset seed "${synthetic[@]}" attention=fa4
    bench seed_after --preset seed "${synthetic[@]}" attention=fa4
    python benchmarks/ws_tree.py /tmp/wstree 8
    TRITON_PRINT_AUTOTUNING=1 PYTHONPATH="/tmp/wstree/src${PYTHONPATH#src}" bench seed_ws_autotuned --preset seed \
        "${synthetic[@]}" attention=fa4
    grep -A3 "autotuning for function _epilogue_matmul" "$out/seed_ws_autotuned.txt" | grep -E "key|best" | cut -c1-250
    older s19end seed_before_again --preset seed "${synthetic[@]}" attention=fa4
    python benchmarks/head_rows_gpu.py > "$out/head_rows.txt" 2>&1
    grep -E "^read|kept" "$out/head_rows.txt"
    python benchmarks/profile_step_gpu.py seed attention=fa4 > "$out/profile_seed.txt" 2>&1
    head -12 "$out/profile_seed.txt"; grep -A14 "matmuls by shape" "$out/profile_seed.txt"
    ;;
fa4tiles)
    install_fa4
    timeout 540 python benchmarks/fa4_tiles_gpu.py > "$out/fa4_tiles.txt" 2>&1
    sed -n '/^what/,$p' "$out/fa4_tiles.txt"; grep -E "documents|Error" "$out/fa4_tiles.txt" | head -12
    ;;
esac
