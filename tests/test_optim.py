"""SGD and AdamW: torch's results, a hand-written loop's, and the same floats on both backends."""

import math
import random
import warnings

import pytest

with warnings.catch_warnings():  # without the extension the package warns; the oracle still runs
    warnings.simplefilter("ignore", RuntimeWarning)
    import micrograd_cpp
    from micrograd_cpp import optim
    from micrograd_cpp.pure.engine import Value as PureValue

N, STEPS = 12, 25
SGD_CONFIGS = [
    {"lr": 0.1},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.05, "weight_decay": 0.01},
    {"lr": 0.02, "momentum": 0.5, "weight_decay": 0.1},
]
ADAMW_CONFIGS = [
    {},
    {"lr": 0.01},
    {"lr": 0.05, "betas": (0.3, 0.9), "eps": 1e-6, "weight_decay": 0.1},
    {"lr": 0.02, "betas": (0.9, 0.95), "weight_decay": 0.0},
]


def initial(i):
    return math.cos(2.1 * i) * (1 + i % 4)


def gradient(t, i, p):
    """A made-up gradient that depends on the step and the parameter's value."""
    return math.sin(1.3 * i + 0.7 * t) * (1 + i % 3) + 0.1 * p


def run(params, opt, steps=STEPS):
    """Feed the optimizer the made-up gradients, halving lr once (a schedule)."""
    for t in range(steps):
        opt.zero_grad()
        assert all(p.grad == 0.0 for p in params)
        for i, p in enumerate(params):
            p.grad = gradient(t, i, p.data)
        opt.step()
        if t == STEPS // 2:
            opt.lr = opt.lr * 0.5
    return [p.data for p in params]


def run_torch(make, config):
    torch = pytest.importorskip("torch")
    params = [torch.tensor([initial(i)], dtype=torch.float64) for i in range(N)]
    opt = make(torch.optim)(params, **config)
    for t in range(STEPS):
        for i, p in enumerate(params):
            p.grad = torch.tensor([gradient(t, i, p.item())], dtype=torch.float64)
        opt.step()
        if t == STEPS // 2:
            for group in opt.param_groups:
                group["lr"] = group["lr"] * 0.5
    return [p.item() for p in params]


def close(ours, theirs, rel=1e-12):
    return all(
        math.isclose(a, b, rel_tol=rel, abs_tol=rel) for a, b in zip(ours, theirs, strict=True)
    )


@pytest.mark.parametrize("config", SGD_CONFIGS)
def test_sgd_matches_torch_and_the_hand_loop(backend, config):
    params = [backend(initial(i)) for i in range(N)]
    ours = run(params, optim.SGD(params, **config))
    assert close(ours, run_torch(lambda o: o.SGD, config))

    # the hand loop: torch's documented update, float for float
    lr, mu, wd = config["lr"], config.get("momentum", 0.0), config.get("weight_decay", 0.0)
    p, buf = [initial(i) for i in range(N)], [None] * N
    for t in range(STEPS):
        for i in range(N):
            g = gradient(t, i, p[i]) + wd * p[i]
            if mu:
                buf[i] = g if buf[i] is None else mu * buf[i] + g
                g = buf[i]
            p[i] -= lr * g
        if t == STEPS // 2:
            lr *= 0.5
    assert ours == p


@pytest.mark.parametrize("config", ADAMW_CONFIGS)
def test_adamw_matches_torch_and_the_hand_loop(backend, config):
    params = [backend(initial(i)) for i in range(N)]
    ours = run(params, optim.AdamW(params, **config))
    assert close(ours, run_torch(lambda o: o.AdamW, config))

    # the hand loop: the AdamW algorithm as torch's documentation writes it
    lr, eps, wd = config.get("lr", 1e-3), config.get("eps", 1e-8), config.get("weight_decay", 1e-2)
    beta1, beta2 = config.get("betas", (0.9, 0.999))
    p, m, v = [initial(i) for i in range(N)], [0.0] * N, [0.0] * N
    for t in range(1, STEPS + 1):
        for i in range(N):
            g = gradient(t - 1, i, p[i])
            p[i] -= lr * wd * p[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat, v_hat = m[i] / (1 - beta1**t), v[i] / (1 - beta2**t)
            p[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
        if t - 1 == STEPS // 2:
            lr *= 0.5
    assert close(ours, p, rel=1e-10)


@pytest.mark.parametrize(
    "make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01), optim.AdamW]
)
def test_backends_agree_exactly(backend, make):
    params = [backend(initial(i)) for i in range(N)]
    oracle = [PureValue(initial(i)) for i in range(N)]
    assert run(params, make(params)) == run(oracle, make(oracle))


def test_sgd_is_the_notebook_update(backend):
    """SGD(lr) without momentum is demo.ipynb's `p.data -= learning_rate * p.grad`."""
    params = [backend(initial(i)) for i in range(N)]
    opt = optim.SGD(params, lr=1.0)
    p = [initial(i) for i in range(N)]
    for k in range(10):
        grads = [gradient(k, i, x) for i, x in enumerate(p)]
        for param, g in zip(params, grads, strict=True):
            param.grad = g
        opt.lr = 1.0 - 0.9 * k / 100
        opt.step()
        p = [x - (1.0 - 0.9 * k / 100) * g for x, g in zip(p, grads, strict=True)]
    assert [q.data for q in params] == p


def test_training_a_model(backend):
    """AdamW fits a line: y = 2x - 1."""
    w, b = backend(0.0), backend(0.0)
    opt = optim.AdamW([w, b], lr=0.1, weight_decay=0.0)
    random.seed(0)
    xs = [random.uniform(-1, 1) for _ in range(20)]
    for _ in range(300):
        loss = sum(((w * x + b) - (2 * x - 1)) ** 2 for x in xs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(w.data - 2) < 1e-2 and abs(b.data + 1) < 1e-2


def test_state_and_attributes():
    params = [PureValue(1.0), PureValue(2.0)]
    sgd = optim.SGD(iter(params), lr=0.5)
    assert sgd.params == params and sgd.lr == 0.5 and sgd.momentum == 0.0
    adamw = optim.AdamW(params)
    assert (adamw.lr, adamw.betas, adamw.eps, adamw.weight_decay) == (
        1e-3,
        (0.9, 0.999),
        1e-8,
        1e-2,
    )
    for p in params:
        p.grad = 1.0
    adamw.step()
    assert adamw.t == 1 and all(math.isclose(m, 0.1) for m in adamw.m)
    adamw.zero_grad()
    assert [p.grad for p in params] == [0.0, 0.0]


def test_one_call_per_step_on_cpp(backend, monkeypatch):
    """With the extension's step functions (recorders here), a step is one call, given the state."""
    calls = []
    monkeypatch.setattr(optim._backend, "CppValue", backend)
    monkeypatch.setattr(
        optim._backend, "fused", lambda name: lambda *args: calls.append((name, args))
    )
    params = [backend(1.0), backend(2.0)]
    sgd = optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
    sgd.step()
    sgd.lr = 0.05
    sgd.step()
    assert calls == [
        ("sgd_step", (sgd.params, sgd.buf, 1, 0.1, 0.9, 0.01)),
        ("sgd_step", (sgd.params, sgd.buf, 2, 0.05, 0.9, 0.01)),
    ]
    calls.clear()
    adamw = optim.AdamW(params, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    adamw.step()
    assert calls == [
        ("adamw_step", (adamw.params, adamw.m, adamw.v, 1, 0.01, 0.8, 0.99, 1e-6, 0.1))
    ]
    assert [p.data for p in params] == [1.0, 2.0]  # the recorders did not move them
    calls.clear()
    mixed = optim.SGD([*params, PureValue(3.0)], lr=0.1)
    if backend is not PureValue:  # not all C++ Values: the Python loop
        mixed.step()
        assert not calls


def test_zero_grad_is_the_setter_on_every_parameter(backends):
    """opt.zero_grad() (one call on C++) does what `p.grad = 0.0` does for each parameter, also
    for an inner node, which a compiled program's next backward then starts from."""
    results = []
    for V in backends:
        x = V(2.0)
        y = x * 3
        prog = micrograd_cpp.compile(y * y)
        prog.backward()  # y.grad 12, x.grad 36
        opt = optim.SGD([x, y], lr=0.1)
        opt.zero_grad()
        assert [type(x.grad), x.grad, y.grad] == [float, 0.0, 0.0]
        prog.backward()
        results.append((x.grad, y.grad))
    assert results[0] == results[1] == (36.0, 12.0)
