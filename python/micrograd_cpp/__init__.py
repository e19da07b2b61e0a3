"""micrograd-cpp: micrograd's scalar autograd engine, running in C++."""

from . import _backend  # noqa: F401  # first: it warns at the line that imports micrograd_cpp
from ._version import __version__
from .engine import BACKEND, Value
from .gradcheck import GradcheckError, gradcheck
from .ops import dot, sum
from .program import compile


def install_as_micrograd() -> None:
    """Make `import micrograd`, `micrograd.engine` and `micrograd.nn` load micrograd-cpp, so that
    unchanged micrograd code runs on it.

    Call it before the first `import micrograd`: a module that already imported upstream's
    micrograd keeps upstream's classes, so calling it later warns (RuntimeWarning).
    """
    import sys
    import warnings

    from . import engine, nn

    ours = {"micrograd": sys.modules[__name__], "micrograd.engine": engine, "micrograd.nn": nn}
    imported = [
        name for name, module in ours.items() if sys.modules.get(name, module) is not module
    ]
    if imported:
        warnings.warn(
            f"install_as_micrograd() came after `import micrograd` ({', '.join(imported)} already "
            "loaded): what was taken from it before, such as `from micrograd.engine import Value`, "
            "keeps upstream micrograd's classes; call install_as_micrograd() first",
            RuntimeWarning,
            stacklevel=2,
        )
    sys.modules.update(ours)


__all__ = [
    "BACKEND",
    "GradcheckError",
    "Value",
    "__version__",
    "compile",
    "dot",
    "gradcheck",
    "install_as_micrograd",
    "sum",
]
