"""micrograd-cpp: micrograd's scalar autograd engine, running in C++."""

from ._version import __version__
from .engine import BACKEND, Value
from .ops import dot, sum
from .program import compile


def install_as_micrograd() -> None:
    """Make `import micrograd`, `micrograd.engine` and `micrograd.nn` load micrograd-cpp, so that
    unchanged micrograd code runs on it."""
    import sys

    from . import engine, nn

    sys.modules["micrograd"] = sys.modules[__name__]
    sys.modules["micrograd.engine"] = engine
    sys.modules["micrograd.nn"] = nn


__all__ = ["BACKEND", "Value", "__version__", "compile", "dot", "install_as_micrograd", "sum"]
