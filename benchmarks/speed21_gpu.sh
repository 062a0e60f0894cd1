#!/usr/bin/env bash
# Issue 16, session 23 (`seed` at 491,058 tokens/s in session 22, 1.068 s a step; the bar is 500k, ≤ 1.0486 s):
#   levers: (run on branch lever/combo = main + lever/qkv-epilogue + lever/x0-low-precision, 6d37bf1; one warm H100
#         after `speed16_gpu.sh park`; carry .whl/fa4) the Q/K/V epilogue's GPU tests and its kernel against cuBLAS +
#         the prep kernels (benchmarks/qkv_matmul_gpu.py), then `seed` with neither lever / with `qkv_epilogue=true` /
#         with `low_precision_x0=true`. On main the settings do not exist, so this stage no longer runs as written.
#   profile: (the same warm machine; carry .whl/fa4) where a `seed` step goes, with the overrides given after the
#         stage's name (benchmarks/profile_step_gpu.py).
#   fp8: (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4) the head's forward product in FP8
#         (`head_fp8`): the head's GPU tests, benchmarks/head_fp8_gpu.py, then `seed` with it off / on / off.
#   bar: (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4) `seed` with `head_fp8` off / on / off, nothing
#         else (what the session's last device time allowed).
#   next: (planned for session 24; one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4 and .devdata/s23mid =
#         `git archive 4ecaefe src`) `seed` with `head_fp8=true`: W's copies made per micro-batch (4ecaefe) / held for
#         the step (this tree) / held, with float32 sums (FP8_FAST_ACCUM=False) / `head_fp8` off.
#   learn: (2, 4 or more GPUs; carry .devdata/textmix and .devdata/$BEFORE, e.g. s23start = `git archive 014f895
#         src`) the issue's learning check, 300 `seed` steps on textmix with FlexAttention at init seeds $SEEDS (0 1 2),
#         this tree with the overrides in $NEW beside the older tree, a pair of GPUs per seed, as many seeds at once as
#         there are pairs. CAVEGPT names another command line for the new side (benchmarks/module_settings.py).
# Usage (device, repo root): bash benchmarks/speed21_gpu.sh levers|profile|fp8|bar|next|learn [OVERRIDES...]
#   (figures in $OUT)
set -uo pipefail
stage=$1; shift
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed21
fp8_off_on_off() {  # `seed` with head_fp8 off / on / off
    bench seed_off --preset seed "${synthetic[@]}" attention=fa4
    bench seed_fp8 --preset seed "${synthetic[@]}" attention=fa4 head_fp8=true
    bench seed_off_again --preset seed "${synthetic[@]}" attention=fa4
}
case $stage in
levers)
    install_fa4
    gpu_tests 150 tests/test_qkv_prep.py -k gpu
    timeout 120 python benchmarks/qkv_matmul_gpu.py > "$out/qkv_matmul.txt" 2>&1
    sed -n '/^largest/,$p' "$out/qkv_matmul.txt"; grep -E "Error" "$out/qkv_matmul.txt" | head -3
    bench seed_neither --preset seed "${synthetic[@]}" attention=fa4
    bench seed_epilogue --preset seed "${synthetic[@]}" attention=fa4 qkv_epilogue=true
    bench seed_x0 --preset seed "${synthetic[@]}" attention=fa4 low_precision_x0=true
    ;;
profile)
    install_fa4
    python benchmarks/profile_step_gpu.py seed attention=fa4 "$@" > "$out/profile_seed.txt" 2>&1
    head -14 "$out/profile_seed.txt"; grep -A14 "matmuls by shape" "$out/profile_seed.txt"
    ;;
fp8)
    install_fa4
    gpu_tests 200 tests/test_head_loss.py -k gpu
    timeout 120 python benchmarks/head_fp8_gpu.py > "$out/head_fp8.txt" 2>&1
    sed -n '/^the head/,$p' "$out/head_fp8.txt"; grep -E "Error" "$out/head_fp8.txt" | head -3
    fp8_off_on_off
    ;;
bar)
    install_fa4
    fp8_off_on_off
    ;;
next)
    install_fa4
    older s23mid seed_fp8_per_batch --preset seed "${synthetic[@]}" attention=fa4 head_fp8=true
    bench seed_fp8_held --preset seed "${synthetic[@]}" attention=fa4 head_fp8=true
    CAVEGPT="python benchmarks/module_settings.py cavegpt.model.head_loss.FP8_FAST_ACCUM=False --" \
        bench seed_fp8_float32_sums --preset seed "${synthetic[@]}" attention=fa4 head_fp8=true
    bench seed_off --preset seed "${synthetic[@]}" attention=fa4
    ;;
learn)
    seed300() {  # log name [overrides...]: the 300-step seed run on textmix, its validations printed
        local name=$1; shift
        ${CAVEGPT:-python -m cavegpt} train --preset seed "${textmix_globs[@]}" val_tokens=2097152 grad_accum=2 \
            num_iterations=300 cooldown_iters=110 val_every=25 log_every=25 save_checkpoint=false \
            log_dir=/tmp/cavegpt-speed21-runs run_id="$name" "$@" > "$out/$name.txt" 2>&1
        echo "== $name"; grep -E "^step:[0-9]+/300 val_loss" "$out/$name.txt" | tr '\n' ' ' | \
            sed -E 's/ train_time:[^ ]+ step_avg:[^ ]+//g'
        echo
    }
    before=${BEFORE:?BEFORE names the older tree, a folder under .devdata}
    pair() {  # init seed, first GPU of the pair: the older tree on the second GPU, this tree on the first
        # the older tree in place of src/ on the path, FA4's wheels kept (session 24's check lost them: Flex ran there)
        (unset CAVEGPT; export CUDA_VISIBLE_DEVICES=$(($2 + 1)) PYTHONPATH=".devdata/$before/src${PYTHONPATH#src}"
         seed300 "seed300_${before}_s$1" seed="$1") > "$out/pair_s$1_before.txt" 2>&1 &
        # shellcheck disable=SC2086  # NEW holds several key=value overrides
        (export CUDA_VISIBLE_DEVICES=$2; seed300 "seed300_new_s$1" seed="$1" ${NEW:-}) > "$out/pair_s$1_new.txt" 2>&1 &
    }
    gpus=$(nvidia-smi -L | wc -l)
    pairs=0
    for seed in ${SEEDS:-0 1 2}; do
        pair "$seed" $((2 * pairs))
        pairs=$((pairs + 1))
        if [ $((2 * pairs + 1)) -gt "$gpus" ]; then wait; pairs=0; fi
    done
    wait
    cat "$out"/pair_*.txt
    ;;
esac
