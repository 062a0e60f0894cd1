#!/usr/bin/env bash
# Issue 16, session 25 (`seed` at 494,730–506,724 tokens/s on two H100s with quack's GEMMs; the bar is 500k):
#   head: (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4 and .devdata/s25start, made with
#         `git archive e2def36 src | tar -x -C .devdata/s25start`) the head's soft cap and softmax terms in the epilogue
#         of quack's product (cavegpt.model.head_loss_quack): the GPU tests of the head and the MLP (the MLP's quack
#         backward with the approximate square root has not run them yet), the head alone against the row kernel
#         (benchmarks/head_loss_gpu.py --quack), then `seed` on this tree and on e2def36.
#   ab: (the same warm machine, right after head) `seed` on e2def36 and this tree again, then `record` at its last
#         stage on both (its peak too, owed since f789d9c).
#   epilogue: (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4) where the head's epilogue product loses its
#         time (5.62 ms against 3.99 for cuBLAS's bare product in the head stage): benchmarks/head_epilogue_gpu.py.
#   x4head: (four warm H100s after `speed16_gpu.sh park`; carry .whl/fa4 and .devdata/s25start) the epilogue with
#         tanh.approx, all at once: GPU 0 the GPU tests of the head and the MLP, then the head alone against the row
#         kernel; GPU 1 benchmarks/head_epilogue_gpu.py; GPU 2 `seed` on this tree; GPU 3 `seed` on e2def36.
#   x4learn: (the same warm machine, right after x4head; carry .devdata/textmix and .devdata/s25start) the learning
#         check, 300 `seed` steps on textmix at init seeds 0 and 1, this tree against e2def36 (speed21_gpu.sh learn),
#         then `seed` on this tree (GPUs 1 and 3) and on e2def36 (GPUs 0 and 2), all at once: each GPU also ran the
#         other tree in x4head or here.
#   x4scale: (the same warm machine, right after x4learn) at once: `seed` under torchrun at N=2 on GPUs 0 and 1, at
#         N=1 on GPU 2, and `record` at its last stage on GPU 3 (run in session 25 as the same command given inline).
#   final: (one warm H100 after `speed16_gpu.sh park`; carry .whl/fa4 and .devdata/s25start) where a `seed` step goes
#         now (benchmarks/profile_step_gpu.py), then `seed` on e2def36 / this tree / e2def36 / this tree.
# Usage (device, repo root): bash benchmarks/speed25_gpu.sh head|ab|epilogue|x4head|x4learn|x4scale|final   (figures in $OUT)
set -uo pipefail
stage=$1; shift
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed25
case $stage in
head)
    install_fa4
    gpu_tests 300 tests/test_head_loss.py tests/test_relu_square.py -k "gpu"
    timeout 240 python benchmarks/head_loss_gpu.py --quack > "$out/head_loss.txt" 2>&1
    sed -n '/^head |/,$p' "$out/head_loss.txt"; grep -E "Error|error:" "$out/head_loss.txt" | head -5
    bench seed_after --preset seed "${synthetic[@]}" attention=fa4
    older s25start seed_before --preset seed "${synthetic[@]}" attention=fa4
    ;;
ab)
    [ -d /tmp/fa4/site-packages/flash_attn ] || { echo "FA4 not installed: run the head stage first"; exit 1; }
    older s25start seed_before_again --preset seed "${synthetic[@]}" attention=fa4
    bench seed_after_again --preset seed "${synthetic[@]}" attention=fa4
    bench record_after --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    older s25start record_before --preset record "${synthetic[@]}" --at-step 1900 attention=fa4
    ;;
epilogue)
    install_fa4
    timeout 500 python benchmarks/head_epilogue_gpu.py > "$out/head_epilogue.txt" 2>&1
    sed -n '/^product |/,$p' "$out/head_epilogue.txt"; grep -E "Error|error:" "$out/head_epilogue.txt" | sort | uniq -c | head -5
    ;;
x4head)
    install_fa4
    (export CUDA_VISIBLE_DEVICES=0
     gpu_tests 300 tests/test_head_loss.py tests/test_relu_square.py -k "gpu"
     timeout 240 python benchmarks/head_loss_gpu.py --quack > "$out/head_loss.txt" 2>&1) > "$out/gpu0.txt" 2>&1 &
    CUDA_VISIBLE_DEVICES=1 timeout 400 python benchmarks/head_epilogue_gpu.py > "$out/head_epilogue.txt" 2>&1 &
    (export CUDA_VISIBLE_DEVICES=2; bench seed_after --preset seed "${synthetic[@]}" attention=fa4) > "$out/gpu2.txt" 2>&1 &
    (export CUDA_VISIBLE_DEVICES=3; older s25start seed_before --preset seed "${synthetic[@]}" attention=fa4) \
        > "$out/gpu3.txt" 2>&1 &
    wait
    cat "$out/gpu0.txt"; sed -n '/^head |/,$p' "$out/head_loss.txt"; sed -n '/^product |/,$p' "$out/head_epilogue.txt"
    cat "$out/gpu2.txt" "$out/gpu3.txt"
    grep -E "Error|error:" "$out/head_loss.txt" "$out/head_epilogue.txt" | sort | uniq -c | head -5
    ;;
x4learn)
    [ -d /tmp/fa4/site-packages/flash_attn ] || { echo "FA4 not installed: run the x4head stage first"; exit 1; }
    SEEDS="0 1" BEFORE=s25start bash benchmarks/speed21_gpu.sh learn
    for gpu in 0 1 2 3; do
        if ((gpu % 2 == 1)); then
            (export CUDA_VISIBLE_DEVICES=$gpu; bench "seed_after_gpu$gpu" --preset seed "${synthetic[@]}" attention=fa4)
        else
            (export CUDA_VISIBLE_DEVICES=$gpu
             older s25start "seed_before_gpu$gpu" --preset seed "${synthetic[@]}" attention=fa4)
        fi > "$out/bench_gpu$gpu.txt" 2>&1 &
    done
    wait
    cat "$out"/bench_gpu*.txt
    ;;
x4scale)
    [ -d /tmp/fa4/site-packages/flash_attn ] || { echo "FA4 not installed: run the x4head stage first"; exit 3; }
    (export CUDA_VISIBLE_DEVICES=0,1
     CAVEGPT="python -m torch.distributed.run --standalone --nproc_per_node=2 -m cavegpt" \
         bench seed_n2 --preset seed "${synthetic[@]}" attention=fa4) > "$out/g01.txt" 2>&1 &
    (export CUDA_VISIBLE_DEVICES=2; bench seed_n1 --preset seed "${synthetic[@]}" attention=fa4) > "$out/g2.txt" 2>&1 &
    (export CUDA_VISIBLE_DEVICES=3; bench record_after --preset record "${synthetic[@]}" --at-step 1900 attention=fa4) \
        > "$out/g3.txt" 2>&1 &
    wait
    cat "$out/g01.txt" "$out/g2.txt" "$out/g3.txt"
    ;;
final)
    install_fa4
    timeout 240 python benchmarks/profile_step_gpu.py seed attention=fa4 > "$out/profile_seed.txt" 2>&1
    head -32 "$out/profile_seed.txt" | cut -c1-150; grep -E "^GPU idle|Error" "$out/profile_seed.txt"
    for run in 1 2; do
        older s25start "seed_before_$run" --preset seed "${synthetic[@]}" attention=fa4
        bench "seed_after_$run" --preset seed "${synthetic[@]}" attention=fa4
    done
    ;;
esac
