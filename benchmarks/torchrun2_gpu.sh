#!/usr/bin/env bash
# Issue 19 on a 2-GPU machine (nvidia-h100-x2), Flex attention (FA4 is not installed there), in stages of
# one device call each; the machine stays warm in between, so the inductor cache carries over.
#   exits:   the command that hung once, ten times in a row: each run's exit code and time. Run it after
#            `scaling` on the same warm machine: on a warm cache a run takes ≈ 40 s, cold ≈ 130 s.
#            Reads textmix (carry .devdata/textmix).
#   scaling WHO...: record at stage 1 (window 128, step 0) and its last stage (window 1792, step 1900), and
#            seed, at N=1 then N=2, for each WHO: `new` (this tree) or the name of a folder under .devdata
#            holding an older src/ (`mkdir -p .devdata/NAME && git archive REV src | tar -x -C .devdata/NAME`;
#            `baseline` = 1393dca, the code of the issue's table).
#   checkpoint: the sharded optimizer state saved over NCCL (it goes to rank 0 alone): record for 12 steps at
#            N=2 with a checkpoint at step 6, that checkpoint resumed by one process; steps 7-12 of both runs
#            printed side by side. Reads textmix (carry .devdata/textmix).
# Usage (device, repo root): bash benchmarks/torchrun2_gpu.sh exits | scaling WHO... | checkpoint   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-torchrun2
run2() { python -m torch.distributed.run --standalone --nproc_per_node=2 -m cavegpt bench "$@"; }
case $stage in
exits)
    for i in $(seq 1 10); do
        start=$(date +%s%N)
        timeout 300 python -m torch.distributed.run --standalone --nproc_per_node=2 -m cavegpt bench \
            --preset record --steps 10 --window 128 --at-step 0 "${textmix_globs[@]}" > "$out/exit_$i.txt" 2>&1
        rc=$?
        echo "run $i: rc $rc, $(( ($(date +%s%N) - start) / 1000000 )) ms" | tee -a "$out/exits.txt"
    done
    ;;
scaling)  # each WHO in turn, ≈ 4-8 min each; the runs' own outputs come back as scaling_runs.tar.gz
    shift
    for who in "$@"; do
        path=src; [ "$who" = new ] || path=.devdata/$who/src
        for args in "record --window 128 --at-step 0" "record --window 1792 --at-step 1900" "seed --window 1792"; do
            set -- $args
            name="${who}_$1_w$3"
            start=$(date +%s)
            PYTHONPATH=$path python -m cavegpt bench --preset $args --synthetic --steps 10 > "$out/${name}_n1.txt" 2>&1
            middle=$(date +%s)
            PYTHONPATH=$path run2 --preset $args --synthetic --steps 10 > "$out/${name}_n2.txt" 2>&1
            echo "== $name (N=1 $((middle - start)) s, N=2 $(($(date +%s) - middle)) s)"
            grep -hE "^ *(128|1792) " "$out/${name}_n1.txt" "$out/${name}_n2.txt"
        done
    done
    (cd "$out" && tar -czf scaling_runs.tar.gz ./*_n[12].txt && rm ./*_n[12].txt)  # $OUT returns 8 files at most
    ;;
checkpoint)
    runs=/tmp/cavegpt-checkpoint; rm -rf "$runs"
    python -m torch.distributed.run --standalone --nproc_per_node=2 -m cavegpt train --preset record \
        "${textmix_globs[@]}" val_tokens=1048576 num_iterations=12 cooldown_iters=4 val_every=6 log_every=1 \
        checkpoint_every=6 log_dir="$runs" run_id=n2 > "$out/checkpoint_n2.txt" 2>&1
    echo "N=2 run: rc $?"; cp "$runs/n2/log.txt" "$out/checkpoint_n2_log.txt"
    rm -f "$runs"/n2/checkpoint_step000012_*.pt
    python -m cavegpt resume "$runs/n2" > "$out/checkpoint_resume.txt" 2>&1
    echo "resumed by one process: rc $?"
    cp "$runs/n2/log.txt" "$out/checkpoint_resumed_log.txt"  # the N=2 run's lines, then the resumed run's
    grep -E "^step:([7-9]|1[0-2])/|resumed" "$out/checkpoint_resumed_log.txt"
    ;;
esac
