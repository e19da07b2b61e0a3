"""gradcheck(f, inputs): backward()'s gradients against central differences, as in the lecture.

Like torch.autograd.gradcheck: each input is nudged by +-eps, (f(x+eps) - f(x-eps)) / 2eps is
compared with what backward() computed, and any disagreement beyond atol + rtol * |numeric|
raises. It checks whatever f builds: built-in ops, and your own ops whose `_backward` you wrote.
"""

import math
from collections.abc import Callable, Sequence

from .engine import Value
from .pure import engine as _pure

_VALUES = (Value, _pure.Value)  # either engine's


class GradcheckError(AssertionError):
    """backward() and central differences disagree on the gradient of some input."""

    def __init__(self, index: int, x: float, analytic: float, numeric: float) -> None:
        self.index, self.x, self.analytic, self.numeric = index, x, analytic, numeric
        super().__init__(
            f"gradient of input {index} (at {x!r}): backward() gives {analytic!r}, "
            f"central differences give {numeric!r}"
        )


def _backend_of(inputs: Sequence[Value | float]) -> type[Value]:
    """The class of the first Value among inputs (so either engine can be checked), else the
    active engine's Value."""
    for x in inputs:
        if isinstance(x, _VALUES):
            return type(x)
    return Value


def gradcheck(
    f: Callable[..., Value],
    inputs: Sequence[Value | float],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
) -> bool:
    """Check f's gradients at `inputs`; return True, or raise GradcheckError naming the input
    whose gradient is furthest out of tolerance, with the analytic and the numeric gradient.

    f takes one Value per input and returns a Value; it is called on fresh leaves each time, so
    it must rebuild its graph (custom ops included) from them. inputs are numbers or Values
    (their data; their class picks the engine: C++ or micrograd_cpp.pure). The defaults are
    torch.autograd.gradcheck's for float64.
    """
    V = _backend_of(inputs)
    xs = [float(x.data) if isinstance(x, _VALUES) else float(x) for x in inputs]

    def at(leaves: list[Value]) -> Value:
        out = f(*leaves)
        if not isinstance(out, V):
            raise TypeError(f"gradcheck: f must return a Value, not {type(out).__name__}")
        return out

    leaves = [V(x) for x in xs]
    at(leaves).backward()
    worst: GradcheckError | None = None
    worst_excess = 0.0
    for i, x in enumerate(xs):
        up = at([V(x + eps if j == i else y) for j, y in enumerate(xs)]).data
        down = at([V(x - eps if j == i else y) for j, y in enumerate(xs)]).data
        numeric = (up - down) / (2 * eps)
        analytic = leaves[i].grad
        excess = abs(analytic - numeric) - (atol + rtol * abs(numeric))
        if analytic == numeric:  # also when both are the same infinity
            continue
        if math.isnan(excess):
            excess = math.inf  # a nan gradient is as wrong as can be
        if excess > 0 and (worst is None or excess > worst_excess):
            worst, worst_excess = GradcheckError(i, x, analytic, numeric), excess
    if worst is not None:
        raise worst
    return True
