"""`cavegpt` under inductor settings that have no environment variable (issue 16's elementwise kernels).

Usage (device, repo root): PYTHONPATH=src python benchmarks/inductor_config_gpu.py SETTING=VALUE [...] -- CAVEGPT_ARGS
e.g. ``combo_kernels=True -- bench --preset record --synthetic``; values are Python literals.
"""
import ast
import sys

import torch._inductor.config as inductor_config

from cavegpt.cli import main

if __name__ == "__main__":
    split = sys.argv.index("--")
    for setting in sys.argv[1:split]:
        name, value = setting.split("=", 1)
        inductor_config.__setattr__(name, ast.literal_eval(value))
        print(f"inductor config: {name} = {getattr(inductor_config, name)!r}")
    sys.exit(main(sys.argv[split + 1:]))
