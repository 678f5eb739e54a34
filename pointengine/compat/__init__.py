"""Compatibility layers for code written against other engines' Python APIs.

`torchsparse`: TorchSparse 2.x's user API on pointengine's types (docs/porting_from_torchsparse.md).
`alias_torchsparse()` makes `import torchsparse` (and its submodules) resolve to it, so such code runs
with no edit; it is opt-in, since it changes what an import means for the whole process.
"""

import importlib
import sys

_SUBMODULES = ("", ".nn", ".nn.functional", ".utils", ".utils.quantize", ".utils.collate", ".tensor", ".operators")


def alias_torchsparse() -> None:
    """After this call `import torchsparse`, `import torchsparse.nn as spnn`, `from
    torchsparse.utils.quantize import sparse_quantize` and the like give
    pointengine.compat.torchsparse and its submodules. Raises ImportError when a real torchsparse
    is already imported (the two cannot share one name in a process)."""
    current = sys.modules.get("torchsparse")
    if current is not None and not current.__name__.startswith(__name__):
        raise ImportError(
            f"alias_torchsparse: a real torchsparse is already imported ({getattr(current, '__file__', current)}); "
            "call alias_torchsparse() before anything imports torchsparse"
        )
    for suffix in _SUBMODULES:
        sys.modules["torchsparse" + suffix] = importlib.import_module(f"{__name__}.torchsparse{suffix}")


__all__ = ["alias_torchsparse"]
