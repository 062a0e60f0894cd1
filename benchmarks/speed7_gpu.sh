#!/usr/bin/env bash
# Issues 16 and 18, the GPU work planned in sessions 9-10, in stages of one device call each.
# On one H100 kept warm between calls (so /tmp, the FA4 install and the inductor cache carry over), in this order:
#   layouts: parks the first half of the split FA4 wheel (carry .whl/cu13a); record at its last stage in
#            micro-batches of 32,768 (its own), 65,536 and 131,072 tokens (the same tokens per step), Flex.
#   profile: installs FA4 (carry .whl/fa4); where a seed step goes with FA4 (session 8's profile was Flex);
#            h100 and record (their 131,072-token micro-batches since session 11) with FA4, record at its last stage.
#   levers:  seed (FA4 when installed) through benchmarks/step_lever_gpu.py, in one process each: the trainer as
#            it is (one _foreach_add_ of the gradients per micro-batch), autograd's own adds (the trainer before
#            session 10), the trainer again, and compiled autograd (the adds fused into the compiled backward).
#            Needs nothing carried; about 320 s.
#   learn:   (carry .devdata/textmix) 150-step seed runs at 131,072 tokens per step on textmix, as 4 × 32,768
#            and as 1 × 131,072 (the learning check the 131,072 layout needs before the h100 preset takes it).
# On a 2-GPU machine (session 10, as run there):
#   pair:    two lanes at once: GPU 0 the compile probes (benchmarks/compile_probe_gpu.py, empty caches) of 16gb
#            then record-24gb, with the consumer cards' settings (Flex, plain MLP); GPU 1 seed (Flex) plain,
#            then with inductor's coordinate-descent tuning (TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1) given 420 s.
#   mask:    the block mask built without sorting (the slow Triton builds `pair` found): its GPU test first,
#            then cold runs on empty caches of their own: GPU 1 16gb on the code before (.devdata/premask,
#            `git archive 167e598 src`) then on this tree (tokens/s and compile, one GPU); GPU 0 record-24gb at
#            its last stage on this tree.
#   big:     (2 GPUs) the 131,072-token layouts after `learn`: h100 as 8 × 65,536 and as 4 × 131,072 on GPU 0,
#            record at 131,072 at its first and middle stages on GPU 1; Flex.
# Usage (device, repo root): bash benchmarks/speed7_gpu.sh layouts|profile|levers|learn|pair|mask|big   (figures under $OUT)
set -uo pipefail
stage=$1
source "$(dirname "$0")/gpu_env.sh" "" /tmp/cavegpt-speed7
probe() {  # log name, time limit in s, compile_probe_gpu.py arguments: its output in $out/NAME.txt, the summary
    local name=$1 limit=$2; shift 2  # printed (a probe stopped by its limit still reports what it built by then)
    timeout "$limit" python benchmarks/compile_probe_gpu.py "$@" > "$out/$name.txt" 2>&1
    echo "== $name"; tail -30 "$out/$name.txt"
}
case $stage in
layouts)
    park_fa4_half
    bench record_32k --preset record "${synthetic[@]}" --at-step 1900 attention=flex
    bench record_65k --preset record "${synthetic[@]}" --at-step 1900 attention=flex seq_len=65536 batch_ramp=2,4,6
    bench record_131k --preset record "${synthetic[@]}" --at-step 1900 attention=flex seq_len=131072 \
        max_seq_len=131072 batch_ramp=1,2,3
    ;;
pair)
    (CUDA_VISIBLE_DEVICES=0 probe compile_16gb 260 16gb --cap 14.5 "${consumer[@]}"
     CUDA_VISIBLE_DEVICES=0 probe compile_record-24gb 280 record-24gb --cap 22 "${consumer[@]}") &
    CUDA_VISIBLE_DEVICES=1 bench seed_flex --preset seed "${synthetic[@]}" attention=flex
    CUDA_VISIBLE_DEVICES=1 TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 timeout 420 \
        bash -c "$(declare -f bench); out=$out; bench seed_flex_coordinate --preset seed ${synthetic[*]} attention=flex"
    wait
    ;;
mask)
    python -m pytest -q tests/test_masks.py -k gpu > "$out/gpu_test.txt" 2>&1
    tail -3 "$out/gpu_test.txt"; grep -qE "^[0-9]+ passed" "$out/gpu_test.txt" || exit 1  # (a failure leads the line)
    empty() { rm -rf "/tmp/cache-$1"; echo TORCHINDUCTOR_CACHE_DIR=/tmp/cache-$1/inductor TRITON_CACHE_DIR=/tmp/cache-$1/triton; }
    (export CUDA_VISIBLE_DEVICES=0 $(empty r24)
     bench record-24gb_new --preset record-24gb "${synthetic[@]}" --at-step 1900 --memory-limit-gib 22 "${consumer[@]}") &
    export CUDA_VISIBLE_DEVICES=1
    (export $(empty old); older premask 16gb_old --preset 16gb "${synthetic[@]}" --memory-limit-gib 14.5 "${consumer[@]}")
    (export $(empty new); bench 16gb_new --preset 16gb "${synthetic[@]}" --memory-limit-gib 14.5 "${consumer[@]}")
    wait
    ;;
profile)
    install_fa4
    python benchmarks/profile_step_gpu.py seed > "$out/profile_seed_fa4.txt" 2>&1
    grep -vE "Warning|warn" "$out/profile_seed_fa4.txt" | head -36
    bench h100_fa4 --preset h100 "${synthetic[@]}"
    bench record_fa4 --preset record "${synthetic[@]}" --at-step 1900
    ;;
levers)
    run=0
    for lever in off autograd_adds off compiled_autograd; do  # off twice: the harness's own spread
        log="$out/step_lever_$((++run))_$lever.txt"
        timeout 200 python benchmarks/step_lever_gpu.py $lever seed > "$log" 2>&1
        grep -E "^$lever:|Error" "$log" || tail -5 "$log"
    done
    ;;
learn)
    for layout in "32768 4" "131072 1"; do
        set -- $layout
        python -m cavegpt train --preset seed "${textmix_globs[@]}" val_tokens=2097152 save_checkpoint=false \
            num_iterations=150 cooldown_iters=55 val_every=25 log_every=25 seq_len=$1 grad_accum=$2 \
            max_seq_len=$1 log_dir=/tmp/cavegpt-speed7-runs run_id="seed150_$1" > "$out/train_seed150_$1.txt" 2>&1
        echo "== $2 x $1"; grep -E "warm-up|val_loss" "$out/train_seed150_$1.txt" | tail -3
    done
    ;;
big)  # (2 GPUs) the 131,072-token layouts the learn check cleared, on Flex: GPU 0 h100 as 8 × 65,536 then
    # 4 × 131,072 (one GPU, one after the other); GPU 1 record at 131,072 at its first and middle stages
    big131=(seq_len=131072 max_seq_len=131072)
    (export CUDA_VISIBLE_DEVICES=1
     bench record_131k_stage1 --preset record "${synthetic[@]}" --at-step 0 attention=flex "${big131[@]}" batch_ramp=1,2,3
     bench record_131k_stage2 --preset record "${synthetic[@]}" --at-step 1000 attention=flex "${big131[@]}" \
        batch_ramp=1,2,3) &
    export CUDA_VISIBLE_DEVICES=0
    bench h100_65k --preset h100 "${synthetic[@]}" attention=flex
    bench h100_131k --preset h100 "${synthetic[@]}" attention=flex "${big131[@]}" grad_accum=4
    wait
    ;;
esac
