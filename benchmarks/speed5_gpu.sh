#!/usr/bin/env bash
# Issue 16, next GPU session (one H100, kept warm between the two calls so /tmp carries over):
#   park:  parks the first half of the split FA4 wheel in /tmp (carry .whl/cu13a); profiles a seed step with the
#          fused MLP (Flex): kernel groups and the GPU's idle gaps (benchmarks/profile_step_gpu.py); then the
#          seed recipe's micro-batch A/B: 8 × 65,536 (the h100 preset) vs 4 × 131,072.
#   seed:  installs FA4 (carry .whl/fa4 and .devdata/baseline); the issue's seed bar, baseline 1393dca (Flex: it
#          has no FA4 path) and this tree (attention=auto, fused MLP) side by side: seed and h100 at window 1792.
#   record: the same for record at its last stage (FA4 still in /tmp from the seed call; carry .devdata/baseline).
#   levers: Flex, nothing carried: inductor's CUDA graphs over forward and backward off / on
#          (benchmarks/step_lever_gpu.py), seed plain and with inductor's coordinate-descent tuning of its
#          kernels' block sizes, and where a record step (last stage) goes.
# Usage (device, repo root): bash benchmarks/speed5_gpu.sh park|seed|record|levers   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed5
case $stage in
park)
    park_fa4_half
    python benchmarks/profile_step_gpu.py seed attention=flex > "$out/profile_seed.txt" 2>&1
    grep -vE "Warning|warn" "$out/profile_seed.txt" | head -60
    bench h100_65k --preset h100 "${synthetic[@]}" attention=flex
    bench h100_131k --preset h100 "${synthetic[@]}" attention=flex seq_len=131072 grad_accum=4 max_seq_len=131072
    ;;
seed)
    install_fa4
    older baseline baseline_seed --preset seed "${synthetic[@]}"
    bench new_seed --preset seed "${synthetic[@]}"
    bench new_h100 --preset h100 "${synthetic[@]}"
    ;;
record)
    older baseline baseline_record --preset record "${synthetic[@]}" --at-step 1900
    bench new_record --preset record "${synthetic[@]}" --at-step 1900
    ;;
levers)
    for lever in off cudagraphs; do
        python benchmarks/step_lever_gpu.py $lever seed attention=flex > "$out/cudagraphs_$lever.txt" 2>&1
        grep -E "^$lever:|Error" "$out/cudagraphs_$lever.txt" || tail -5 "$out/cudagraphs_$lever.txt"
    done
    bench seed_flex --preset seed "${synthetic[@]}" attention=flex
    python benchmarks/profile_step_gpu.py record attention=flex > "$out/profile_record.txt" 2>&1
    grep -vE "Warning|warn" "$out/profile_record.txt" | head -34
    TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 timeout 240 \
        bash -c "$(declare -f bench); out=$out; bench seed_flex_coordinate --preset seed ${synthetic[*]} attention=flex"
    ;;
esac
