#!/usr/bin/env bash
# Issue 6's GPU check: the full model trained 100 steps straight vs 50 steps, stopped, resumed.
# Usage: bash benchmarks/resume_gpu.sh [OUT_DIR]   (textmix in .devdata/textmix or $TEXTMIX)
set -uo pipefail
out=${1:-${OUT:-/tmp/cavegpt-resume}}
logs=/tmp/cavegpt-resume-logs
rm -rf "$logs"; mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
data=${TEXTMIX:-.devdata/textmix}
run=(--preset seed train_glob="$data/textmix_train_*.bin" val_glob="$data/textmix_val_*.bin" val_tokens=2097152
     grad_accum=2 num_iterations=100 cooldown_iters=36 val_every=50 checkpoint_every=50 save_checkpoint=false
     log_dir="$logs")
python -m cavegpt train "${run[@]}" run_id=straight 2>&1 | grep -v train_loss
mkdir -p "$logs/resumed" && cp "$logs/straight/checkpoint_step000050.pt" "$logs/resumed/"
python -m cavegpt resume "$logs/resumed" 2>&1 | grep -v train_loss
python -m cavegpt train "${run[@]}" run_id=straight2 checkpoint_every=0 2>&1 | grep -v train_loss  # noise floor
for r in straight resumed straight2; do cp "$logs/$r/log.txt" "$out/$r.log.txt"; cp "$logs/$r/metrics.jsonl" "$out/$r.metrics.jsonl"; done
python - "$logs" <<'PY'
import json, sys
def load(run):
    rows = [json.loads(l) for l in open(f"{sys.argv[1]}/{run}/metrics.jsonl")]
    return ({r["step"]: r["train_loss"] for r in rows if r["kind"] == "train"},
            {r["step"]: r["val_loss"] for r in rows if r["kind"] == "val"})
(a, va), (b, vb), (c, vc) = load("straight"), load("resumed"), load("straight2")
for name, (x, vx) in (("resumed", (b, vb)), ("straight2 (noise floor)", (c, vc))):
    diffs = [abs(a[s] - x[s]) for s in range(51, 101)]
    print(f"{name}: train loss steps 51-100 max |diff| {max(diffs):.5f} mean {sum(diffs)/len(diffs):.5f}; "
          f"val@100 {vx[100]:.4f} vs straight {va[100]:.4f} (|diff| {abs(va[100]-vx[100]):.4f})")
for s in (51, 60, 75, 90, 100):
    print(f"  step {s}: straight {a[s]:.4f} resumed {b[s]:.4f} straight2 {c[s]:.4f}")
PY
