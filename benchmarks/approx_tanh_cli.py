"""`cavegpt` with the head's row kernel on PTX's approximate tanh (head_loss_triton.APPROX_TANH), for A/B runs
before it is a default: `python benchmarks/approx_tanh_cli.py bench|train ...` takes what `cavegpt` takes."""
import sys

from cavegpt.cli import main
from cavegpt.model import head_loss_triton

head_loss_triton.APPROX_TANH = True
sys.exit(main())
