#!/usr/bin/env bash
# Session 5 on the GPU (issues 16 and 18), in stages of one device call each; the machine stays warm in
# between, so /tmp, the FA4 install and the inductor cache carry over. Earlier stages of this script
# (base, seed, record, learn: bf16 residual and FP8 head, both dropped) are at commit 6cf8ce0.
#   fit:    parks the first half of the split FA4 wheel in /tmp; each memory preset under its card's cap,
#           attention=flex as on those cards, each with empty compile caches (cold compile time).
#   h100:   installs FA4; seed at 16 × 32,768 vs 8 × 65,536 (window 1792), then seed again (meant to be on
#           a warm cache; it ran on empty caches of its own: a repeat).
#   learn:  300-step seed runs on textmix: 2 × 32,768 vs 1 × 65,536 tokens per step.
#   compile: parks the FA4 half again (a new machine); record-24gb cold then warm, 4090 cold (Flex, 22 GiB cap).
#   (a last call compared torch.compile's default mode with max-autotune-no-cudagraphs through a setting
#   that was removed after it lost; its command is in docs/BENCHMARKS.md.)
# Usage (device, repo root): bash benchmarks/speed3_gpu.sh STAGE   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed3
cold() {  # log name, bench arguments...: with compile caches of its own, empty at the start
    TORCHINDUCTOR_CACHE_DIR=/tmp/cold/$1/inductor TRITON_CACHE_DIR=/tmp/cold/$1/triton bench "$@"
}
warm() {  # cache of run, log name, bench arguments...: on the caches that run left behind
    local cache=$1; shift
    TORCHINDUCTOR_CACHE_DIR=/tmp/cold/$cache/inductor TRITON_CACHE_DIR=/tmp/cold/$cache/triton bench "$@"
}
last=(--synthetic --steps 5 --window 1792 --at-step 1900)
case $stage in
compile)
    park_fa4_half
    cold record-24gb --preset record-24gb "${last[@]}" --memory-limit-gib 22 attention=flex
    warm record-24gb record-24gb_warm --preset record-24gb "${last[@]}" --memory-limit-gib 22 attention=flex
    cold 4090 --preset 4090 "${last[@]}" --memory-limit-gib 22 attention=flex
    ;;
fit)
    park_fa4_half
    cold 16gb --preset 16gb "${last[@]}" --memory-limit-gib 14.5 attention=flex
    cold record-16gb --preset record-16gb "${last[@]}" --memory-limit-gib 14.5 attention=flex
    cold 12gb --preset 12gb "${last[@]}" --memory-limit-gib 10.5 attention=flex
    cold record-24gb --preset record-24gb "${last[@]}" --memory-limit-gib 22 attention=flex
    ;;
h100)
    install_fa4
    cold seed_32k --preset seed --synthetic --steps 10 --window 1792
    cold seed_65k --preset seed --synthetic --steps 10 --window 1792 seq_len=65536 grad_accum=8
    cold seed_32k_warm --preset seed --synthetic --steps 10 --window 1792
    ;;
learn)
    for layout in "32k seq_len=32768 grad_accum=2" "65k seq_len=65536 grad_accum=1"; do
        set -- $layout
        python -m cavegpt train --preset seed "${textmix_globs[@]}" val_tokens=2097152 save_checkpoint=false \
            num_iterations=300 cooldown_iters=110 val_every=25 log_every=25 log_dir="$out/logs" run_id="seed300_$1" \
            "${@:2}" > "$out/train_seed300_$1.txt" 2>&1
        echo "== $1"; grep -E "warm-up|val_loss" "$out/train_seed300_$1.txt" | tail -3
    done
    ;;
esac
