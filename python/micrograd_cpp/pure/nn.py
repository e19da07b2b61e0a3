"""micrograd's nn on the pure-Python Value: the oracle of micrograd_cpp.nn.

The code is karpathy/micrograd's nn.py, with two changes: each class names the class it builds
(`_Value`, `_Neuron`, `_Layer`), so micrograd_cpp.nn can reuse it with the engine's Value and a
fused neuron forward; and a Neuron refuses the wrong number of inputs (micrograd's zip drops the
extra inputs, or the weights left without one, and returns a number all the same).
"""

import random
from collections.abc import Iterable
from typing import Any, TypeVar

from .engine import Value

T = TypeVar("T")


def sized_inputs(x: Iterable[T], nin: int) -> list[T]:
    """x as a list of nin inputs, else ValueError. x is read once: it may be a generator."""
    inputs = list(x)
    if len(inputs) != nin:
        raise ValueError(f"wrong number of inputs: Neuron takes {nin}, got {len(inputs)}")
    return inputs


class Module:
    """A model: something with parameters."""

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0."""
        for p in self.parameters():
            p.grad = 0

    def parameters(self) -> list[Value]:
        """The model's Values that training adjusts, in a fixed order."""
        return []


class Neuron(Module):
    """relu(w·x + b) (or w·x + b when nonlin is False) over nin inputs: weights uniform in
    [-1, 1], bias 0."""

    _Value = Value

    def __init__(self, nin: int, nonlin: bool = True) -> None:
        self.w = [self._Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = self._Value(0)
        self.nonlin = nonlin

    def __call__(self, x: Iterable[Value | float]) -> Value:
        """The neuron's output on inputs x (Values or numbers)."""
        x = sized_inputs(x, len(self.w))
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.relu() if self.nonlin else act

    def parameters(self) -> list[Value]:
        """The weights, then the bias."""
        return [*self.w, self.b]

    def __repr__(self) -> str:
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):
    """nout neurons over the same nin inputs; kwargs go to each Neuron (nonlin)."""

    _Neuron = Neuron

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        self.neurons = [self._Neuron(nin, **kwargs) for _ in range(nout)]

    # Value | Any: the result's type depends on nout, known at run time only (typeshed's answer
    # for a value-dependent result; see micrograd_cpp.nn.Layer).
    def __call__(self, x: Iterable[Value | float]) -> Value | Any:
        """The neurons' outputs on x: a Value if there is one neuron, else a list of Values."""
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        """Each neuron's parameters, neuron by neuron."""
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """A multi-layer perceptron: layers of sizes nouts over nin inputs, ReLU except the last."""

    _Layer = Layer

    def __init__(self, nin: int, nouts: list[int]) -> None:
        sz = [nin, *nouts]
        self.layers = [
            self._Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1) for i in range(len(nouts))
        ]

    def __call__(self, x: Iterable[Value | float]) -> Value | Any:
        """The last layer's output on x: a Value if it has one neuron, else a list of Values."""
        for layer in self.layers:
            x = layer(x)  # type: ignore[assignment]  # a list of Values, unless a bug feeds a Value
        return x

    def parameters(self) -> list[Value]:
        """Each layer's parameters, layer by layer."""
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
