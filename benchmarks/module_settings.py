"""`cavegpt` with module-level settings changed first: inductor settings that have no environment variable, or a
kernel's constants before a sweep's pick is written into the code.

Usage (device, repo root): PYTHONPATH=src python benchmarks/module_settings.py MODULE.NAME=VALUE [...] -- CAVEGPT_ARGS
e.g. ``torch._inductor.config.combo_kernels=True -- bench --preset record --synthetic`` or
``cavegpt.model.head_loss_triton.PROGRAMS_PER_SM=2 -- bench ...``; values are Python literals.
"""
import ast
import functools
import importlib
import sys

from cavegpt.cli import main


def owner_of(path: str) -> tuple[object, str]:
    """The object that holds ``path``'s last name: the longest importable module prefix, then attributes
    (``torch._inductor.config.triton.multi_kernel``: the module ``torch._inductor.config``, its ``triton``)."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        return functools.reduce(getattr, parts[cut:-1], module), parts[-1]
    raise ImportError(f"no module in {path!r}")


if __name__ == "__main__":
    split = sys.argv.index("--")
    for setting in sys.argv[1:split]:
        path, value = setting.split("=", 1)
        owner, name = owner_of(path)
        setattr(owner, name, ast.literal_eval(value))
        print(f"setting: {path} = {getattr(owner, name)!r}")
    sys.exit(main(sys.argv[split + 1:]))
