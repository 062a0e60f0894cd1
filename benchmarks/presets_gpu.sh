#!/usr/bin/env bash
# Issue 18: every GPU preset in one device call: peak memory under its card's cap, tokens/s at the final
# window (record presets at their last stage), compile + warm-up on empty caches (cold) and again on the
# caches that run left (warm). The presets are dealt round-robin over the GPUs, one lane per GPU, so a
# 2-GPU machine finishes in one 600 s call; a run cut by its time limit, or not started for want of time
# before the call's end, shows as '-' in the table. Consumer-card presets run Flex and the plain MLP, as on
# those cards; h100, seed and record run whatever attention=auto and fused_mlp pick there. Each lane compiles on
# CPU cores of its own (CPUS_PER_LANE, default the host's cores split evenly: 16 on a 2 × H100 host; 8 is closer
# to a desktop's), so the two lanes' compiles do not share cores.
# Usage (device, repo root): [CPUS_PER_LANE=N] [CALL_SECONDS=S] bash benchmarks/presets_gpu.sh [PRESET...]
# (every preset unless named; table printed last; $OUT gets it, gpu.txt and the runs' logs as one logs.tar.gz,
# as a call brings back at most 8 files)
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh" /tmp/cavegpt-presets
# preset, cap in GiB (0: none), extra arguments
consumer="attention=flex fused_mlp=false"
# (on 2 GPUs a lane's four presets took over 520 s, and the last two warm runs did not fit a 550 s call; on 4 GPUs
# a lane has two, 83-100 s cold and 25-29 s warm each: 2026-11-26, session 11, docs/BENCHMARKS.md)
presets=("record 0 --at-step 1900" "seed 0" "h100 0" "4090 22 $consumer" "record-16gb 14.5 --at-step 1900 $consumer"
         "12gb 10.5 $consumer" "16gb 14.5 $consumer" "record-24gb 22 --at-step 1900 $consumer")
if [ $# -gt 0 ]; then  # only the presets named, in the order above
    named=(); for entry in "${presets[@]}"; do [[ " $* " == *" ${entry%% *} "* ]] && named+=("$entry"); done
    presets=("${named[@]}")
fi
lanes=$(nvidia-smi -L | wc -l)
allowed=($(python -c "import os; print(*sorted(os.sched_getaffinity(0)))"))  # the CPUs this call may use
per_lane=${CPUS_PER_LANE:-$((${#allowed[@]} / lanes))}
rm -rf /tmp/cache  # every cold run starts on empty caches
# A fresh machine's own start-up (imports, CUDA, inductor, a first compile) is 13-15 s
# (benchmarks/first_compile_gpu.py, docs/BENCHMARKS.md session 7), so the 187-191 s first compiles of
# session 5 lie in the presets or their caps: the cold runs log every recompile and its reason.
seconds_for() {  # a run's limit: its own, or what is left of the call (CALL_SECONDS, 570 of a 600 s call, less
    local left=$((${CALL_SECONDS:-570} - SECONDS))  # the table and the tar)
    echo $((left < $1 ? left : $1))
}
lane() {  # GPU index: its share of the presets, each cold then warm, on CPU cores of its own
    local gpu=$1 i cores
    cores=$(IFS=,; echo "${allowed[*]:$((gpu * per_lane)):$per_lane}")
    for ((i = gpu; i < ${#presets[@]}; i += lanes)); do
        set -- ${presets[$i]}
        local name=$1 cap=$2; shift 2
        local limit=(); [ "$cap" != 0 ] && limit=(--memory-limit-gib "$cap")
        for run in cold warm; do
            local logs=() limit_s; limit_s=$(seconds_for 90)  # (an empty TORCH_LOGS stops torch at import)
            [ $run = cold ] && logs=(TORCH_LOGS=recompiles) limit_s=$(seconds_for 220)
            [ "$limit_s" -lt 45 ] && return
            CUDA_VISIBLE_DEVICES=$gpu timeout "$limit_s" taskset -c "$cores" env "${logs[@]}" \
                TORCHINDUCTOR_COMPILE_THREADS=$per_lane \
                TORCHINDUCTOR_CACHE_DIR=/tmp/cache/$name/inductor TRITON_CACHE_DIR=/tmp/cache/$name/triton \
                python -m cavegpt bench --preset "$name" --synthetic --steps 3 --window 1792 "${limit[@]}" "$@" \
                > "$out/${name}_$run.txt" 2>&1
        done
    done
}
for ((gpu = 0; gpu < lanes; gpu++)); do lane "$gpu" & done
wait
{
    echo "CPU cores per lane: $per_lane"
    printf '%-12s %6s %10s %9s %9s %9s\n' preset cap tokens/s "peak GiB" "cold s" "warm s"
    for entry in "${presets[@]}"; do
        set -- $entry
        read -r tps peak <<< "$(grep -E "^ *1792 " "$out/$1_cold.txt" 2>/dev/null | awk '{print $4, $7}')"
        cold=$(grep -oP "compile \+ warm-up: \K[0-9.]+" "$out/$1_cold.txt" 2>/dev/null)
        warm=$(grep -oP "compile \+ warm-up: \K[0-9.]+" "$out/$1_warm.txt" 2>/dev/null)
        printf '%-12s %6s %10s %9s %9s %9s\n' "$1" "$2" "${tps:--}" "${peak:--}" "${cold:--}" "${warm:--}"
    done
} | tee "$out/presets.txt"
back=${OUT:-/tmp}
mkdir -p "$back" && cp "$out/presets.txt" "$out/gpu.txt" "$back/" && tar czf "$back/logs.tar.gz" -C "$out" .
