"""Which engine runs: the C++ extension, or the pure-Python one when MICROGRAD_CPP_BACKEND=pure
is set before import or the extension cannot be loaded. Decided here, once: engine, ops,
program, optim and demo read it from this module."""

import importlib
import os
import warnings
from collections.abc import Callable
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

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


# The extension module if it loads, whichever engine is active: compile() takes its Values even
# when the pure engine is the default.
extension: ModuleType | None
try:
    # not `from . import _core`: in a partly imported package that reports a circular import
    extension = importlib.import_module(f"{__package__}._core")
except ImportError as error:
    extension = None
    if BACKEND == "cpp":
        warnings.warn(
            f"micrograd-cpp is using its pure-Python engine: {_why_not_loaded(error)}",
            RuntimeWarning,
            # the line importing micrograd_cpp: this module is imported first by the package's
            # __init__, and warnings does not count the import machinery's frames
            stacklevel=3,
        )
        BACKEND = "pure"

if TYPE_CHECKING:  # the checker knows the extension from _core.pyi
    from . import _core

    CppValue: type[_core.Value] | None
# The C++ Value class while the C++ engine is active, else None.
CppValue = extension.Value if BACKEND == "cpp" and extension is not None else None


def fused(name: str) -> Callable[..., Any] | None:
    """The extension's function of that name, if the C++ engine is active and provides it."""
    return getattr(extension, name, None) if BACKEND == "cpp" else None
