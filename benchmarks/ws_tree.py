"""A copy of ``src`` under a folder whose ReLU² kernels may also take benchmarks/mlp_gpu.py's warp-specialized tiles.

Usage (device, repo root): python benchmarks/ws_tree.py FOLDER [WARPS]
FOLDER/src is this tree's src with ``CONFIGS += `` the ``CANDIDATES`` of ``WARPS`` warps (default 8: Triton 3.6
could not build the 4-warp ones on an H100 in session 20, and the autotuner stops on such an error).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from mlp_gpu import CANDIDATES  # noqa: E402


def main() -> None:
    folder, warps = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 8
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree("src", folder / "src")
    kernel = folder / "src/cavegpt/model/epilogue_matmul_triton.py"
    text = kernel.read_text()
    anchor = "\n\n@triton.jit\ndef _tile_origin"
    assert anchor in text
    shapes = [shape for shape in CANDIDATES if shape[3] == warps]
    kernel.write_text(text.replace(anchor, f"\nCONFIGS += [_config(*shape) for shape in {shapes!r}]{anchor}", 1))
    print(f"{folder}/src: CONFIGS + {len(shapes)} warp-specialized tiles of {warps} warps")


if __name__ == "__main__":
    main()
