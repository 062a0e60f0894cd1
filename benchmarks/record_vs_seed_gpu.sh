#!/usr/bin/env bash
# Issue 11: `seed` against `record` on textmix, the same wall-clock budget each (≈ 4.3 min of
# training after compile), one after the other on one GPU, then the report's comparison plot and
# record-24gb's peak memory. Each preset's whole schedule is scaled to the budget (warm-up,
# cooldown and stages as fractions of num_iterations): seed 220 steps × 524,288 tokens; record 405
# steps of the 4 → 8 → 12 micro-batch ramp (135 each). The step counts come from the tokens/s that
# bench measured (docs/BENCHMARKS.md). Takes ≈ 14 min: longer than one device call, so it is
# started detached (setsid) and collected by a second call on the same machine.
# Usage: bash benchmarks/record_vs_seed_gpu.sh OUT_DIR   (writes OUT_DIR/done at the end)
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh" "${1:-}" /tmp/cavegpt-record-vs-seed
textmix=("${textmix_globs[@]}" val_tokens=2097152 save_checkpoint=false log_dir="$out/logs")
git log -1 --format='commit %H' 2>/dev/null | tee -a "$out/gpu.txt"
python -m cavegpt train --preset seed "${textmix[@]}" run_id=seed num_iterations=220 cooldown_iters=80 \
    muon_momentum_warmup=38 val_every=20 > "$out/train_seed.txt" 2>&1
python -m cavegpt train --preset record "${textmix[@]}" run_id=record num_iterations=405 cooldown_iters=223 \
    muon_momentum_warmup=63 val_every=45 > "$out/train_record.txt" 2>&1
python -m cavegpt report "$out/logs/record" --compare "$out/logs/seed" > "$out/report.txt" 2>&1
python -m cavegpt bench --preset record-24gb --steps 3 --window 1792 --at-step 1900 "${textmix_globs[@]}" \
    val_tokens=2097152 > "$out/bench_record24.txt" 2>&1
touch "$out/done"
