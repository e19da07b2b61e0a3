"""Crossing over to PyTorch: a micrograd MLP as a torch.nn.Sequential, and back.

An MLP's layer is a torch.nn.Linear (a neuron's weights are a row of its weight, its bias an
element of its bias), followed by torch.nn.ReLU when its neurons apply ReLU: in micrograd's MLP,
every layer but the last. torch is optional: pip install torch.
"""

import random
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import nn
from .pure import nn as _pure

if TYPE_CHECKING:
    import torch

M = TypeVar("M", bound=_pure.MLP)


def _require_torch() -> None:
    """ImportError, saying what to install, unless torch can be imported."""
    try:
        import torch  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "micrograd_cpp.interop needs PyTorch, which is not installed: pip install torch"
        ) from error


def to_torch(model: _pure.MLP) -> "torch.nn.Sequential":
    """A torch.nn.Sequential of float64 Linear and ReLU modules computing what model computes,
    with a copy of its weights: outputs agree to rounding (torch sums in its own order).

    model is an MLP of either backend (or upstream micrograd's). Where model returns a Value
    (one output), the Sequential returns a tensor of one element. A layer whose neurons do not
    all agree on ReLU has no torch equivalent: ValueError.
    """
    _require_torch()
    import torch

    modules: list[torch.nn.Module] = []
    for i, layer in enumerate(model.layers):
        nonlins = {neuron.nonlin for neuron in layer.neurons}
        if len(nonlins) != 1:
            raise ValueError(f"layer {i} mixes ReLU and linear neurons: no torch.nn equivalent")
        nin, nout = len(layer.neurons[0].w), len(layer.neurons)
        # made on the meta device, as torch.nn.utils.skip_init does: torch's own initialisation
        # would draw from its random generator for weights replaced at once
        linear = torch.nn.Linear(nin, nout, dtype=torch.float64, device="meta")
        linear = linear.to_empty(device="cpu")
        weights = [[w.data for w in neuron.w] for neuron in layer.neurons]
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(weights, dtype=torch.float64))
            linear.bias.copy_(torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64))
        modules.append(linear)
        if nonlins == {True}:
            modules.append(torch.nn.ReLU())
    return torch.nn.Sequential(*modules)


@overload
def from_torch(seq: "torch.nn.Sequential") -> nn.MLP: ...
@overload
def from_torch(seq: "torch.nn.Sequential", mlp: type[M]) -> M: ...
def from_torch(seq: "torch.nn.Sequential", mlp: type[Any] = nn.MLP) -> Any:
    """An MLP (micrograd_cpp.nn.MLP, or the class mlp, e.g. micrograd_cpp.pure.nn.MLP) with
    seq's architecture and weights, converted to Python floats (float32 ones exactly).

    seq holds Linear modules, each followed by at most one ReLU: a layer's neurons apply ReLU
    when one follows it, whatever its place (micrograd's MLP has one after every layer but the
    last). A Linear without bias gets biases of 0. Any other module raises ValueError, and so
    do Linear sizes that do not chain. Python's random state is left as it was.
    """
    _require_torch()
    import torch

    layers: list[tuple[Any, bool]] = []  # (Linear, followed by ReLU)
    for i, module in enumerate(seq):
        if isinstance(module, torch.nn.Linear):
            if layers and module.in_features != layers[-1][0].out_features:
                raise ValueError(
                    f"module {i}: Linear takes {module.in_features} inputs, but the layer before "
                    f"gives {layers[-1][0].out_features}"
                )
            layers.append((module, False))
        elif isinstance(module, torch.nn.ReLU) and layers and not layers[-1][1]:
            layers[-1] = (layers[-1][0], True)
        else:
            raise ValueError(
                f"module {i}: {module!r} has no micrograd equivalent (an MLP is Linear modules, "
                "each followed by at most one ReLU)"
            )
    if not layers:
        raise ValueError("the Sequential has no Linear module")
    state = random.getstate()  # the MLP draws weights that are replaced at once
    model = mlp(layers[0][0].in_features, [linear.out_features for linear, _ in layers])
    random.setstate(state)
    for layer, (linear, relu) in zip(model.layers, layers):
        weights = linear.weight.detach().to(torch.float64).tolist()
        biases = (
            [0.0] * linear.out_features
            if linear.bias is None
            else linear.bias.detach().to(torch.float64).tolist()
        )
        for neuron, row, bias in zip(layer.neurons, weights, biases):
            neuron.nonlin = relu
            for w, x in zip(neuron.w, row):
                w.data = x
            neuron.b.data = bias
    return model
