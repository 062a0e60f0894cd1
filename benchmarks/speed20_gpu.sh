#!/usr/bin/env bash
# Issue 16, session 22 (`seed` at 481–483k tokens/s in session 21; the bar is 500k, a step ≤ 1,048.6 ms):
#   head: (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4 and .devdata/s22start = `git archive b0eb16b
#         src`) the head's row kernel in one pass (each row read once; the rows' scales go on the products' [rows × d]
#         sides): its GPU tests, the kernel alone over block and warps (benchmarks/head_rows_gpu.py), the fused head
#         against the plain path (benchmarks/head_loss_gpu.py: time, memory and agreement), then `seed` on b0eb16b /
#         this tree / b0eb16b.
#   chunk: (one warm H100 after `speed16_gpu.sh park`; carry as for head) with the kernel at block 2048, 8 warps
#         (head's sweep) and the head's logits in one chunk of a micro-batch's 32,768 rows (ModelConfig.
#         head_chunk_tokens; head_loss_gpu.py: 13.80 against 14.29 ms in four of 8,192): the head's and the config's
#         tests, then `seed` on b0eb16b / this tree / this tree in chunks of 8,192, and `record` at its last stage on
#         b0eb16b / this tree.
#   learn: (2 GPUs; carry .devdata/textmix and .devdata/s22start) the issue's learning check, 300 `seed` steps on
#         textmix with FlexAttention, b0eb16b (GPU 1) beside this tree (GPU 0) at init seeds 0, 1, 2.
#   gates: (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4 and .devdata/s22mid = `git archive 42fc003
#         src`) the attention and smear gates as products and a sum that inductor fuses (`gate_linear`; as matmuls of
#         12-deep rows they took 3.9 ms a `seed` step in session 21's profile): `seed` on 42fc003 / this tree /
#         42fc003. Run at ddeb8e0 (459,738 against 486,507 / 488,058); the change is reverted, so on later trees
#         this stage compares 42fc003 with itself.
#   next: (planned for session 23; one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4) `seed`, then `record` at
#         its last stage (its peak was 54.26 GiB at 42fc003, before the head's chunks shared one buffer), then where a
#         `seed` step goes now (benchmarks/profile_step_gpu.py).
# Usage (device, repo root): bash benchmarks/speed20_gpu.sh head|chunk|learn|gates|next   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed20
case $stage in
head)
    install_fa4
    gpu_tests 200 tests/test_head_loss.py
    timeout 150 python benchmarks/head_rows_gpu.py > "$out/head_rows.txt" 2>&1
    sed -n '/^what/,$p' "$out/head_rows.txt"
    timeout 150 python benchmarks/head_loss_gpu.py > "$out/head_loss.txt" 2>&1
    sed -n '/^head |/,$p' "$out/head_loss.txt"; grep -E "Error" "$out/head_loss.txt" | head -3
    older s22start seed_before --preset seed "${synthetic[@]}" attention=fa4
    bench seed_after --preset seed "${synthetic[@]}" attention=fa4
    older s22start seed_before_again --preset seed "${synthetic[@]}" attention=fa4
    ;;
chunk)
    install_fa4
    gpu_tests 200 tests/test_head_loss.py tests/test_config.py
    older s22start seed_before --preset seed "${synthetic[@]}" attention=fa4
    bench seed_after --preset seed "${synthetic[@]}" attention=fa4
    bench seed_chunk8192 --preset seed "${synthetic[@]}" attention=fa4 head_chunk_tokens=8192
    older s22start record_before --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    bench record_after --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    ;;
gates)
    install_fa4
    older s22mid seed_before --preset seed "${synthetic[@]}" attention=fa4
    bench seed_after --preset seed "${synthetic[@]}" attention=fa4
    older s22mid seed_before_again --preset seed "${synthetic[@]}" attention=fa4
    ;;
next)
    install_fa4
    bench seed --preset seed "${synthetic[@]}" attention=fa4
    bench record --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    python benchmarks/profile_step_gpu.py seed attention=fa4 > "$out/profile_seed.txt" 2>&1
    head -12 "$out/profile_seed.txt"; grep -A14 "matmuls by shape" "$out/profile_seed.txt"
    ;;
learn)
    seed300() {  # log name [overrides...]: the 300-step seed run on textmix, its validations printed
        local name=$1; shift
        python -m cavegpt train --preset seed "${textmix_globs[@]}" val_tokens=2097152 grad_accum=2 \
            num_iterations=300 cooldown_iters=110 val_every=25 log_every=25 save_checkpoint=false \
            log_dir=/tmp/cavegpt-speed20-runs run_id="$name" "$@" > "$out/$name.txt" 2>&1
        echo "== $name"; grep -E "^step:[0-9]+/300 val_loss" "$out/$name.txt" | tr '\n' ' ' | \
            sed -E 's/ train_time:[^ ]+ step_avg:[^ ]+//g'
        echo
    }
    for seed in 0 1 2; do
        (export CUDA_VISIBLE_DEVICES=1 PYTHONPATH=.devdata/s22start/src; seed300 "seed300_b0eb16b_s$seed" seed=$seed) \
            >> "$out/gpu1.txt" 2>&1 &
        CUDA_VISIBLE_DEVICES=0 seed300 "seed300_new_s$seed" seed=$seed
        wait
    done
    cat "$out/gpu1.txt"
    ;;
esac
