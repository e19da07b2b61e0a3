"""micrograd's nn on the pure-Python Value: the oracle of micrograd_cpp.nn.

The code is karpathy/micrograd's nn.py, with two changes: each class names the class it builds
(`_Value`, `_Neuron`, `_Layer`), so micrograd_cpp.nn can reuse it with the engine's Value and a
fused neuron forward; and a Neuron refuses the wrong number of inputs (micrograd's zip drops the
extra inputs, or the weights left without one, and returns a number all the same).
"""

import random

from .engine import Value


def sized_inputs(x, nin):
    """x as a list of nin inputs, else ValueError. x is read once: it may be a generator."""
    x = list(x)
    if len(x) != nin:
        raise ValueError(f"wrong number of inputs: Neuron takes {nin}, got {len(x)}")
    return x


class Module:
    def zero_grad(self):
        for p in self.parameters():
            p.grad = 0

    def parameters(self):
        return []


class Neuron(Module):
    _Value = Value

    def __init__(self, nin, nonlin=True):
        self.w = [self._Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = self._Value(0)
        self.nonlin = nonlin

    def __call__(self, x):
        x = sized_inputs(x, len(self.w))
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.relu() if self.nonlin else act

    def parameters(self):
        return [*self.w, self.b]

    def __repr__(self):
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):
    _Neuron = Neuron

    def __init__(self, nin, nout, **kwargs):
        self.neurons = [self._Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x):
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self):
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self):
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    _Layer = Layer

    def __init__(self, nin, nouts):
        sz = [nin, *nouts]
        self.layers = [
            self._Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1) for i in range(len(nouts))
        ]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self):
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
