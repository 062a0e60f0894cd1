#!/usr/bin/env bash
# Issue 16, session 16 (`seed` at 461,618 tokens/s with FA4 in session 14; the bar is 500k):
#   park:    (carry .whl/cu13a) the first half of the FA4 wheels to /tmp; the next call must follow at once.
#   seed3:   (one warm H100 after park, carry .whl/fa4, .devdata/session15start and .devdata/stream, the
#            latter `git archive lever/bf16-stream-sr src`) `seed` with FA4 before session 15's levers, with the casts
#            and FA4's in-place reads (this tree), and with the bf16 stream on top.
#   stream2: (as seed3, without session15start) `seed` and `record` with this tree against the bf16 stream, then the
#            casts' and FA4's GPU tests.
#   stream3: (as stream2, carry .devdata/streamrn too: .devdata/stream with `self.stochastic = False` in Stream, a
#            probe) the casts' and FA4's GPU tests, then `seed` with this tree against the bf16 stream rounded to
#            nearest: what the stream's bytes save before its random bits cost anything.
#   profile: (one warm H100 after park, carry .whl/fa4) the stand-ins' GPU test, then where a `seed` step with FA4
#            goes on this tree (benchmarks/profile_step_gpu.py).
#   gradadds: (one warm H100 after park, carry .whl/fa4 and .devdata/gradadds, `git archive lever/compiled-grad-adds
#            src`) `seed` with FA4 on this tree, with the stand-ins' gradients summed by one compiled foreach add,
#            and on this tree again (the same call's spread).
#   host:    (planned; one warm H100 after park, carry .whl/fa4) the stand-ins' GPU gradient check with two
#            micro-batches, what each phase of a `seed` step costs the host (benchmarks/host_phases_gpu.py), then
#            `seed` with PyTorch's allocator as it is and with expandable segments (modded-nanogpt sets them).
# Usage (device, repo root): bash benchmarks/speed10_gpu.sh park|seed3|stream2|stream3|profile|gradadds|host   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed10
case $stage in
park)
    park_fa4_half
    ;;
seed3)
    install_fa4
    older session15start seed_before --preset seed "${synthetic[@]}" attention=fa4
    bench seed_main --preset seed "${synthetic[@]}" attention=fa4
    older stream seed_stream --preset seed "${synthetic[@]}" attention=fa4 residual=bf16
    ;;
stream2)
    install_fa4
    bench seed_main --preset seed "${synthetic[@]}" attention=fa4
    older stream seed_stream --preset seed "${synthetic[@]}" attention=fa4 residual=bf16
    bench record_main --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    older stream record_stream --preset record "${synthetic[@]}" --at-step 1900 attention=fa4 residual=bf16
    timeout 150 python -m pytest -q tests/test_bf16_weights.py tests/test_attention.py > "$out/tests.txt" 2>&1
    tail -1 "$out/tests.txt"
    ;;
stream3)
    install_fa4
    timeout 240 python -m pytest -q tests/test_bf16_weights.py::test_compiled_training_steps_alike_with_the_stand_ins_and_without \
        tests/test_attention.py::test_fa4_matches_flex_forward_and_backward > "$out/tests.txt" 2>&1
    tail -1 "$out/tests.txt"
    bench seed_main --preset seed "${synthetic[@]}" attention=fa4
    older streamrn seed_stream_nearest --preset seed "${synthetic[@]}" attention=fa4 residual=bf16
    ;;
profile)
    install_fa4
    timeout 200 python -m pytest -q tests/test_bf16_weights.py > "$out/tests.txt" 2>&1
    tail -1 "$out/tests.txt"
    python benchmarks/profile_step_gpu.py seed attention=fa4 > "$out/profile_seed.txt" 2>&1
    head -90 "$out/profile_seed.txt" | cut -c1-150
    ;;
gradadds)
    install_fa4
    bench seed_main --preset seed "${synthetic[@]}" attention=fa4
    older gradadds seed_gradadds --preset seed "${synthetic[@]}" attention=fa4
    bench seed_main_again --preset seed "${synthetic[@]}" attention=fa4
    ;;
host)
    install_fa4
    timeout 200 python -m pytest -q -p no:logging tests/test_bf16_weights.py > "$out/tests.txt" 2>&1
    grep -E "^E |passed|failed" "$out/tests.txt" | cut -c1-300 | head -8
    python benchmarks/host_phases_gpu.py seed attention=fa4 > "$out/host_phases_seed.txt" 2>&1
    tail -9 "$out/host_phases_seed.txt"
    bench seed_main --preset seed "${synthetic[@]}" attention=fa4
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True bench seed_expandable --preset seed "${synthetic[@]}" attention=fa4
    ;;
esac
