"""micrograd's nn on the active backend, with a neuron's forward in one call on C++.

The classes are micrograd's (see micrograd_cpp.pure.nn, the oracle they subclass): same
signatures, parameters and their order, reprs and random initialisation. Two things change:
weights are the engine's Value, and the forward goes through ops: on the C++ backend a neuron's
'*', '+' and 'ReLU' nodes are created in one call (ops.neuron), and a layer of micrograd's
neurons in one call too (ops.layer), so an MLP's forward crosses into C++ once per layer. The
nodes are the ones micrograd creates, so graphs, gradients and every rounding match the
oracle's nn exactly.
"""

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import ops
from .engine import Value
from .pure import nn as _pure

if TYPE_CHECKING:  # the oracle's Module, declared again with the engine's Values

    class Module:
        def zero_grad(self) -> None: ...
        def parameters(self) -> list[Value]: ...

else:
    Module = _pure.Module


class Neuron(_pure.Neuron):
    """relu(w·x + b), or w·x + b when nonlin is False, over nin inputs: micrograd's Neuron, with
    weights uniform in [-1, 1] and bias 0, its forward in one call on C++."""

    _Value = Value
    if TYPE_CHECKING:  # the oracle's attributes and methods, holding the engine's Values
        w: list[Value]
        b: Value

        def parameters(self) -> list[Value]: ...

    def __call__(self, x: Iterable[Value | float]) -> Value:
        """The neuron's output on inputs x (Values or numbers)."""
        return ops.neuron(self.w, self.b, x, self.nonlin)


class Layer(_pure.Layer):
    """nout Neurons over the same nin inputs (kwargs, e.g. nonlin, go to each): micrograd's
    Layer, its forward in one call on C++."""

    _Neuron = Neuron
    if TYPE_CHECKING:
        neurons: list[Neuron]

        def parameters(self) -> list[Value]: ...

    # Value | Any, as typeshed types a result whose type depends on a value: nout decides
    # between a Value and a list of Values at run time. Code that uses it as a Value, like
    # micrograd's `(1 + -yi*model(x)).relu()`, type-checks as it is; code that uses a list
    # first narrows it (`assert isinstance(out, list)`), which Value | list[Value] would demand
    # of both.
    def __call__(self, x: Iterable[Value | float]) -> Value | Any:
        """The neurons' outputs on x: a Value if the layer has one neuron, else a list."""
        return _layer_forward(self, self.neurons, x)


def _layer_forward(layer: Layer, neurons: list[Neuron], x: Iterable[Value | float]) -> Value | Any:
    """Layer.__call__, given the neurons it has read."""
    if ops._core_layer_call is not None:  # the lines below in one call
        out = ops._core_layer_call(neurons, x, Neuron, ops.python_layer)
        if out is not NotImplemented:
            return out
    if set(map(type, neurons)) != {Neuron}:  # someone's own neurons: call each
        return super(Layer, layer).__call__(x)  # type: ignore[arg-type]  # typed for the oracle's
    out = ops.layer(neurons, x)
    return out[0] if len(out) == 1 else out


class MLP(_pure.MLP):
    """A multi-layer perceptron, micrograd's MLP(nin, nouts): Layers of sizes nouts over nin
    inputs, ReLU but the last. model(x) is a Value if nouts ends in 1, else a list (see Layer)."""

    _Layer = Layer
    if TYPE_CHECKING:
        layers: list[Layer]

        def parameters(self) -> list[Value]: ...

    def __call__(self, x: Iterable[Value | float]) -> Value | Any:
        """The last layer's output on x: a Value if it has one neuron, else a list of Values.
        On C++, in one call whose hidden layers' outputs stay nodes without Python objects."""
        layers = self.layers
        if ops._core_mlp_call is not None:
            out = ops._core_mlp_call(layers, x, Layer, Neuron, _layer_forward, ops.python_layer)
            if out is not NotImplemented:
                return out
        for layer in layers:
            x = layer(x)
        return x
