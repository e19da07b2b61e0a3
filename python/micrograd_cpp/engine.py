"""The Value class: the C++ engine, or the pure-Python one when MICROGRAD_CPP_BACKEND=pure is
set before import or the compiled extension cannot be loaded."""

import importlib
import os
import warnings
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import TYPE_CHECKING

from .pure import engine as _pure

BACKEND = os.environ.get("MICROGRAD_CPP_BACKEND") or "cpp"  # set but empty: the default
if BACKEND not in ("cpp", "pure"):
    raise ImportError(f"MICROGRAD_CPP_BACKEND must be 'cpp' or 'pure', not {BACKEND!r}")


def _why_not_loaded(error: ImportError) -> str:
    """Which extension file failed to load and why, or that the package directory has none."""
    here = Path(__file__).parent
    for path in (here / f"_core{suffix}" for suffix in EXTENSION_SUFFIXES):
        if path.exists():
            return f"the C++ extension {path} failed to load ({error})"
    others = sorted(p.name for p in here.glob("_core*") if p.suffix in (".so", ".pyd"))
    built_for = f" (only {', '.join(others)}, built for another Python)" if others else ""
    return (
        f"there is no C++ extension (_core*.so or _core*.pyd) for this Python in {here}{built_for}"
    )


if BACKEND == "cpp":
    try:
        # not `from . import _core`: in a partly imported package that reports a circular import
        _core = importlib.import_module(f"{__package__}._core")
    except ImportError as error:
        warnings.warn(
            f"micrograd-cpp is using its pure-Python engine: {_why_not_loaded(error)}",
            RuntimeWarning,
            # the line importing micrograd_cpp: this module is imported only by the package's
            # __init__, and warnings does not count the import machinery's frames
            stacklevel=3,
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
