#!/usr/bin/env bash
# Issue 16: the records' attention layout for `record`, planned in session 11 (model options `no_attention_layers`,
# `short_window_layers`, off by default). From the record of 2025-01-16 on (until 2025-09-21 dropped layer 0's
# attention too) the 12-layer speedrun had no attention in block 7 and half the window in every layer but 0, 4, 11.
#   layers: (2 GPUs, carry .devdata/textmix) GPU 0: `record` at its last stage as it is, then with both
#           options (Flex; FA4 too when installed); GPU 1: 200-step `record` runs on textmix in 32,768-token
#           micro-batches (1/2/3 per stage, as session 5's FP8-head check), without and with the options.
#   park:   (one H100, carry .whl/cu13a) parks the first half of the split FA4 wheel; `record` (the layout adopted
#           after `layers`) at its last stage once more with Flex, the repeat of `layers`' figure.
#   fa4:    (the same warm H100, carry .whl/fa4) installs FA4; its GPU equality test against Flex; `record` at its
#           last stage and `h100` with FA4 (session 12); since session 13 `record` as it is (layer 0 empty) and with
#           layer 0 kept, then `seed` and `h100`, with FA4.
#   inductor: (one H100) `record` at its last stage, Flex, under inductor settings that change how the elementwise
#           kernels (21 % of a `record` step with FA4, the profile of session 12) are fused or launched: as it is,
#           TORCHINDUCTOR_ENABLE_PDL=1, combo_kernels, aggressive_fusion, TORCHINDUCTOR_MULTI_KERNEL=1.
#   layer0: (2 GPUs, carry .devdata/textmix) as `layers`, for the records' layer 0 from 2025-09-21 on: neither
#           attention (2025-09-21) nor MLP (2025-09-05), on top of the layout `layers` adopted.
#   layer0_long: (2 GPUs, carry .devdata/textmix) after `layer0` (7.1 % faster, 0.09 worse at 200 steps): 600-step
#           runs (≈ 39M tokens, under two passes over textmix): GPU 0 as it is, then without layer 0's MLP only (the
#           records of 2025-09-05); GPU 1 with layer 0 empty, then `record` without layer 0's MLP at its last stage.
#   head:   (one H100, carry .devdata/prehead, made with `mkdir -p .devdata/prehead && git archive 343d509 src |
#           tar -x -C .devdata/prehead`, and .whl/cu13a) parks the first half of the FA4 wheel for `fa4`; the head's
#           row kernel multiplying by 1 / cap instead of dividing by cap: its GPU tests, benchmarks/head_loss_gpu.py
#           on the code before and after (it also swept the row kernel's settings then; since session 13
#           head_rows_gpu.py does), then
#           `record` (last stage, its layer 0 named: the older tree's preset keeps it) before, after, before, after
#           (Flex; the second pair on warm caches).
#   kernel: (one H100, carry .devdata/prekernel made with `git archive 551e16d src`) the head's row kernel rewritten
#           to issue fewer instructions per logit (session 13): its GPU tests, then benchmarks/head_rows_gpu.py (the
#           kernel alone over block, warps and stages) on the code before and after.
#   fa4_kernel: (one warm H100 after `park`, carry .whl/fa4 and .devdata/prekernel) `record` at its last stage and
#           `seed` with FA4, before and after the kernel's rewrite.
#   addmm:  (one H100, carry .devdata/preaddmm made with `git archive 4d7afae src`, and .whl/cu13a) parks the first
#           half of the FA4 wheel; the head's weight gradient accumulated by the matmul itself in float32 instead of
#           a bf16 product added per chunk: the head's GPU tests, benchmarks/head_loss_gpu.py before and after.
#   bars:   (the same warm H100, carry .whl/fa4 and .devdata/prekernel) issue 16's bars with FA4: `record` at its
#           last stage on 551e16d (this session's layer 0, before the kernel work) and on this tree; `seed`.
# Usage (device, repo root): bash benchmarks/speed8_gpu.sh layers|park|fa4|inductor|layer0|layer0_long|head|kernel|fa4_kernel|addmm|bars
# (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed8
records_layout=(no_attention_layers=7 short_window_layers=1,2,3,5,6,8,9,10)
train() {  # log name, train arguments...: the run's output in $out/NAME.txt, its last validations printed
    local name=$1; shift
    python -m cavegpt train --preset record "${textmix_globs[@]}" val_tokens=2097152 save_checkpoint=false \
        log_dir=/tmp/cavegpt-speed8-runs run_id="$name" "$@" > "$out/$name.txt" 2>&1
    echo "== $name"; grep -E "warm-up|val_loss" "$out/$name.txt" | tail -4
}
ab() {  # name, model options...: GPU 0 `record` at its last stage as it is, then with the options; GPU 1 the two
    local name=$1; shift  # 200-step learning runs on textmix (32,768-token micro-batches, 1/2/3 per stage)
    (export CUDA_VISIBLE_DEVICES=1
     common=(seq_len=32768 batch_ramp=1,2,3 num_iterations=200 cooldown_iters=110 val_every=25 log_every=25)
     train record200_as_is "${common[@]}"
     train "record200_$name" "${common[@]}" "$@") > "$out/learn.txt" 2>&1 &
    export CUDA_VISIBLE_DEVICES=0
    bench record_as_is --preset record "${synthetic[@]}" --at-step 1900
    bench "record_$name" --preset record "${synthetic[@]}" --at-step 1900 "$@"
    wait
    cat "$out/learn.txt"
}
head_ab() {  # older folder under .devdata, benchmark script, log name, grep -E pattern of the lines to print: the
    local folder=$1 script=$2 name=$3 lines=$4  # head's GPU tests, then the script on that older src/ and on this tree
    python -m pytest -q tests/test_head_loss.py > "$out/head_loss_tests.txt" 2>&1; tail -1 "$out/head_loss_tests.txt"
    PYTHONPATH=".devdata/$folder/src" python "benchmarks/$script" > "$out/${name}_before.txt" 2>&1
    python "benchmarks/$script" > "$out/${name}_after.txt" 2>&1
    for when in before after; do echo "== ${name}_$when"; grep -E "$lines" "$out/${name}_$when.txt"; done
}
head_table='^(head|seed|record) \|'  # head_loss_gpu.py's table
case $stage in
head)
    park_fa4_half
    head_ab prehead head_loss_gpu.py head_loss "$head_table"
    record=(--preset record "${synthetic[@]}" --at-step 1900 attention=flex no_attention_layers=0,7 no_mlp_layers=0)
    for round in 1 2; do
        older prehead "record_before_$round" "${record[@]}"
        bench "record_after_$round" "${record[@]}"
    done
    ;;
kernel)
    head_ab prekernel head_rows_gpu.py head_rows "^read|kept|block (1024|2048), (4|8|16) warps, 3"
    ;;
addmm)
    park_fa4_half
    head_ab preaddmm head_loss_gpu.py head_loss "$head_table"
    ;;
bars)
    install_fa4
    older prekernel record_fa4_551e16d --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    bench record_fa4 --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    bench seed_fa4 --preset seed "${synthetic[@]}" attention=fa4
    ;;
fa4_kernel)
    install_fa4
    for preset in record seed; do
        at=(); [ $preset = record ] && at=(--at-step 1900)
        older prekernel "${preset}_fa4_before" --preset $preset "${synthetic[@]}" "${at[@]}" attention=fa4
        bench "${preset}_fa4_after" --preset $preset "${synthetic[@]}" "${at[@]}" attention=fa4
    done
    ;;
layer0_long)
    long=(seq_len=32768 batch_ramp=1,2,3 num_iterations=600 cooldown_iters=330 val_every=50 log_every=50)
    (export CUDA_VISIBLE_DEVICES=1
     train record600_layer0_empty "${long[@]}" no_attention_layers=0,7 no_mlp_layers=0
     bench record_mlp0 --preset record "${synthetic[@]}" --at-step 1900 no_mlp_layers=0) > "$out/gpu1.txt" 2>&1 &
    export CUDA_VISIBLE_DEVICES=0
    train record600_as_is "${long[@]}"
    train record600_mlp0 "${long[@]}" no_mlp_layers=0
    wait
    cat "$out/gpu1.txt"
    ;;
layer0)
    ab layer0_empty no_attention_layers=0,7 no_mlp_layers=0
    ;;
layers)
    (export CUDA_VISIBLE_DEVICES=1
     common=(seq_len=32768 batch_ramp=1,2,3 num_iterations=200 cooldown_iters=110 val_every=25 log_every=25)
     train record200_as_is "${common[@]}"
     train record200_records_layout "${common[@]}" "${records_layout[@]}") > "$out/learn.txt" 2>&1 &
    export CUDA_VISIBLE_DEVICES=0
    bench record_as_is --preset record "${synthetic[@]}" --at-step 1900
    bench record_records_layout --preset record "${synthetic[@]}" --at-step 1900 "${records_layout[@]}"
    wait
    cat "$out/learn.txt"
    ;;
park)
    park_fa4_half
    bench record_flex --preset record "${synthetic[@]}" --at-step 1900 attention=flex
    ;;
fa4)
    install_fa4
    python -m pytest -q tests/test_attention.py -k matches_flex > "$out/fa4_test.txt" 2>&1; tail -2 "$out/fa4_test.txt"
    bench record_fa4 --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    bench record_fa4_layer0_kept --preset record "${synthetic[@]}" --at-step 1900 attention=fa4 \
        no_attention_layers=7 no_mlp_layers=
    bench seed_fa4 --preset seed "${synthetic[@]}" attention=fa4
    bench h100_fa4 --preset h100 "${synthetic[@]}" attention=fa4
    ;;
inductor)
    record=(--preset record "${synthetic[@]}" --at-step 1900 attention=flex)
    bench record_as_is "${record[@]}"
    TORCHINDUCTOR_ENABLE_PDL=1 bench record_pdl "${record[@]}"
    CAVEGPT="python benchmarks/module_settings.py torch._inductor.config.combo_kernels=True --" bench record_combo_kernels "${record[@]}"
    CAVEGPT="python benchmarks/module_settings.py torch._inductor.config.aggressive_fusion=True --" bench record_aggressive_fusion "${record[@]}"
    TORCHINDUCTOR_MULTI_KERNEL=1 bench record_multi_kernel "${record[@]}"
    ;;
esac
