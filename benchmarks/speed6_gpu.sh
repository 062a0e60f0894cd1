#!/usr/bin/env bash
# Issues 16 and 18, the GPU work planned in session 8, in stages of one device call each (one H100 kept warm
# between calls, so /tmp, the FA4 install and the inductor cache carry over):
#   qkv:     parks the first half of the split FA4 wheel (carry .whl/cu13a and .devdata/preqkv, made by
#            `mkdir -p .devdata/preqkv && git archive 3fe03ae src | tar -x -C .devdata/preqkv`): seed and record
#            (last stage) with Q, K and V as three matmuls (3fe03ae) and as one (this tree), Flex.
#   (head and learn, the row kernel's options A/B'd in session 9, ran at 1dbe9d1: the option that won became the
#   kernel's only path, the other was cut; then the bars with FA4, baseline 1393dca side by side:
#   `bash benchmarks/speed5_gpu.sh seed` and `record`)
#   h100:    after speed5's seed stage on the same machine (FA4 in /tmp): the h100 preset at 4 × 131,072 with FA4
#            (speed5's new_h100 is its 8 × 65,536).
#   layouts: record at its last stage in micro-batches of 65,536 and 131,072 tokens (the same tokens per step;
#            32,768 is the qkv stage's record_one_matmul on the same machine), Flex.
#   compile: where the cold compile of the presets in 16,384-token micro-batches goes
#            (benchmarks/compile_probe_gpu.py: 16gb, then record-24gb at its last stage's shapes).
# Usage (device, repo root): bash benchmarks/speed6_gpu.sh qkv|h100|layouts|compile   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed6
synthetic=(--synthetic --steps 10 --window 1792)
case $stage in
qkv)
    park_fa4_half
    older preqkv seed_three_matmuls --preset seed "${synthetic[@]}" attention=flex
    bench seed_one_matmul --preset seed "${synthetic[@]}" attention=flex
    older preqkv record_three_matmuls --preset record "${synthetic[@]}" --at-step 1900 attention=flex
    bench record_one_matmul --preset record "${synthetic[@]}" --at-step 1900 attention=flex
    ;;
h100)
    bench new_h100_131k --preset h100 "${synthetic[@]}" seq_len=131072 grad_accum=4 max_seq_len=131072
    ;;
layouts)
    bench record_65k --preset record "${synthetic[@]}" --at-step 1900 attention=flex seq_len=65536 batch_ramp=2,4,6
    bench record_131k --preset record "${synthetic[@]}" --at-step 1900 attention=flex seq_len=131072 \
        max_seq_len=131072 batch_ramp=1,2,3
    ;;
compile)
    python benchmarks/compile_probe_gpu.py 16gb --cap 14.5 attention=flex fused_mlp=false \
        > "$out/compile_16gb.txt" 2>&1
    tail -40 "$out/compile_16gb.txt"
    python benchmarks/compile_probe_gpu.py record-24gb --cap 22 attention=flex fused_mlp=false \
        > "$out/compile_record-24gb.txt" 2>&1
    tail -40 "$out/compile_record-24gb.txt"
    ;;
esac
