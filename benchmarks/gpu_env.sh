# Sourced by the GPU scripts: output folder ($1, else $OUT, else the default given), PYTHONPATH,
# the textmix globs, the synthetic bench's arguments and the consumer cards' settings, what GPU and library versions
# the figures come from (gpu.txt), the FA4 wheel steps, `gpu_tests` (pytest on test files, the failures and summary
# printed), and `bench` / `older` (one `cavegpt bench`, on this tree or an older one).
# Usage inside a script: source "$(dirname "$0")/gpu_env.sh" "${1:-}" /tmp/cavegpt-bench
out=${1:-${OUT:-$2}}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
data=${TEXTMIX:-.devdata/textmix}
textmix_globs=(train_glob="$data/textmix_train_*.bin" val_glob="$data/textmix_val_*.bin")
synthetic=(--synthetic --steps 10 --window 1792)  # `cavegpt bench` on generated documents, at the final window
consumer=(attention=flex fused_mlp=false)  # the settings consumer cards run with (no FA4, no sm_90 ReLU² kernels)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
# FlashAttention-4 as wheels (issue 16): the split -libs-cu13 wheel travels in two calls on one warm machine.
# a path with "site-packages" in it, as a normal install has: quack (FA4's GEMM library) fingerprints its epilogues
# by source and treats only code under site-packages as installed, else it walks into cutlass's globals and fails
site=/tmp/fa4/site-packages
fa4_path="$site:$site/nvidia_cutlass_dsl/dsl_packages"  # what the cutlass wheel's .pth adds, which --target skips
[ -d "$site/flash_attn" ] && export PYTHONPATH="src:$fa4_path"
park_fa4_half() {  # first call: carry .whl/cu13a, park it in /tmp
    mkdir -p /tmp/fa4parts && cp .whl/cu13a/* /tmp/fa4parts/
}
install_fa4() {  # a later call on the same machine: carry .whl/fa4; installs into $site and puts it on PYTHONPATH
    local cu13=/tmp/nvidia_cutlass_dsl_libs_cu13-4.8.1-cp312-cp312-manylinux_2_28_x86_64.whl
    cat /tmp/fa4parts/cu13.part.aa .whl/fa4/cu13.part.ab > "$cu13"
    python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/fa4/*.whl "$cu13" \
        2>&1 | tail -3
    export PYTHONPATH="src:$fa4_path"
}
gpu_tests() {  # seconds, test files...: pytest (at most that long) into $out/tests.txt; failures, summary printed
    local seconds=$1; shift
    timeout "$seconds" python -m pytest -q -p no:logging "$@" > "$out/tests.txt" 2>&1
    grep -E "^E |passed|failed" "$out/tests.txt" | cut -c1-300 | head -8
}
bench() {  # log name, `cavegpt bench` arguments...: its output in $out/NAME.txt, the summary lines printed
    local name=$1; shift  # (CAVEGPT=... names another command line that takes cavegpt's arguments)
    ${CAVEGPT:-python -m cavegpt} bench "$@" > "$out/$name.txt" 2>&1
    local rows="^ *[0-9]+ +[0-9]+ +[0-9.]+ +[0-9,]+ "  # window, steps, s/step, tokens/s, ...
    echo "== $name"; grep -E "^device|^compile|$rows|Error" "$out/$name.txt" || tail -5 "$out/$name.txt"
}
older() {  # folder under .devdata holding an older src/ (`git archive REV src | tar -x -C .devdata/FOLDER`),
    local folder=$1; shift  # then bench's arguments: the same bench on that code
    PYTHONPATH=".devdata/$folder/src${PYTHONPATH#src}" bench "$@"
}
