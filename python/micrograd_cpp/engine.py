"""The Value class of the active engine (micrograd_cpp._backend): the C++ one, or the pure-Python
one."""

from typing import TYPE_CHECKING

from ._backend import BACKEND, extension
from .pure import engine as _pure

if TYPE_CHECKING:  # both Values have one API: the checker knows it from _core.pyi
    from ._core import Value, topological_order
elif BACKEND == "cpp":
    Value = extension.Value
    topological_order = extension.topological_order
else:
    Value = _pure.Value
    topological_order = _pure.topological_order

__all__ = ["BACKEND", "Value", "topological_order"]
