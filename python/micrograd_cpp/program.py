"""compile(root): freeze a graph into a Program that replays forward and backward.

A training loop rebuilds the same graph every step although only the numbers change. Compile
the graph once and replay it instead: prog.forward() recomputes every node from the leaves'
current data (parameters updated by the optimizer, inputs set by you), prog.backward() is
root.backward() over the frozen order. Results are bit-identical to rebuilding the graph.

Limits: Python control flow that depends on values is not re-traced (as with torch.jit.trace),
and a graph holding a user-defined operation (a Python _backward) is refused.
"""

from typing import TYPE_CHECKING, cast

from ._backend import BACKEND, extension
from .engine import Value
from .pure import engine as _pure_engine
from .pure import program as _pure

# The active backend's Program, as engine.Value is its Value. Both have one API: the checker
# knows it from _core.pyi.
if TYPE_CHECKING:
    from ._core import Program
elif BACKEND == "cpp":
    Program = extension.Program
else:
    Program = _pure.Program


def compile(root: Value) -> Program:
    """Freeze the graph under root (a Value of either backend) into a Program."""
    if extension is not None and isinstance(root, extension.Value):
        return cast("Program", extension.compile(root))
    if isinstance(root, _pure_engine.Value):
        return _pure.compile(root)
    raise TypeError(f"compile() takes a Value, not {type(root).__name__}")
