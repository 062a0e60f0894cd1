#!/usr/bin/env bash
# Issue 16, session 18 (`seed` at 470,794 with FA4 in call 2, 473,830 with the prep op; the bar is 500k):
#   park:  (carry .whl/cu13a) the first half of the FA4 wheels to /tmp; the next call must follow at once.
#   check: (one warm H100 after park, carry .whl/fa4) where the prep op's GPU test disagreed (λ's gradient against
#          float64; the op under aot_eager, which failed on PyTorch 2.11; a 4-layer model with and without it);
#          then `seed` as it ships three times, one cold compile and two from inductor's cache, each timing two
#          rows of 10 steps (call 3's cached runs gave 434k where call 2's gave 470k), and `seed` with the op.
#   prep:  (one warm H100 after park, carry .whl/fa4) the prep op's GPU tests with V's mix returned without a no-op
#          .to() (pytorch#180642), then where a `seed` step goes with the op on by default (profile_step_gpu.py).
#   cache: (the same machine, right after prep) `seed` from the inductor cache that prep's call wrote (call 3's
#          cached runs came from the call before theirs), then with `autotune_elementwise=false`.
#   vgrad: (one warm H100 after park, carry .whl/fa4 and .devdata/s18, `git archive 989068d src`) the prep op's GPU
#          tests with V's gradient written by a Triton kernel (the strided copy took 13.2 ms a step in call 7),
#          `seed` before (989068d) and after, the ReLU² kernels over more tiles (benchmarks/mlp_gpu.py), `seed` before again.
#   post:  (one warm H100 after park, carry .whl/fa4 and .devdata/s18b, `git archive 8878d7b src`) the ReLU²
#          kernels' GPU tests, mlp_gpu.py, then `seed` at 8878d7b and on this tree. Call 12 ran it with the
#          backward's `post` fetched before the matmul (a PREFETCH tile option, two such tiles in CONFIGS): the
#          prefetching backward took 1.9 to 21 ms against 0.33, so the option was removed.
# Usage (device, repo root): bash benchmarks/speed13_gpu.sh park|check|prep|cache|vgrad|post   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed13
case $stage in
park)
    park_fa4_half
    ;;
check)
    install_fa4
    python benchmarks/qkv_prep_check_gpu.py > "$out/qkv_prep_check.txt" 2>&1
    grep -E "^ *[0-9]\.|^   |Error" "$out/qkv_prep_check.txt" | cut -c1-400
    for run in cold cached cached_again; do
        bench seed_$run --preset seed "${synthetic[@]}" --window 1792 attention=fa4
    done
    bench seed_prep --preset seed "${synthetic[@]}" --window 1792 attention=fa4 fused_qkv_prep=true
    ;;
prep)
    install_fa4
    gpu_tests 240 tests/test_qkv_prep.py tests/test_gpt.py
    python benchmarks/profile_step_gpu.py seed attention=fa4 > "$out/profile_seed.txt" 2>&1
    head -14 "$out/profile_seed.txt"; grep -E "GPU idle" "$out/profile_seed.txt"
    ;;
vgrad)
    install_fa4
    gpu_tests 200 tests/test_qkv_prep.py
    older s18 seed_989068d --preset seed "${synthetic[@]}" --window 1792 attention=fa4
    bench seed_vgrad --preset seed "${synthetic[@]}" --window 1792 attention=fa4
    python benchmarks/mlp_gpu.py > "$out/mlp.txt" 2>&1
    tail -32 "$out/mlp.txt"
    older s18 seed_989068d_again --preset seed "${synthetic[@]}" --window 1792 attention=fa4
    ;;
post)
    install_fa4
    gpu_tests 120 tests/test_relu_square.py
    python benchmarks/mlp_gpu.py > "$out/mlp.txt" 2>&1
    tail -24 "$out/mlp.txt"
    older s18b seed_8878d7b --preset seed "${synthetic[@]}" --window 1792 attention=fa4
    bench seed_post --preset seed "${synthetic[@]}" --window 1792 attention=fa4
    ;;
cache)
    install_fa4
    bench seed_cached_across_calls --preset seed "${synthetic[@]}" --window 1792 attention=fa4
    bench seed_no_autotune --preset seed "${synthetic[@]}" --window 1792 attention=fa4 autotune_elementwise=false
    ;;
esac
