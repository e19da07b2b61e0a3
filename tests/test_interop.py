"""micrograd_cpp.interop: an MLP and its torch.nn.Sequential compute the same, both ways."""

import random
import re
import sys
import warnings

import pytest
from helpers import cpp_nn

with warnings.catch_warnings():  # without the extension the package warns; the oracle still runs
    warnings.simplefilter("ignore", RuntimeWarning)
    from micrograd_cpp import interop
    from micrograd_cpp.pure import nn as pure_nn

SIZES = [(3, [1]), (2, [16, 16, 1]), (64, [32, 10]), (5, [4, 7, 3, 2])]


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="module", params=["cpp", "pure"])
def nn(request):
    return pure_nn if request.param == "pure" else cpp_nn()


def close(a, b):
    return abs(a - b) <= 1e-12 * max(1.0, abs(b))


def outputs(model, x):
    out = model(x)
    return [v.data for v in out] if isinstance(out, list) else [out.data]


@pytest.mark.parametrize(("nin", "nouts"), SIZES)
def test_to_torch(torch, nn, nin, nouts):
    random.seed(nin)
    model = nn.MLP(nin, nouts)
    torch_state = torch.random.get_rng_state()
    seq = interop.to_torch(model)
    assert torch.equal(torch.random.get_rng_state(), torch_state)  # torch's init was skipped
    kinds = [type(m).__name__ for m in seq]
    assert kinds == ["Linear", "ReLU"] * (len(nouts) - 1) + ["Linear"]
    linears = [m for m in seq if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == list(
        zip([nin, *nouts], nouts, strict=False)
    )
    assert all(m.weight.dtype == torch.float64 for m in linears)
    params = [
        p
        for m in linears
        for row, b in zip(m.weight.tolist(), m.bias.tolist(), strict=True)
        for p in (*row, b)
    ]
    assert params == [p.data for p in model.parameters()]  # micrograd's order: weights, bias
    rng = random.Random(1)
    for _ in range(20):
        x = [rng.uniform(-2, 2) for _ in range(nin)]
        expected = seq(torch.tensor(x, dtype=torch.float64)).tolist()
        assert all(close(a, b) for a, b in zip(outputs(model, x), expected, strict=True))


def test_gradients_agree(torch, nn):
    random.seed(3)
    model = nn.MLP(4, [8, 3])
    seq = interop.to_torch(model)
    x = [0.5, -1.5, 0.25, 2.0]
    out = model(x)
    (out[0] * 1.0 + out[1] * -2.0 + out[2] * 0.5).backward()
    t = seq(torch.tensor(x, dtype=torch.float64))
    (t * torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)).sum().backward()
    torch_grads = [
        g
        for m in seq
        if isinstance(m, torch.nn.Linear)
        for row, b in zip(m.weight.grad.tolist(), m.bias.grad.tolist(), strict=True)
        for g in (*row, b)
    ]
    assert all(close(p.grad, g) for p, g in zip(model.parameters(), torch_grads, strict=True))


@pytest.mark.parametrize(("nin", "nouts"), SIZES)
def test_round_trip(torch, nn, nin, nouts):
    random.seed(7)
    model = nn.MLP(nin, nouts)
    state = random.getstate()
    back = interop.from_torch(interop.to_torch(model), nn.MLP)
    assert random.getstate() == state
    assert type(back) is nn.MLP and repr(back) == repr(model)
    assert [p.data for p in back.parameters()] == [p.data for p in model.parameters()]
    x = [0.1 * i - 0.3 for i in range(nin)]
    assert outputs(back, x) == outputs(model, x)  # the same weights, nodes and order


def test_from_torch(torch, nn):
    """A Sequential made by torch (float32, its own initialisation) becomes an MLP with its
    float32 weights exactly, computing what the float64 copy of it computes."""
    torch.manual_seed(0)
    seq = torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4), torch.nn.ReLU()
    )
    model = interop.from_torch(seq, nn.MLP)
    assert repr(model) == "MLP of [Layer of [" + ", ".join(["ReLUNeuron(6)"] * 5) + "], " + (
        "Layer of [" + ", ".join(["ReLUNeuron(5)"] * 4) + "]]"
    )
    wide = seq.double()
    rng = random.Random(2)
    for _ in range(20):
        x = [rng.uniform(-3, 3) for _ in range(6)]
        expected = wide(torch.tensor(x, dtype=torch.float64)).tolist()
        assert all(close(a, b) for a, b in zip(outputs(model, x), expected, strict=True))


def test_from_torch_default_is_the_engines_mlp(torch):
    from micrograd_cpp import nn

    seq = torch.nn.Sequential(torch.nn.Linear(2, 3, bias=False))
    model = interop.from_torch(seq)
    assert type(model) is nn.MLP
    assert [n.b.data for n in model.layers[0].neurons] == [0.0, 0.0, 0.0]
    assert [n.nonlin for n in model.layers[0].neurons] == [False] * 3


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        (lambda t: [t.nn.Linear(2, 3), t.nn.Tanh()], "module 1: Tanh() has no micrograd"),
        (lambda t: [t.nn.ReLU(), t.nn.Linear(2, 3)], "module 0: ReLU()"),
        (lambda t: [t.nn.Linear(2, 3), t.nn.ReLU(), t.nn.ReLU()], "module 2: ReLU()"),
        (lambda t: [t.nn.Linear(2, 3), t.nn.Linear(4, 1)], "Linear takes 4 inputs, but the"),
        (lambda t: [], "no Linear module"),
    ],
)
def test_from_torch_refuses(torch, modules, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        interop.from_torch(torch.nn.Sequential(*modules(torch)))


def test_to_torch_refuses_mixed_layers(torch, nn):
    model = nn.MLP(2, [3, 1])
    model.layers[0].neurons[1].nonlin = False
    with pytest.raises(ValueError, match="layer 0 mixes ReLU and linear neurons"):
        interop.to_torch(model)


def test_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    for call in (lambda: interop.to_torch(pure_nn.MLP(2, [1])), lambda: interop.from_torch([])):
        with pytest.raises(ImportError, match=re.escape("PyTorch, which is not installed")):
            call()
