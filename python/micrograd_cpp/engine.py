"""The Value class: the C++ engine, or the pure-Python one when MICROGRAD_CPP_BACKEND=pure is
set before import or the compiled extension cannot be loaded."""

import os
import warnings
from typing import TYPE_CHECKING

from .pure import engine as _pure

BACKEND = os.environ.get("MICROGRAD_CPP_BACKEND", "cpp")
if BACKEND not in ("cpp", "pure"):
    raise ImportError(f"MICROGRAD_CPP_BACKEND must be 'cpp' or 'pure', not {BACKEND!r}")

if BACKEND == "cpp":
    try:
        from . import _core
    except ImportError as error:
        warnings.warn(
            f"micrograd-cpp is using its pure-Python engine: the C++ extension failed to load "
            f"({error})",
            RuntimeWarning,
            stacklevel=2,
        )
        BACKEND = "pure"

if TYPE_CHECKING:  # both Values have one API: the checker knows it from _core.pyi
    from ._core import Value, topological_order
elif BACKEND == "cpp":
    Value = _core.Value
    topological_order = _core.topological_order
else:
    Value = _pure.Value
    topological_order = _pure.topological_order

__all__ = ["BACKEND", "Value", "topological_order"]
