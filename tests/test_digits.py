"""python -m micrograd_cpp digits: it learns, its compiled steps are the rebuilt ones, and it says
what it needs when scikit-learn is missing."""

import random
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from helpers import cpp_nn

with warnings.catch_warnings():  # without the extension the package warns; the oracle still runs
    warnings.simplefilter("ignore", RuntimeWarning)
    from micrograd_cpp import datasets, digits, losses, ops
    from micrograd_cpp.engine import Value
    from micrograd_cpp.nn import MLP
    from micrograd_cpp.pure import nn as pure_nn

ACCURACY = re.compile(
    r"^test accuracy (\d+\.\d)% \((\d+) of 360 images\) after (\d+) epochs?: "
    r"\d+\.\d+ s an epoch, \d+\.\d+ ms a step$",
    re.MULTILINE,
)
EPOCH = re.compile(
    r"^epoch (\d+)/(\d+): loss \d+\.\d+, train accuracy \d+\.\d%, test accuracy \d+\.\d%, "
    r"\d+\.\d+ s \(\d+\.\d+ ms a step\)$",
    re.MULTILINE,
)


def cli(*args, code=None):
    """python -m micrograd_cpp digits ARGS, or python -c code with ARGS as its arguments."""
    command = ["-m", "micrograd_cpp", "digits"] if code is None else ["-c", code, "digits"]
    return subprocess.run(
        [sys.executable, *command, *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_a_quick_run_learns():
    pytest.importorskip("sklearn")
    run = cli("--quick", "--epochs", "1")
    assert run.returncode == 0, run.stderr
    assert [m.groups() for m in EPOCH.finditer(run.stdout)] == [("1", "1")]
    found = ACCURACY.search(run.stdout)
    assert found, run.stdout
    percent, right, epochs = found.groups()
    assert epochs == "1"
    assert float(percent) == round(int(right) / 360 * 100, 1)
    assert int(right) > 180  # one epoch: far above chance (36 of 360)
    assert re.search(
        r"^(micrograd 0\.1\.0: \d+\.\d+ s a step, scaled from 4 images to 32, so .* an epoch "
        r"and .* for 1 epoch, [\d,]+x as long as this run"
        r"|micrograd is not installed \(pip install micrograd==0\.1\.0\): no comparison)$",
        run.stdout,
        re.MULTILINE,
    ), run.stdout


def test_without_scikit_learn():
    """The command and the loader name the extra to install."""
    blocked = (
        "import sys, runpy; sys.modules['sklearn'] = None; sys.argv[0] = 'micrograd_cpp'; "
        "runpy.run_module('micrograd_cpp', run_name='__main__')"
    )
    run = cli("--quick", code=blocked)
    assert run.returncode == 2
    assert "pip install 'micrograd-cpp[digits]'" in run.stderr
    assert "epoch" not in run.stdout


def test_load_digits_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'micrograd-cpp[digits]'")):
        datasets.load_digits()


def test_load_digits():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    X_train, y_train, X_test, y_test = datasets.load_digits()
    assert X_train.shape == (1437, 64) and X_test.shape == (360, 64)
    assert y_train.shape == (1437,) and y_test.shape == (360,)
    assert X_train.min() == 0.0 and X_train.max() == 1.0
    assert set(y_train.tolist()) == set(range(10))
    # the split shuffles scikit-learn's images, each kept once
    full = sklearn_datasets.load_digits()
    pairs = [
        (row.tobytes(), label) for row, label in zip(full.data / 16.0, full.target, strict=True)
    ]
    ours = [
        (row.tobytes(), label)
        for row, label in zip(
            np.vstack([X_train, X_test]), np.concatenate([y_train, y_test]), strict=True
        )
    ]
    assert sorted(ours) == sorted(pairs) and ours != pairs
    again = datasets.load_digits()
    assert all(
        np.array_equal(a, b) for a, b in zip(again, (X_train, y_train, X_test, y_test), strict=True)
    )
    other = datasets.load_digits(seed=1)
    assert not np.array_equal(other[1], y_train)
    with pytest.raises(ValueError, match="n_test"):
        datasets.load_digits(n_test=0)


def test_bad_flags():
    for args in (["--epochs", "0"], ["--seed", "-1"]):
        run = cli(*args)
        assert run.returncode == 2 and "error" in run.stderr


def small_data(n, seed=0):
    rng = np.random.RandomState(seed)
    return rng.uniform(0, 1, (n, 64)), rng.randint(0, 10, n).astype(np.intp)


def test_compiled_steps_are_rebuilt_steps():
    """Training through the compiled batch gives the very parameters that building the loss
    graph afresh each step (with the labels as plain numbers) gives."""
    X, y = small_data(12)
    random.seed(5)
    model = MLP(64, [32, 10])
    random.seed(5)
    rebuilt = MLP(64, [32, 10])
    batch = digits.CompiledBatch(model, size=4)
    opt = digits.optim.SGD(model.parameters(), lr=digits.LR)
    for k in range(3):
        rows = slice(4 * k, 4 * k + 4)
        batch.load(X[rows], y[rows])
        opt.zero_grad()
        batch.program.backward()
        opt.step()
        logits = [rebuilt([Value(x) for x in row]) for row in X[rows].tolist()]
        sample_losses = [
            losses.cross_entropy_graph(lg, losses.one_hot(label, 10))
            for lg, label in zip(logits, y[rows].tolist(), strict=True)
        ]
        loss = ops.sum(sample_losses) * (1.0 / 4)
        rebuilt.zero_grad()
        loss.backward()
        for p in rebuilt.parameters():
            p.data -= digits.LR * p.grad
        assert batch.loss.data == loss.data
        assert [p.data for p in model.parameters()] == [p.data for p in rebuilt.parameters()]
        eureka = [
            losses.cross_entropy(lg, label)
            for lg, label in zip(logits, y[rows].tolist(), strict=True)
        ]
        assert abs(loss.data - sum(e.data for e in eureka) / 4) < 1e-12


def test_cpp_trains_as_the_oracle():
    """The same steps on the C++ engine and on the oracle: the same parameters, bit for bit."""
    nn = cpp_nn()
    X, y = small_data(8)
    trained = []
    for mlp in (nn.MLP, pure_nn.MLP):
        random.seed(9)
        model = mlp(64, [32, 10])
        batch = digits.CompiledBatch(model, size=4)
        opt = digits.optim.SGD(model.parameters(), lr=digits.LR)
        for k in range(2):
            digits.train_epoch(batch, opt, X, y, np.random.RandomState(k), lambda: None)
        trained.append([p.data for p in model.parameters()])
    assert trained[0] == trained[1]


def test_evaluate_pads_the_last_batch():
    """Test images that do not fill the last batch are counted once each."""
    X, y = small_data(7)
    random.seed(2)
    model = MLP(64, [32, 10])
    batch = digits.CompiledBatch(model, size=4)
    predicted = []
    for row in X.tolist():
        out = model(row)
        predicted.append(max(range(10), key=lambda j: out[j].data))
    assert digits.evaluate(batch, X, y) == sum(
        p == t for p, t in zip(predicted, y.tolist(), strict=True)
    )
    assert digits.evaluate(batch, X, np.array(predicted, dtype=np.intp)) == 7


def test_micrograd_is_timed_on_its_own_steps():
    """The lecture's exp and log are added to micrograd only while it is timed, and its step
    leaves the caller's random state as it was."""
    engine = pytest.importorskip("micrograd.engine")
    X, y = small_data(2)
    random.seed(3)
    model = MLP(64, [32, 10])
    state = random.getstate()
    seconds = digits.time_micrograd(model, X, y, steps=2, size=1)
    assert seconds is not None and seconds > 0
    assert random.getstate() == state
    assert not hasattr(engine.Value, "exp") and not hasattr(engine.Value, "log")


def test_lecture_exp_log_gradients():
    engine = pytest.importorskip("micrograd.engine")
    with digits.lecture_exp_log(engine.Value):
        logits = [engine.Value(x) for x in (0.5, -1.0, 2.0)]
        loss = digits.eurekalabs_cross_entropy(logits, 1)
        loss.backward()
    ref_logits = [Value(x) for x in (0.5, -1.0, 2.0)]
    ref = losses.cross_entropy(ref_logits, 1)
    ref.backward()
    assert abs(loss.data - ref.data) < 1e-12
    assert all(abs(a.grad - b.grad) < 1e-12 for a, b in zip(logits, ref_logits, strict=True))


def test_without_micrograd(monkeypatch):
    monkeypatch.setitem(sys.modules, "micrograd", None)
    X, y = small_data(1)
    assert digits.time_micrograd(MLP(64, [32, 10]), X, y, steps=1, size=1) is None
