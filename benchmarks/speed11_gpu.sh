#!/usr/bin/env bash
# Issue 16, session 17 (`seed` at 468,585 tokens/s with FA4, session 17 call 2; the bar is 500k):
#   park:    (carry .whl/cu13a) the first half of the FA4 wheels to /tmp; the next call must follow at once.
#   staging: (one warm H100 after park, carry .whl/fa4 and .devdata/main17, `git archive 3f6e265 src`) the loader's
#            GPU test and FA4's, the host phases of a `seed` step with the batches sent from page-locked staging
#            buffers (no `pin_memory()` per batch), then `seed` before and after.
#   inductor: (one warm H100 after park, carry .whl/fa4) `seed` as it is, then under two inductor settings that retune
#            its elementwise and reduction kernels (220 ms of a step): `max_autotune_pointwise` (times several
#            block configurations per kernel) and `triton.multi_kernel` (a looped and a persistent reduction, the
#            faster picked at run time).
#   inductor2: (the same machine, right after inductor) `seed` again, with `max_autotune_pointwise` again, and with
#            both settings together.
#   small:   (carry .devdata/main17; no FA4) `12gb` (64 micro-batches of 8,192 tokens, whose host work per token is 4×
#            the seed's) with the batches pinned one by one (3f6e265) and from the staging buffers (this tree).
#   confirm: (planned; one warm H100 after park, carry .whl/fa4) `seed` with FA4 as the trainer now compiles it
#            (`autotune_elementwise` through torch.compile's options; calls 6-7 set inductor's global config), and
#            with `autotune_elementwise=false`, twice each.
#   regress: (planned; carry .devdata/s12, `git archive f45c00e src`) `12gb` as on consumer cards (`attention=flex
#            fused_mlp=false`) at session 12's f45c00e (356,635 there, on a four-lane machine) and on this tree; then
#            where a `12gb` step's host time goes on this tree (host_phases_gpu.py).
# Usage (device, repo root): bash benchmarks/speed11_gpu.sh park|staging|inductor|inductor2|small|confirm|regress   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed11
case $stage in
park)
    park_fa4_half
    ;;
staging)
    install_fa4
    timeout 200 python -m pytest -q -p no:logging tests/test_shards_and_loader.py tests/test_attention.py > "$out/tests.txt" 2>&1
    grep -E "^E |passed|failed" "$out/tests.txt" | cut -c1-300 | head -8
    python benchmarks/host_phases_gpu.py seed attention=fa4 > "$out/host_phases_seed.txt" 2>&1
    tail -9 "$out/host_phases_seed.txt"
    older main17 seed_before --preset seed "${synthetic[@]}" attention=fa4
    bench seed_staging --preset seed "${synthetic[@]}" attention=fa4
    ;;
inductor)
    install_fa4
    bench seed_main --preset seed "${synthetic[@]}" attention=fa4
    settings="python benchmarks/module_settings.py"; i=torch._inductor.config.
    CAVEGPT="$settings ${i}max_autotune_pointwise=True --" bench seed_autotune_pointwise --preset seed "${synthetic[@]}" attention=fa4
    CAVEGPT="$settings ${i}triton.multi_kernel=1 --" bench seed_multi_kernel --preset seed "${synthetic[@]}" attention=fa4
    ;;
inductor2)
    install_fa4
    settings="python benchmarks/module_settings.py"; i=torch._inductor.config.
    bench seed_main_again --preset seed "${synthetic[@]}" attention=fa4
    CAVEGPT="$settings ${i}max_autotune_pointwise=True --" bench seed_autotune_pointwise_again --preset seed "${synthetic[@]}" attention=fa4
    CAVEGPT="$settings ${i}max_autotune_pointwise=True ${i}triton.multi_kernel=1 --" bench seed_both --preset seed "${synthetic[@]}" attention=fa4
    ;;
small)
    older main17 12gb_before --preset 12gb --synthetic --steps 10 --window 1792
    bench 12gb_staging --preset 12gb --synthetic --steps 10 --window 1792 train.autotune_elementwise=false
    ;;
confirm)
    install_fa4
    for run in 1 2; do
        bench seed_autotune_$run --preset seed "${synthetic[@]}" attention=fa4
        bench seed_plain_$run --preset seed "${synthetic[@]}" attention=fa4 autotune_elementwise=false
    done
    ;;
regress)
    older s12 12gb_f45c00e --preset 12gb "${synthetic[@]}" "${consumer[@]}"
    bench 12gb_main --preset 12gb "${synthetic[@]}" "${consumer[@]}"
    python benchmarks/host_phases_gpu.py 12gb "${consumer[@]}" > "$out/host_phases_12gb.txt" 2>&1
    tail -9 "$out/host_phases_12gb.txt"
    ;;
esac
