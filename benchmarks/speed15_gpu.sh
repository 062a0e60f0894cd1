#!/usr/bin/env bash
# Issue 16, session 19 (`seed` at 468,176-478,567 tokens/s with FA4; the bar is 500k):
#   park:  (carry .whl/cu13a) the first half of the FA4 wheels to /tmp; the next call must follow at once.
#   head:  (one warm H100 after park; carry .whl/fa4, .devdata/s19start made with
#          `git archive 9cb3a02 src | tar -x -C .devdata/s19start`, and .devdata/textmix1, a copy of textmix's
#          train shard 1 and its val shard)
#          - GPU tests of the head loss and of the rows summed by token (its model test now with live weights);
#          - the head's row kernel alone, before (9cb3a02) and with the reciprocal by Newton's iteration, over
#            block × warps × stages (benchmarks/head_rows_gpu.py);
#          - the rows by token against index_add_ on uniform and English tokens (benchmarks/row_grads_gpu.py);
#          - `seed` on textmix's English tokens (frequent tokens' rows meet in index_add_'s atomics): 9cb3a02,
#            this tree, this tree with `row_grads_by_token=true`, 9cb3a02 again.
#   head2: (carry .whl/fa4, .devdata/s19start, .devdata/textmix_val) the row kernel looping over rows in a few
#          programs per SM (rows in flight bounded so that each row's second read comes from L2), over block × warps
#          × programs per SM; the rows by token on English tokens as well; then `seed`: 9cb3a02, this tree with the
#          sweep's fastest head setting, that plus the rows by token at block 32, 128 channels, 4 warps (call 5's
#          fastest on uniform tokens), 9cb3a02 again.
# (head and head2 are kept as they ran: the head-kernel probes they measured were removed after call 7, so they no
# longer run as written; docs/BENCHMARKS.md, session 19)
# Usage (device, repo root): bash benchmarks/speed15_gpu.sh park|head|head2   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed15
text=(train_glob=.devdata/textmix1/textmix_train_000001.bin val_glob=.devdata/textmix1/textmix_val_000000.bin
      val_tokens=1048576)
case $stage in
park)
    park_fa4_half
    ;;
head)
    install_fa4
    gpu_tests 200 tests/test_row_grads.py tests/test_head_loss.py
    PYTHONPATH=".devdata/s19start/src${PYTHONPATH#src}" python benchmarks/head_rows_gpu.py > "$out/head_rows_before.txt" 2>&1
    python benchmarks/head_rows_gpu.py > "$out/head_rows_after.txt" 2>&1
    paste -d'|' <(grep "kernel, block" "$out/head_rows_before.txt" | cut -d'|' -f1,2) \
                <(grep "kernel, block" "$out/head_rows_after.txt" | cut -d'|' -f2)
    python benchmarks/row_grads_gpu.py > "$out/row_grads.txt" 2>&1
    tail -30 "$out/row_grads.txt"
    older s19start text_before --preset seed --steps 10 --window 1792 attention=fa4 "${text[@]}"
    bench text_newton --preset seed --steps 10 --window 1792 attention=fa4 "${text[@]}"
    bench text_newton_by_token --preset seed --steps 10 --window 1792 attention=fa4 "${text[@]}" row_grads_by_token=true
    older s19start text_before_again --preset seed --steps 10 --window 1792 attention=fa4 "${text[@]}"
    ;;
head2)
    install_fa4
    gpu_tests 200 tests/test_head_loss.py tests/test_row_grads.py
    python benchmarks/head_rows_gpu.py > "$out/head_rows.txt" 2>&1
    grep -E "^read|kernel" "$out/head_rows.txt"
    pick=$(python - "$out/head_rows.txt" <<'PY'
import re, sys
best = min((float(ms), m.groups()) for line in open(sys.argv[1])
           if (m := re.match(r"kernel, block (\d+), (\d+) warps, (\d+) per SM", line)) and (ms := line.split("|")[1].strip()) != "nan")
block, warps, per_sm = best[1]
prefix = "cavegpt.model.head_loss_triton."
print(f"{prefix}BLOCK_SIZE={block} {prefix}NUM_WARPS={warps} {prefix}PROGRAMS_PER_SM={per_sm}")
PY
)
    echo "fastest looping setting: $pick"
    python benchmarks/row_grads_gpu.py > "$out/row_grads.txt" 2>&1
    tail -30 "$out/row_grads.txt"
    rows="cavegpt.model.row_grads_triton.BLOCK=32 cavegpt.model.row_grads_triton.BLOCK_C=128 cavegpt.model.row_grads_triton.NUM_WARPS=4"
    older s19start seed_before --preset seed "${synthetic[@]}" attention=fa4
    CAVEGPT="python benchmarks/module_settings.py $pick --" bench seed_head --preset seed "${synthetic[@]}" attention=fa4
    CAVEGPT="python benchmarks/module_settings.py $pick $rows --" bench seed_head_rows --preset seed "${synthetic[@]}" \
        attention=fa4 row_grads_by_token=true
    older s19start seed_before_again --preset seed "${synthetic[@]}" attention=fa4
    ;;
esac
