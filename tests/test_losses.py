"""The losses build, float for float, the graphs of the demo code they come from."""

import math
import random
import warnings

import numpy as np
import pytest
from helpers import cpp_nn, graph

with warnings.catch_warnings():  # without the extension the package warns; the oracle still runs
    warnings.simplefilter("ignore", RuntimeWarning)
    from micrograd_cpp import losses
    from micrograd_cpp.datasets import make_moons
    from micrograd_cpp.pure import nn as pure_nn
    from micrograd_cpp.pure.engine import Value as PureValue


@pytest.fixture(scope="module", params=["cpp", "pure"])
def nn(request):
    """The nn module under test: micrograd_cpp.nn (on the C++ engine), or the oracle's."""
    return pure_nn if request.param == "pure" else cpp_nn()


def notebook_loss(model, X, y, Value):
    """demo.ipynb's loss(), verbatim but for the model and data passed in."""
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores, strict=True)]
    data_loss = sum(losses) * (1.0 / len(losses))
    alpha = 1e-4
    reg_loss = alpha * sum(p * p for p in model.parameters())
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores, strict=True)]
    return total_loss, sum(accuracy) / len(accuracy)


def model_and_data(nn_module, n=20, seed=1337):
    X, y = make_moons(n, noise=0.1, seed=seed)
    random.seed(seed)
    return nn_module.MLP(2, [8, 8, 1]), X, y


def test_svm_loss_is_the_notebooks(nn):
    model, X, y = model_and_data(nn)
    oracle, _, _ = model_and_data(pure_nn)
    loss, acc = losses.svm_loss(model, X, y)
    ref, ref_acc = notebook_loss(oracle, X, y, PureValue)
    loss.backward()
    ref.backward()
    assert graph(loss) == graph(ref)
    assert acc == ref_acc and type(acc) is float
    assert [p.grad for p in model.parameters()] == [p.grad for p in oracle.parameters()]


def test_svm_loss_of_the_notebooks_first_step(nn):
    """demo.ipynb printed `step 0 loss 0.8958441028683222, accuracy 50.0%`."""
    X, y = make_moons(100, noise=0.1, seed=1337)
    random.seed(1337)
    loss, acc = losses.svm_loss(nn.MLP(2, [16, 16, 1]), X, y)
    assert (loss.data, acc) == (0.8958441028683222, 0.5)


def test_svm_loss_labels_and_alpha(nn):
    model, X, y = model_and_data(nn, n=10)
    ref = losses.svm_loss(model, X, y)[0].data
    assert losses.svm_loss(model, X.tolist(), [int(v) for v in y])[0].data == ref
    no_reg = losses.svm_loss(model, X, y, alpha=0.0)[0].data
    reg = sum(p.data * p.data for p in model.parameters())
    assert math.isclose(ref - no_reg, 1e-4 * reg, rel_tol=1e-9)


@pytest.mark.parametrize(
    ("rows", "labels"),
    [(10, 2), (2, 10), (0, 0)],
    ids=["fewer labels", "fewer rows", "empty"],
)
def test_svm_loss_needs_a_label_per_row(nn, rows, labels):
    model, X, y = model_and_data(nn, n=10)
    for X_, y_ in [(X[:rows], y[:labels]), (X[:rows].tolist(), list(y[:labels]))]:
        with pytest.raises(ValueError, match=f"got {rows} and {labels}"):
            losses.svm_loss(model, X_, y_)
        inputs = [list(map(type(model.parameters()[0]), row)) for row in X_]
        with pytest.raises(ValueError, match=f"got {rows} and {labels}"):
            losses.svm_loss_graph(model, inputs, y_)


def test_svm_loss_of_generators(nn):
    """Generators are read once, as the lists they yield."""
    model, X, y = model_and_data(nn, n=10)
    loss, acc = losses.svm_loss(model, (row for row in X), (label for label in y))
    ref, ref_acc = losses.svm_loss(model, X, y)
    assert graph(loss) == graph(ref) and acc == ref_acc
    with pytest.raises(ValueError, match="got 10 and 9"):
        losses.svm_loss(model, (row for row in X), (label for label in y[:9]))


def test_accuracy(backend):
    scores = [backend(0.5), backend(-2.0), backend(1.0), backend(-0.1)]
    assert losses.accuracy(scores, [1, -1, -1, 1]) == 0.5
    assert losses.accuracy(scores, np.array([1.0, -1.0, 1.0, -1.0])) == 1.0
    assert losses.accuracy(iter(scores), (v for v in [1, 1, 1, 1])) == 0.5
    for labels in ([1], np.array([1.0]), [1, -1, 1, -1, 1], (v for v in [1, -1])):
        with pytest.raises(ValueError, match="accuracy needs as many labels as scores"):
            losses.accuracy(scores, labels)
    with pytest.raises(ValueError, match="got 0 and 0"):
        losses.accuracy([], np.array([]))


def test_mse(backend):
    preds = [backend(1.0), backend(-2.0), backend(0.5)]
    loss = losses.mse(preds, [0.0, np.float64(-1.0), 2])
    loss.backward()
    assert loss.data == (1.0 + 1.0 + 2.25) * (1.0 / 3)
    assert [p.grad for p in preds] == [2 * 1.0 / 3, 2 * -1.0 / 3, 2 * -1.5 / 3]
    ref = losses.mse([PureValue(x) for x in (1.0, -2.0, 0.5)], [0.0, -1.0, 2])
    ref.backward()
    assert graph(loss) == graph(ref)
    with pytest.raises(ValueError, match="as many targets"):
        losses.mse(preds, [1.0])
    with pytest.raises(ValueError):
        losses.mse([], [])


def eureka_cross_entropy(logits, target):
    """EurekaLabsAI/micrograd's cross_entropy, verbatim."""
    ex = [x.exp() for x in logits]
    denom = sum(ex)
    probs = [x / denom for x in ex]
    logp = (probs[target]).log()
    nll = -logp
    return nll


@pytest.mark.parametrize("target", [0, 1, 2, -1])
def test_cross_entropy(backend, target):
    data = [0.5, -1.25, 2.0]
    logits = [backend(x) for x in data]
    loss = losses.cross_entropy(logits, target)
    loss.backward()
    ref_logits = [PureValue(x) for x in data]
    ref = eureka_cross_entropy(ref_logits, target)
    ref.backward()
    assert graph(loss) == graph(ref)
    # and it is the softmax's negative log-likelihood, with gradient softmax - onehot
    z = sum(math.exp(x) for x in data)
    assert math.isclose(loss.data, -math.log(math.exp(data[target]) / z), rel_tol=1e-12)
    onehot = [float(i == target % 3) for i in range(3)]
    expected = [math.exp(x) / z - t for x, t in zip(data, onehot, strict=True)]
    assert all(
        math.isclose(v.grad, g, abs_tol=1e-12) for v, g in zip(logits, expected, strict=True)
    )


def test_cross_entropy_over_an_mlp(nn):
    random.seed(42)
    model = nn.MLP(2, [8, 3])
    loss = losses.cross_entropy(model([0.3, -0.7]), 2)
    loss.backward()
    random.seed(42)
    oracle = pure_nn.MLP(2, [8, 3])
    ref = eureka_cross_entropy(oracle([0.3, -0.7]), 2)
    ref.backward()
    assert graph(loss) == graph(ref)


def random_logits(rng, scales=(0.1, 1.0, 10.0, 30.0)):
    """A few logits, spread by a scale drawn from scales. With the default scales, they stay
    where EurekaLabs' form is accurate: further apart, the square of its denominator underflows
    and its gradients with it."""
    n = rng.randint(2, 12)
    scale = rng.choice(scales)
    return [rng.gauss(0.0, scale) for _ in range(n)], rng.randrange(n)


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def test_cross_entropy_graph_is_eurekalabs_cross_entropy(backend):
    """The same loss and gradients as losses.cross_entropy (EurekaLabs' form) to 1e-12."""
    rng = random.Random(13)
    for _ in range(500):
        data, target = random_logits(rng)
        logits = [backend(x) for x in data]
        targets = [backend(t) for t in losses.one_hot(target, len(data))]
        loss = losses.cross_entropy_graph(logits, targets)
        loss.backward()
        ref_logits = [PureValue(x) for x in data]
        ref = eureka_cross_entropy(ref_logits, target)
        ref.backward()
        assert close(loss.data, ref.data), (data, target)
        assert all(close(v.grad, r.grad) for v, r in zip(logits, ref_logits, strict=True))


def test_cross_entropy_graph_far_apart(backend):
    """Logits hundreds apart: the loss and its gradient softmax - onehot, computed in floats."""
    rng = random.Random(5)
    for _ in range(200):
        data, target = random_logits(rng, scales=(100.0, 300.0))
        logits = [backend(x) for x in data]
        loss = losses.cross_entropy_graph(logits, losses.one_hot(target, len(data)))
        loss.backward()
        top = max(data)
        z = math.fsum(math.exp(x - top) for x in data)
        assert close(loss.data, math.log(z) - (data[target] - top))
        expected = [math.exp(x - top) / z - (j == target) for j, x in enumerate(data)]
        assert all(close(v.grad, g) for v, g in zip(logits, expected, strict=True))


def test_cross_entropy_graph_cpp_is_the_oracle(backends):
    """Node for node, float for float, on both engines."""
    Cpp, Pure = backends
    rng = random.Random(7)
    for _ in range(200):
        data, target = random_logits(rng, scales=(0.1, 1.0, 10.0, 100.0, 1000.0))
        onehot = losses.one_hot(target, len(data))
        roots = []
        for V in (Cpp, Pure):
            root = losses.cross_entropy_graph([V(x) for x in data], [V(t) for t in onehot])
            root.backward()
            roots.append(graph(root))
        assert roots[0] == roots[1]


def test_cross_entropy_graph_replays_for_every_label(backend):
    """One compiled graph serves every label and every logit: set the leaves, replay, and get
    what a graph built afresh for them gives."""
    from micrograd_cpp import compile as compile_graph

    rng = random.Random(3)
    logits = [backend(0.0) for _ in range(5)]
    targets = [backend(t) for t in losses.one_hot(0, 5)]
    loss = losses.cross_entropy_graph(logits, targets)
    prog = compile_graph(loss)
    for _ in range(50):
        data, label = [rng.gauss(0.0, 20.0) for _ in range(5)], rng.randrange(5)
        for v, x in zip(logits + targets, data + losses.one_hot(label, 5), strict=True):
            v.data, v.grad = x, 0.0
        prog.forward()
        prog.backward()
        fresh = [backend(x) for x in data]
        ref = losses.cross_entropy_graph(fresh, losses.one_hot(label, 5))
        ref.backward()
        assert loss.data == ref.data
        assert [v.grad for v in logits] == [v.grad for v in fresh]
        assert close(loss.data, losses.cross_entropy([PureValue(x) for x in data], label).data)


def test_cross_entropy_graph_is_stable(backend):
    """Logits far beyond exp's range: EurekaLabs' form overflows, the shifted form is exact."""
    logits = [backend(x) for x in (1000.0, 0.0, -1000.0)]
    with pytest.raises(OverflowError):
        losses.cross_entropy(logits, 1)
    for label, expected in [(0, 0.0), (1, 1000.0), (2, 2000.0)]:
        loss = losses.cross_entropy_graph(logits, losses.one_hot(label, 3))
        loss.backward()
        assert loss.data == expected
    # replayed after the logits moved by far more than exp's range: the shift moves with them
    from micrograd_cpp import compile as compile_graph

    prog = compile_graph(loss)
    logits[2].data = 5000.0
    prog.forward()
    assert loss.data == 0.0


def test_cross_entropy_graph_of_soft_targets(backend):
    """Targets may be any distribution: -sum(t * log softmax)."""
    data, targets = [0.5, -1.0, 2.0], [0.1, 0.2, 0.7]
    loss = losses.cross_entropy_graph([backend(x) for x in data], targets)
    z = sum(math.exp(x) for x in data)
    expected = -sum(t * math.log(math.exp(x) / z) for x, t in zip(data, targets, strict=True))
    assert close(loss.data, expected)


def test_log_softmax(backend):
    data = [0.5, -1.0, 2.0, 2.0]
    z = sum(math.exp(x) for x in data)
    out = losses.log_softmax([backend(x) for x in data])
    assert all(close(v.data, math.log(math.exp(x) / z)) for v, x in zip(out, data, strict=True))
    assert losses.log_softmax([backend(3.0)])[0].data == 0.0
    with pytest.raises(ValueError, match="at least one logit"):
        losses.log_softmax([])


def test_cross_entropy_graph_needs_a_target_per_logit(backend):
    with pytest.raises(ValueError, match="got 3 and 2"):
        losses.cross_entropy_graph([backend(0.0)] * 3, [0.0, 1.0])
    with pytest.raises(ValueError, match="got 0 and 0"):
        losses.cross_entropy_graph([], [])


def test_one_hot():
    assert losses.one_hot(2, 4) == [0.0, 0.0, 1.0, 0.0]
    for label in (-1, 4):
        with pytest.raises(ValueError, match=f"label {label} is not one of 4 classes"):
            losses.one_hot(label, 4)
