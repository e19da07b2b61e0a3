"""micrograd_cpp.nn against micrograd's nn: parameters, reprs, calls, graphs and results."""

import inspect
import random
import warnings

import numpy as np
import pytest
from helpers import cpp_nn, graph, raised, state

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


INPUTS = {"list": list, "tuple": tuple, "ndarray": np.array, "generator": lambda xs: iter(xs)}


def tanh_layer(nn):
    """A Layer of a user's Neuron subclass: nn.Layer calls each neuron, through super()."""

    class TanhNeuron(nn.Neuron):
        def __call__(self, x):
            return super().__call__(x).tanh()

    class TanhLayer(nn.Layer):
        _Neuron = TanhNeuron

    return TanhLayer(2, 3)


MODELS = {
    "Neuron": lambda nn: nn.Neuron(2),
    "Layer": lambda nn: nn.Layer(2, 3),
    "MLP": lambda nn: nn.MLP(2, [3, 1]),
    "user Neurons": tanh_layer,
}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kind", INPUTS)
@pytest.mark.parametrize("size", [0, 1, 3])
def test_wrong_number_of_inputs_is_refused(nn, model, kind, size):
    """micrograd zips weights with inputs and answers all the same; here the call raises, and
    leaves every parameter as it was, with no node made from it."""
    m = MODELS[model](nn)
    params = m.parameters()
    for i, p in enumerate(params):
        p.grad = i + 0.5  # grads that must stay
    before = state(params)
    expected = (ValueError, f"wrong number of inputs: Neuron takes 2, got {size}")
    assert raised(lambda: m(INPUTS[kind]([0.5, -1.0, 2.0][:size]))) == expected
    assert state(params) == before
    out = m([0.5, -1.0])  # a call that succeeds shows in state()
    assert state(params) != before and out is not None


RIGHT_SIZED = {
    "Neuron": lambda nn: nn.Neuron(2),
    "Layer of one": lambda nn: nn.Layer(2, 1),
    "Layer": lambda nn: nn.Layer(2, 3),
    "MLP": lambda nn: nn.MLP(2, [3, 1]),
}


@pytest.mark.parametrize(
    "kind, model",
    [
        (kind, model)
        for kind in INPUTS
        for model in RIGHT_SIZED
        # a generator feeds one neuron only: test_a_generator_feeds_one_neuron
        if kind != "generator" or model in ("Neuron", "Layer of one")
    ],
)
def test_right_sized_inputs_equal_the_oracle(nn, kind, model):
    make = RIGHT_SIZED[model]
    random.seed(2)
    ours = make(nn)
    random.seed(2)
    oracle = make(pure_nn)
    out, ref = ours(INPUTS[kind]([0.5, -1.5])), oracle([0.5, -1.5])
    out, ref = (sum(o, 0.0) if isinstance(o, list) else o for o in (out, ref))
    out.backward()
    ref.backward()
    assert graph(out) == graph(ref)
    assert [p.grad for p in ours.parameters()] == [p.grad for p in oracle.parameters()]


def test_a_generator_feeds_one_neuron(nn):
    """As in micrograd, each neuron of a layer reads x: the first reads a generator to its end,
    so the next one has no input, and the layer raises."""
    layer = nn.Layer(2, 3)
    before = state(layer.parameters())
    assert raised(lambda: layer(iter([0.5, -1.5]))) == (
        ValueError,
        "wrong number of inputs: Neuron takes 2, got 0",
    )
    assert state(layer.parameters()) == before


def test_a_wrong_sized_layer_inside_an_mlp(nn):
    model = nn.MLP(2, [3, 1])
    model.layers[1] = nn.Layer(4, 1, nonlin=False)  # takes 4 inputs, gets the 3 outputs
    before = state(model.parameters())
    assert raised(lambda: model([0.5, -1.5])) == (
        ValueError,
        "wrong number of inputs: Neuron takes 4, got 3",
    )
    assert state(model.parameters()) == before  # the first layer's outputs are gone too


def test_a_neuron_of_no_inputs(nn):
    assert nn.Neuron(0)([]).data == 0.0 and nn.Neuron(0)(iter([])).data == 0.0
    assert raised(lambda: nn.Neuron(0)([1.0])) == (
        ValueError,
        "wrong number of inputs: Neuron takes 0, got 1",
    )


@pytest.mark.parametrize("x", [5.0, None, 3])
def test_inputs_that_are_not_iterable(nn, x):
    assert raised(lambda: nn.MLP(2, [3, 1])(x)) == (
        TypeError,
        f"'{type(x).__name__}' object is not iterable",
    )


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


def test_a_cpp_layer_of_oracle_values():
    """A C++ Layer whose neurons hold the oracle's Values computes in the oracle's Values, and
    one neuron's output comes alone, as ever."""
    from micrograd_cpp import nn
    from micrograd_cpp.pure.engine import Value as PureValue

    for nout in (1, 2):
        layer = nn.Layer(2, nout)
        for n in layer.neurons:
            n.w = [PureValue(0.5), PureValue(-2.0)]
            n.b = PureValue(1.0)
        out = layer([2.0, 0.25])
        outs = [out] if nout == 1 else out
        assert [type(o) for o in outs] == [PureValue] * nout
        assert [o.data for o in outs] == [1.5] * nout


def _tanh_neuron(nn):
    class TanhNeuron(nn.Neuron):
        def __call__(self, x):
            return super().__call__(x).tanh()

    return TanhNeuron


def _change(nn, model, case):
    """A change to an MLP(2, [4, 4, 3, 1]) that sends its second layer off the common path."""
    layer = model.layers[1]
    if case == "a user's neuron":
        random.seed(7)
        layer.neurons[2] = _tanh_neuron(nn)(4)
    elif case == "a user's layer":
        random.seed(7)
        model.layers[1] = type("TanhLayer", (nn.Layer,), {"_Neuron": _tanh_neuron(nn)})(4, 4)
    elif case == "weights in a tuple, first neuron":
        layer.neurons[0].w = tuple(layer.neurons[0].w)
    elif case == "weights in a tuple, last neuron":
        layer.neurons[3].w = tuple(layer.neurons[3].w)
    elif case == "nonlin not a bool":
        layer.neurons[1].nonlin = 1
    elif case == "a layer of one neuron":
        layer.neurons[1:] = []


@pytest.mark.parametrize(
    "case",
    [
        "a user's neuron",
        "a user's layer",
        "weights in a tuple, first neuron",
        "weights in a tuple, last neuron",
        "nonlin not a bool",
        "a layer of one neuron",
    ],
)
def test_an_mlp_off_the_common_path_equals_the_oracle(nn, case):
    """Hidden layers' outputs become Values wherever Python code takes them, mid-layer too."""
    model, oracle = build(nn, 5, 2, [4, 4, 3, 1]), build(pure_nn, 5, 2, [4, 4, 3, 1])
    _change(nn, model, case)
    _change(pure_nn, oracle, case)
    x = [0.5, -1.5]
    if case == "a layer of one neuron":  # its Value goes on to the next layer, which refuses it
        before = state(model.parameters())
        assert raised(lambda: model(x))[0] is raised(lambda: oracle(x))[0] is TypeError
        assert state(model.parameters()) == before
        return
    out, ref = model(list(map(nn.Neuron._Value, x))), oracle(list(map(PureValue, x)))
    out.backward()
    ref.backward()
    assert graph(out) == graph(ref)
    assert [p.grad for p in model.parameters()] == [p.grad for p in oracle.parameters()]
