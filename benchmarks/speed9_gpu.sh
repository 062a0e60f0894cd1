#!/usr/bin/env bash
# Issue 16, after session 13 (`record` at 525,505 tokens/s with FA4: the row kernel rewritten, the head's weight
# gradient summed inside the matmul, layer 0 empty in the record recipe):
#   learn:   (2 GPUs, carry .devdata/textmix and .devdata/session13start, made with `mkdir -p
#            .devdata/session13start && git archive a939185 src | tar -x -C .devdata/session13start`) the issue's
#            learning check: 300 `seed` steps on textmix at init seed 0, the command of the earlier 300-step checks
#            (recorded spread 2.1498-2.1554), at the same time on the code before session 13 (GPU 1) and on this tree
#            (GPU 0);
#            then the capped presets' peaks with the new code: `presets_gpu.sh record-24gb record-16gb 4090`.
#   seeds:   (2 GPUs, carry as for learn) the same pair of runs again at init seeds 1 and 2: the run-to-run spread
#            of each side, in one call. BEFORE=folder under .devdata (default session13start) and SEEDS="0 1"
#            choose the older code and the seeds.
#   mlp:     (one warm H100 after `speed8_gpu.sh park`, carry .whl/fa4 and .devdata/session14start, made with
#            `git archive e9b4d09 src | tar -x -C .devdata/session14start`) the relu² kernels reading W_proj where it
#            lies and the epilogue in halves: GPU tests, benchmarks/mlp_gpu.py, then `seed` with FA4 before and after.
#   rows:    (one warm H100 after `speed8_gpu.sh park`, carry .whl/fa4, .devdata/session14start and .devdata/mlpkernel,
#            made with `git archive 05c7bc5 src | tar -x -C .devdata/mlpkernel`) the embedding rows' gradients added
#            straight into .grad: `seed` with FA4 before both changes, with the relu² kernels' change, with both;
#            then `record` at its last stage with both.
#   profile: (one warm H100 after `speed8_gpu.sh park`, carry .whl/fa4) where a `seed` step goes with FA4 now, for
#            its 500k bar: benchmarks/profile_step_gpu.py seed attention=fa4.
# Usage (device, repo root): bash benchmarks/speed9_gpu.sh learn|seeds|mlp|rows|profile   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed9
seed300() {  # log name [overrides...]: the 300-step seed run on textmix, its validations printed
    local name=$1; shift
    python -m cavegpt train --preset seed "${textmix_globs[@]}" val_tokens=2097152 grad_accum=2 num_iterations=300 \
        cooldown_iters=110 val_every=25 log_every=25 save_checkpoint=false log_dir=/tmp/cavegpt-speed9-runs \
        run_id="$name" "$@" > "$out/$name.txt" 2>&1
    echo "== $name"; grep -E "^step:[0-9]+/300 val_loss" "$out/$name.txt" | tr '\n' ' ' | sed -E 's/ train_time:[^ ]+ step_avg:[^ ]+//g'
    echo
}
pairs() {  # older folder under .devdata, init seeds...: seed300 on that older src/ (GPU 1) beside this tree (GPU 0)
    local before=$1; shift
    for seed in "$@"; do
        (export CUDA_VISIBLE_DEVICES=1 PYTHONPATH=.devdata/$before/src; seed300 "seed300_${before}_s$seed" seed=$seed) \
            >> "$out/gpu1.txt" 2>&1 &
        CUDA_VISIBLE_DEVICES=0 seed300 "seed300_new_s$seed" seed=$seed
        wait
    done
    cat "$out/gpu1.txt"
}
case $stage in
learn)
    pairs session13start 0
    CALL_SECONDS=$((570 - SECONDS)) bash benchmarks/presets_gpu.sh record-24gb record-16gb 4090 | tail -5
    ;;
seeds)
    pairs "${BEFORE:-session13start}" ${SEEDS:-1 2}
    ;;
mlp)
    install_fa4
    python -m pytest -q tests/test_relu_square.py > "$out/relu_square_tests.txt" 2>&1; tail -1 "$out/relu_square_tests.txt"
    python benchmarks/mlp_gpu.py > "$out/mlp.txt" 2>&1; sed -n '/^what/,$p' "$out/mlp.txt"; grep -E "autotuned|Error" "$out/mlp.txt"
    older session14start seed_before --preset seed "${synthetic[@]}" attention=fa4
    bench seed_after --preset seed "${synthetic[@]}" attention=fa4
    ;;
rows)
    install_fa4
    older session14start seed_before --preset seed "${synthetic[@]}" attention=fa4
    older mlpkernel seed_mlpkernel --preset seed "${synthetic[@]}" attention=fa4
    bench seed_rows --preset seed "${synthetic[@]}" attention=fa4
    bench record_rows --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    ;;
profile)
    install_fa4
    python benchmarks/profile_step_gpu.py seed attention=fa4 > "$out/profile_seed_fa4.txt" 2>&1
    grep -v -E "^ +[0-9.]+ ms +[0-9]+×" "$out/profile_seed_fa4.txt" | tail -30  # the summary and the gaps; the kernels stay in the file
    ;;
esac
