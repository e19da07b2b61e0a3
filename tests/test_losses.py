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
