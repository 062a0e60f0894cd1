#!/usr/bin/env bash
# Session 7 on one GPU (issues 16 and 18), in stages of one device call each; Flex attention (FA4 is not
# installed on a fresh machine), the machine kept warm in between.
#   mlp:    where a fresh machine's first compile goes (benchmarks/first_compile_gpu.py, twice, before
#           anything else imports torch); the GPU tests of the fused ReLU² MLP; its microbenchmark
#           (benchmarks/mlp_gpu.py); then seed (window 1792) and record (last stage) with fused_mlp off / on.
#   learn:  300-step seed runs on textmix with fused_mlp off / on (carry .devdata/textmix).
# Usage (device, repo root): bash benchmarks/speed4_gpu.sh STAGE   (figures under $OUT)
set -uo pipefail
stage=$1
if [ "$stage" = mlp ]; then
    mkdir -p "${OUT:-/tmp/cavegpt-speed4}"
    for run in machine-cold machine-warm; do
        python benchmarks/first_compile_gpu.py $run 2>&1 | tail -3 | tee -a "${OUT:-/tmp/cavegpt-speed4}/first_compile.txt"
    done
fi
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed4
case $stage in
mlp)
    python -m pytest -q -p no:cacheprovider tests/test_relu_square.py tests/test_head_loss.py 2>&1 | tail -3 \
        | tee "$out/gpu_tests.txt"
    python benchmarks/mlp_gpu.py > "$out/mlp.txt" 2>&1; tail -14 "$out/mlp.txt"
    for fused in false true; do
        bench seed_fused_mlp_$fused --preset seed --synthetic --steps 10 --window 1792 fused_mlp=$fused
    done
    for fused in false true; do
        bench record_fused_mlp_$fused --preset record --synthetic --steps 10 --window 1792 --at-step 1900 \
            fused_mlp=$fused
    done
    ;;
learn)
    for fused in false true; do
        python -m cavegpt train --preset seed "${textmix_globs[@]}" val_tokens=2097152 save_checkpoint=false \
            num_iterations=300 cooldown_iters=110 val_every=25 log_every=25 log_dir="$out/logs" grad_accum=2 \
            run_id="seed300_fused_mlp_$fused" fused_mlp=$fused > "$out/train_seed300_fused_mlp_$fused.txt" 2>&1
        echo "== fused_mlp=$fused"; grep -E "warm-up|val_loss" "$out/train_seed300_fused_mlp_$fused.txt" | tail -3
    done
    ;;
esac
