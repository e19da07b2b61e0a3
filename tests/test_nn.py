"""micrograd_cpp.nn against micrograd's nn: parameters, reprs, calls, graphs and results."""

import inspect
import random
import warnings

import numpy as np
import pytest
from helpers import cpp_nn, graph

with warnings.catch_warnings():  # without the extension the package warns; the oracle still runs
    warnings.simplefilter("ignore", RuntimeWarning)
    from micrograd_cpp.pure import nn as pure_nn
    from micrograd_cpp.pure.engine import Value as PureValue


@pytest.fixture(scope="module", params=["cpp", "pure"])
def nn(request):
    """The nn module under test: micrograd_cpp.nn (on the C++ engine), or the oracle's."""
    return pure_nn if request.param == "pure" else cpp_nn()


def build(nn_module, seed, *args):
    random.seed(seed)
    return nn_module.MLP(*args)


NOTEBOOK_REPR = (
    "MLP of [Layer of ["
    + ", ".join(["ReLUNeuron(2)"] * 16)
    + "], Layer of ["
    + ", ".join(["ReLUNeuron(16)"] * 16)
    + "], Layer of [LinearNeuron(16)]]"
)


def test_repr_is_micrograds(nn):
    assert repr(build(nn, 0, 2, [16, 16, 1])) == NOTEBOOK_REPR  # as printed by demo.ipynb
    assert repr(nn.Neuron(2)) == "ReLUNeuron(2)"
    assert str(nn.Neuron(16, nonlin=False)) == "LinearNeuron(16)"
    assert repr(nn.Layer(3, 2, nonlin=False)) == "Layer of [LinearNeuron(3), LinearNeuron(3)]"


def test_same_parameters_as_upstream_micrograd(nn):
    upstream = pytest.importorskip("micrograd.nn")
    for seed in (0, 1337):
        ours = build(nn, seed, 2, [16, 16, 1])
        theirs = build(upstream, seed, 2, [16, 16, 1])
        assert [p.data for p in ours.parameters()] == [p.data for p in theirs.parameters()]
        assert len(ours.parameters()) == 337


def test_same_parameters_as_the_oracle(nn):
    ours, oracle = build(nn, 7, 3, [4, 5, 2]), build(pure_nn, 7, 3, [4, 5, 2])
    assert [p.data for p in ours.parameters()] == [p.data for p in oracle.parameters()]
    assert repr(ours) == repr(oracle)


def test_initialisation(nn):
    n = nn.Neuron(5)
    assert all(type(w) is nn.Neuron._Value for w in n.w)
    assert all(type(w.data) is float and -1 <= w.data <= 1 for w in n.w)
    assert n.b.data == 0.0 and type(n.b.data) is float and n.nonlin is True
    assert [layer.neurons[0].nonlin for layer in nn.MLP(2, [3, 3, 1]).layers] == [True, True, False]
    assert all(p.grad == 0.0 for p in nn.MLP(2, [3, 1]).parameters())


def test_parameters_identity_and_order(nn):
    model = nn.MLP(2, [3, 2])
    params = model.parameters()
    assert len(params) == 3 * 3 + 2 * 4
    expected = [p for layer in model.layers for n in layer.neurons for p in [*n.w, n.b]]
    assert all(a is b for a, b in zip(params, expected, strict=True))
    # the same objects each call
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))
    n = model.layers[0].neurons[0]
    assert n.parameters()[-1] is n.b and n.parameters()[:-1] == n.w
    assert nn.Module().parameters() == []


def test_classes_and_isinstance(nn):
    model = nn.MLP(2, [3, 1])
    assert all(type(layer) is nn.Layer for layer in model.layers)
    assert all(type(n) is nn.Neuron for layer in model.layers for n in layer.neurons)
    assert all(isinstance(m, nn.Module) for m in [model, *model.layers, model.layers[0].neurons[0]])
    assert nn.Module is pure_nn.Module  # one base class: user Modules work on either backend


def test_call_returns_value_or_list(nn):
    x = [1.0, -2.0]
    one, many = nn.Layer(2, 1), nn.Layer(2, 3)
    assert isinstance(one(x), nn.Neuron._Value)
    assert isinstance(many(x), list) and len(many(x)) == 3
    assert isinstance(nn.MLP(2, [3, 1])(x), nn.Neuron._Value)
    out = nn.MLP(2, [3, 2])(x)
    assert isinstance(out, list) and len(out) == 2


def test_forward_and_backward_match_the_oracle(nn):
    model, oracle = build(nn, 3, 2, [4, 4, 1]), build(pure_nn, 3, 2, [4, 4, 1])
    for x in ([0.5, -1.5], [2.0, 3.0], [-0.25, 0.0]):
        out = model(list(map(nn.Neuron._Value, x)))
        ref = oracle(list(map(PureValue, x)))
        out.backward()
        ref.backward()
        assert graph(out) == graph(ref)
        assert [p.grad for p in model.parameters()] == [p.grad for p in oracle.parameters()]


def test_neuron_graph_is_micrograds(nn):
    """Neuron(2) on two Values: the picture of trace_graph.ipynb."""
    random.seed(1337)
    n = nn.Neuron(2)
    Value = nn.Neuron._Value
    y = n([Value(1.0), Value(-2.0)])
    y.backward()
    random.seed(1337)
    ref = pure_nn.Neuron(2)([PureValue(1.0), PureValue(-2.0)])
    ref.backward()
    assert graph(y) == graph(ref)
    # relu(((b + w0*x0) + w1*x1)), operands depth first: the sum starts from the bias
    assert [op for op, *_ in graph(y)] == ["ReLU", "+", "+", "", "*", "", "", "*", "", ""]


@pytest.mark.parametrize(
    "x",
    [
        np.array([0.5, -1.5]),
        [np.float64(0.5), np.float64(-1.5)],
        [np.float32(0.5), np.float32(-1.5)],
        (0.5, -1.5),
        [1, -2],
        [np.int64(1), np.int64(-2)],
    ],
    ids=["ndarray", "float64", "float32", "tuple", "int", "int64"],
)
def test_numeric_inputs(nn, x):
    """Numbers (numpy scalars too) become leaves, as wi*xi makes them."""
    model, oracle = build(nn, 5, 2, [3, 1]), build(pure_nn, 5, 2, [3, 1])
    out, ref = model(x), oracle([float(v) for v in x])
    assert isinstance(out, nn.Neuron._Value)
    out.backward()
    ref.backward()
    assert graph(out) == graph(ref)


def test_value_inputs_mixed_with_numbers(nn):
    Value = nn.Neuron._Value
    x, xr = [Value(0.5), 2.0], [PureValue(0.5), 2.0]
    random.seed(1)
    out = nn.Neuron(2)(x)
    random.seed(1)
    ref = pure_nn.Neuron(2)(xr)
    out.backward()
    ref.backward()
    assert graph(out) == graph(ref)
    assert x[0].grad == xr[0].grad != 0


def test_inputs_follow_zip(nn):
    """Like micrograd, a neuron zips weights with inputs: extra inputs are ignored."""
    random.seed(2)
    n = nn.Neuron(2)
    random.seed(2)
    ref = pure_nn.Neuron(2)
    assert graph(n([1.0, 2.0, 3.0])) == graph(ref([1.0, 2.0, 3.0]))
    assert graph(n([1.0])) == graph(ref([1.0]))
    assert n([]).data == 0.0


def test_bad_inputs_raise_type_error(nn):
    with pytest.raises(TypeError):
        nn.Neuron(2)(["a", "b"])
    with pytest.raises(TypeError):
        nn.Neuron(2)([None, 1.0])


def test_zero_grad(nn):
    model = nn.MLP(2, [3, 1])
    model([1.0, 2.0]).backward()
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())


def test_user_module(nn):
    """A user's Module subclass gets zero_grad and trains like micrograd's own modules."""

    class TwoHeads(nn.Module):
        def __init__(self):
            self.body = nn.Layer(2, 4)
            self.heads = [nn.Neuron(4, nonlin=False) for _ in range(2)]

        def __call__(self, x):
            h = self.body(x)
            return [head(h) for head in self.heads]

        def parameters(self):
            return self.body.parameters() + [p for h in self.heads for p in h.parameters()]

    random.seed(11)
    model = TwoHeads()
    assert isinstance(model, nn.Module) and len(model.parameters()) == 12 + 10

    def loss():
        a, b = model([0.5, -1.0])
        return (a - 1) * (a - 1) + (b + 1) * (b + 1)

    first = loss().data
    for _ in range(20):
        total = loss()
        model.zero_grad()
        total.backward()
        for p in model.parameters():
            p.data -= 0.05 * p.grad
    assert loss().data < first


def test_a_layer_of_user_neurons(nn):
    """A Layer calls its neurons: a user's Neuron subclass gets its own forward."""

    class TanhNeuron(nn.Neuron):
        def __call__(self, x):
            return super().__call__(x).tanh()

    class TanhLayer(nn.Layer):
        _Neuron = TanhNeuron

    random.seed(4)
    layer = TanhLayer(2, 3, nonlin=False)
    assert all(type(n) is TanhNeuron for n in layer.neurons)
    random.seed(4)
    plain = nn.Layer(2, 3, nonlin=False)
    outs, refs = layer([0.5, -0.25]), plain([0.5, -0.25])
    assert [o._op for o in outs] == ["tanh"] * 3
    assert [o._children[0].data for o in outs] == [r.data for r in refs]
    plain.neurons[1] = TanhNeuron(2, nonlin=False)  # one replaced neuron
    assert [o._op for o in plain([0.5, -0.25])] == ["+", "tanh", "+"]


def test_cpp_nn_uses_the_engine_value():
    from micrograd_cpp import demo, engine, nn

    assert nn.Neuron._Value is engine.Value and nn.Value is engine.Value
    if demo.cpp_available():
        from micrograd_cpp import _core

        assert type(nn.Neuron(2).b) is _core.Value


def test_classes_and_methods_are_documented(nn):
    methods = {"Module": ["zero_grad", "parameters"], "Neuron": ["__call__", "parameters"]}
    methods |= {"Layer": methods["Neuron"], "MLP": methods["Neuron"]}
    for name, names in methods.items():
        cls = getattr(nn, name)
        assert cls.__doc__, f"{name} has no docstring"
        for method in names:
            assert inspect.getdoc(getattr(cls, method)), f"{name}.{method} has no docstring"
