#!/usr/bin/env bash
# Issue 16, next GPU session (one H100, kept warm between the two calls so /tmp carries over):
#   park:  parks the first half of the split FA4 wheel in /tmp (carry .whl/cu13a); profiles a seed step with the
#          fused MLP (Flex): kernel groups and the GPU's idle gaps (benchmarks/profile_step_gpu.py); then the
#          seed recipe's micro-batch A/B: 8 × 65,536 (the h100 preset) vs 4 × 131,072.
#   bars:  installs FA4 (carry .whl/fa4 and .devdata/baseline); the issue's bars, baseline 1393dca (Flex: it has
#          no FA4 path) and this tree (attention=auto, fused MLP) side by side: seed and h100 at window 1792, record
#          at its last stage.
# Usage (device, repo root): bash benchmarks/speed5_gpu.sh park|bars   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed5
bench() {  # code (src or another src folder), log name, bench arguments...
    local code=$1 name=$2; shift 2
    PYTHONPATH="$code${PYTHONPATH#src}" python -m cavegpt bench --synthetic --steps 10 --window 1792 "$@" \
        > "$out/$name.txt" 2>&1
    echo "== $name"; grep -E "^device|^compile|^ *1792 |Error" "$out/$name.txt" || tail -5 "$out/$name.txt"
}
case $stage in
park)
    park_fa4_half
    python benchmarks/profile_step_gpu.py seed attention=flex > "$out/profile_seed.txt" 2>&1
    grep -vE "Warning|warn" "$out/profile_seed.txt" | head -60
    bench src h100_65k --preset h100 attention=flex
    bench src h100_131k --preset h100 attention=flex seq_len=131072 grad_accum=4 max_seq_len=131072
    ;;
bars)
    install_fa4
    bench .devdata/baseline/src baseline_seed --preset seed
    bench .devdata/baseline/src baseline_record --preset record --at-step 1900
    bench src new_seed --preset seed
    bench src new_h100 --preset h100
    bench src new_record --preset record --at-step 1900
    ;;
esac
