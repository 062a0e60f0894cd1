"""`cavegpt` with the options of the head's row kernel on (head_loss_triton.APPROX_TANH, TARGET_BLOCKS_ONLY),
for A/B runs before they are defaults:
    python benchmarks/row_kernel_cli.py [--approx-tanh] [--target-blocks-only] bench|train ...
takes what `cavegpt` takes after its own options."""
import sys

from cavegpt.cli import main
from cavegpt.model import head_loss_triton

OPTIONS = {"--approx-tanh": "APPROX_TANH", "--target-blocks-only": "TARGET_BLOCKS_ONLY"}

while len(sys.argv) > 1 and sys.argv[1] in OPTIONS:
    setattr(head_loss_triton, OPTIONS[sys.argv.pop(1)], True)
sys.exit(main())
