"""micrograd's nn on the active backend, with a neuron's forward in one call on C++.

The classes are micrograd's (see micrograd_cpp.pure.nn, the oracle they subclass): same
signatures, parameters and their order, reprs and random initialisation. Two things change:
weights are the engine's Value, and the forward goes through ops: on the C++ backend a neuron's
'*', '+' and 'ReLU' nodes are created in one call (ops.neuron), and a layer of micrograd's
neurons in one call too (ops.layer), so an MLP's forward crosses into C++ once per layer. The
nodes are the ones micrograd creates, so graphs, gradients and every rounding match the
oracle's nn exactly.
"""

from . import ops
from .engine import Value
from .pure import nn as _pure

Module = _pure.Module


class Neuron(_pure.Neuron):
    _Value = Value

    def __call__(self, x):
        return ops.neuron(self.w, self.b, x, self.nonlin)


class Layer(_pure.Layer):
    _Neuron = Neuron

    def __call__(self, x):
        if set(map(type, self.neurons)) != {Neuron}:  # someone's own neurons: call each
            return super().__call__(x)
        out = ops.layer(self.neurons, x)
        return out[0] if len(out) == 1 else out


class MLP(_pure.MLP):
    _Layer = Layer
