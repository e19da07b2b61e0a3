"""Fused reductions: the loops of micrograd's nn and losses, in one call on the C++ backend, and
set_data, which loads a batch of numbers into Values.

Each reduction builds exactly the nodes the plain Python line in its docstring builds, in the
same order, so results are identical to the oracle's. On C++ Values it is one call into the
extension; on anything else (pure Values, plain numbers, a build without the function) it runs
that Python line.
"""

import builtins
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, overload

from ._backend import CppValue as _CppValue
from ._backend import fused as _fused
from .engine import Value
from .pure.nn import sized_inputs

# They are called only when a C++ Value takes part, so they return Values.
_core_neuron: Callable[..., Value] | None
_core_layer: Callable[..., list[Value]] | None
_core_sum: Callable[..., Value] | None
_core_dot: Callable[..., Value] | None
_core_layer_call: Callable[..., Any] | None
_core_mlp_call: Callable[..., Any] | None
_core_neuron, _core_layer = _fused("neuron"), _fused("layer")
_core_layer_call, _core_mlp_call = _fused("layer_call"), _fused("mlp_call")
_core_sum, _core_dot = _fused("sum"), _fused("dot")
_core_set_data: Callable[[Sequence[Value], Any], bool] | None = _fused("set_data")


_EMPTY = object()


def _first(xs: Iterable[Any]) -> tuple[Any, Iterable[Any]]:
    """(first item or _EMPTY, an iterable of all of xs): a generator is read once, lazily."""
    if isinstance(xs, (list, tuple)):
        return (xs[0] if xs else _EMPTY), xs
    it = iter(xs)
    for x in it:
        return x, _chain(x, it)
    return _EMPTY, ()


def _chain(x: Any, it: Iterator[Any]) -> Iterator[Any]:
    yield x
    yield from it


def neuron(w: Sequence[Value], b: Value, x: Iterable[Value | float], nonlin: bool) -> Value:
    """micrograd's Neuron forward, with the oracle's check of the number of inputs:

        x = sized_inputs(x, len(w))  # x read once: a list of len(w) inputs, else ValueError
        act = sum((wi*xi for wi, xi in zip(w, x)), b)
        return act.relu() if nonlin else act

    Numbers in x become fresh leaves, as wi*xi makes them.
    """
    if _core_neuron is not None and type(b) is _CppValue:
        return _core_neuron(w, b, x, nonlin)
    x = sized_inputs(x, len(w))
    act = builtins.sum((wi * xi for wi, xi in zip(w, x)), b)
    return act.relu() if nonlin else act


def layer(neurons: Sequence[Any], x: Iterable[Value | float]) -> list[Value]:
    """A Layer's outputs, [neuron(n.w, n.b, x, n.nonlin) for n in neurons], in one call on C++.

    neurons are micrograd Neurons (anything with w, b and nonlin); x is iterated once per neuron.
    """
    if _core_layer is not None and neurons and type(neurons[0].b) is _CppValue:
        return _core_layer(neurons, x)
    return python_layer(neurons, x)


def python_layer(neurons: Sequence[Any], x: Iterable[Value | float]) -> list[Value]:
    """layer() when the neurons' weights are not C++ Values."""
    return [neuron(n.w, n.b, x, n.nonlin) for n in neurons]


# sum and dot give a Value when a Value takes part, a number when only numbers do.
@overload
def sum(values: Iterable[float], start: float = 0) -> float: ...
@overload
def sum(values: Iterable[Value], start: Value | float = 0) -> Value: ...
@overload
def sum(values: Iterable[Value | float], start: Value) -> Value: ...
@overload
def sum(values: Iterable[Value | float], start: Value | float = 0) -> Value | float: ...
def sum(values: Iterable[Value | float], start: Value | float = 0) -> Value | float:
    """Python's sum: result = start, then result = result + v for each v in values."""
    if _core_sum is not None:
        first, values = _first(values)
        if type(first) is _CppValue or type(start) is _CppValue:
            return _core_sum(values, start)
    return builtins.sum(values, start)


@overload
def dot(a: Iterable[float], b: Iterable[float], start: float = 0) -> float: ...
@overload
def dot(a: Iterable[Value], b: Iterable[Value | float], start: Value | float = 0) -> Value: ...
@overload
def dot(a: Iterable[Value | float], b: Iterable[Value], start: Value | float = 0) -> Value: ...
@overload
def dot(
    a: Iterable[Value | float], b: Iterable[Value | float], start: Value | float = 0
) -> Value | float: ...
def dot(
    a: Iterable[Value | float], b: Iterable[Value | float], start: Value | float = 0
) -> Value | float:
    """sum((ai*bi for ai, bi in zip(a, b)), start): the products and sums in that order."""
    if _core_dot is not None:
        a0, a = _first(a)
        if a0 is not _EMPTY:  # zip(a, b) reads b only after an item of a
            b0, b = _first(b)
            if _CppValue in (type(a0), type(b0), type(start)):
                return _core_dot(a, b, start)
    return builtins.sum((ai * bi for ai, bi in zip(a, b)), start)


def set_data(values: Sequence[Value], numbers: Iterable[float]) -> None:
    """Set each value's data to its number, as the loop `for v, x in zip(values, numbers):
    v.data = x` does, after checking that there are as many numbers as values (ValueError,
    nothing set, if not). Loads a batch into a compiled graph's input leaves: on C++, a list of
    Values and a one-dimensional float64 numpy array are one call."""
    if _core_set_data is not None and _core_set_data(values, numbers):
        return
    numbers = numbers.tolist() if hasattr(numbers, "tolist") else list(numbers)  # numpy: floats
    if len(numbers) != len(values):
        raise ValueError(
            f"set_data needs as many numbers as values, got {len(values)} values and "
            f"{len(numbers)} numbers"
        )
    for v, x in zip(values, numbers):
        v.data = x
