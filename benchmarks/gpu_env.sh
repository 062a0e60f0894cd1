# Sourced by the GPU scripts: output folder ($1, else $OUT, else the default given), PYTHONPATH,
# the textmix globs, and what GPU and library versions the figures come from (gpu.txt).
# Usage inside a script: source "$(dirname "$0")/gpu_env.sh" "${1:-}" /tmp/cavegpt-bench
out=${1:-${OUT:-$2}}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
data=${TEXTMIX:-.devdata/textmix}
textmix_globs=(train_glob="$data/textmix_train_*.bin" val_glob="$data/textmix_val_*.bin")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
