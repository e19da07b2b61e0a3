"""Optimizer steps against Python code that fights back: a buffer entry's __float__ that empties
the buffer or the params, a generator of params, a memory limit. Each case runs in a fresh
interpreter, so that a crash fails its test instead of the run; the C++ step must then give what
the pure step (the oracle) gives for the same state, or the same exception."""

import pytest
from helpers import raised, run_isolated, run_with_memory_limit, under_sanitizer
from micrograd_cpp import optim
from micrograd_cpp.pure.engine import Value as PureValue

DATA, GRADS = [1.0, 2.0, 3.0], [0.5, -0.25, 2.0]
MAKERS = {
    "SGD": lambda params: optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1),
    "AdamW": lambda params: optim.AdamW(params, lr=0.1),
}
BUFFERS = {"SGD": ("buf",), "AdamW": ("m", "v")}
CHANGES = {"clear()": list.clear, "append(0.0)": lambda b: b.append(0.0), "pop()": list.pop}

PRELUDE = f"""
    from micrograd_cpp import optim, _core
    from micrograd_cpp._core import Value

    DATA, GRADS = {DATA!r}, {GRADS!r}
    MAKERS = {{
        "SGD": lambda params: optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1),
        "AdamW": lambda params: optim.AdamW(params, lr=0.1),
    }}

    def parameters():
        ps = [Value(d) for d in DATA]
        for p, g in zip(ps, GRADS):
            p.grad = g
        return ps

    def outcome(call):
        try:
            call()
        except Exception as e:
            return type(e).__name__, str(e)
        return None
"""


def pure_parameters():
    ps = [PureValue(d) for d in DATA]
    for p, g in zip(ps, GRADS, strict=True):
        p.grad = g
    return ps


def named(error):
    return error and (error[0].__name__, error[1])


@pytest.mark.parametrize(
    "kind, buffer", [(k, b) for k, buffers in BUFFERS.items() for b in buffers]
)
@pytest.mark.parametrize("change", CHANGES)
def test_a_buffer_changed_by_float_is_refused_before_any_write(kind, buffer, change):
    """Each __float__ may change the buffer being read: the length is checked again after it."""
    got = run_isolated(
        PRELUDE
        + f"""
    ps = parameters()
    opt = MAKERS[{kind!r}](ps)
    class Hostile:
        def __float__(self):
            opt.{buffer}.{change}
            return 0.0
    opt.{buffer}[0] = Hostile()
    print((outcome(opt.step), [(p.data, p.grad) for p in ps]))
    """
    )
    # The oracle, from the state the C++ step finds once the entry has converted.
    ps = pure_parameters()
    opt = MAKERS[kind](ps)
    CHANGES[change](getattr(opt, buffer))
    expected = (named(raised(opt.step)), [(p.data, p.grad) for p in ps])
    assert got == expected
    assert got[0] == ("ValueError", "optimizer state must be a list with one float per parameter")


NEW = [100.0, 101.0, 102.0]
PARAMS_CHANGES = {
    # opt.params empty: the buffers no longer match them, and the step is refused
    "clear": lambda params, made: params.clear(),
    # other Values in their place: the step updates those, the params it finds
    "replace": lambda params, made: params.__setitem__(slice(None), made),
}


@pytest.mark.parametrize("kind", MAKERS)
@pytest.mark.parametrize("change", PARAMS_CHANGES)
@pytest.mark.parametrize("keep", [True, False], ids=["params-kept", "params-dropped"])
def test_params_changed_by_float(kind, change, keep):
    """The first buffer entry's __float__ changes opt.params and makes new Values, which may
    reuse the memory of the params it drops: the step sees the params as __float__ left them,
    as the oracle does when they are changed before the step, and never writes freed nodes."""
    buffer = BUFFERS[kind][0]
    got = run_isolated(
        PRELUDE
        + f"""
    ps = parameters()
    opt = MAKERS[{kind!r}](ps)
    if not {keep}:
        del ps[:]  # opt.params is their only owner
    made = []
    class Hostile:
        def __float__(self):
            {"opt.params.clear()" if change == "clear" else "pass"}
            made.extend(Value(d) for d in {NEW!r})
            for v, g in zip(made, GRADS):
                v.grad = g
            {"opt.params[:] = made" if change == "replace" else "pass"}
            return 0.0
    opt.{buffer}[0] = Hostile()
    error = outcome(opt.step)
    # an entry left unconverted (a refused step) counts as what its __float__ returns
    state = [[x if type(x) is float else 0.0 for x in getattr(opt, name)]
             for name in {BUFFERS[kind]!r}]
    print((error, [(p.data, p.grad) for p in ps], [(v.data, v.grad) for v in made], state))
    """
    )
    ps = pure_parameters()
    opt = MAKERS[kind](ps)
    made = [PureValue(d) for d in NEW]
    for v, g in zip(made, GRADS, strict=True):
        v.grad = g
    PARAMS_CHANGES[change](opt.params, made)
    error = named(raised(opt.step))
    state = [getattr(opt, name) for name in BUFFERS[kind]]
    kept = [(p.data, p.grad) for p in ps] if keep else []
    assert got == (error, kept, [(v.data, v.grad) for v in made], state)
    assert (error is None) == (change == "replace")


CORE_CALLS = {
    "sgd_step": ("SGD", "_core.sgd_step(params, buf, 1, Hostile(), 0.9, 0.1)", ("buf",)),
    "adamw_step": (
        "AdamW",
        "_core.adamw_step(params, m, v, 1, Hostile(), 0.9, 0.999, 1e-8, 0.01)",
        ("m", "v"),
    ),
}


@pytest.mark.parametrize("function", CORE_CALLS)
@pytest.mark.parametrize("params", ["list", "generator"])
@pytest.mark.parametrize("keep", [True, False], ids=["params-kept", "params-dropped"])
def test_core_steps_hold_their_params(function, params, keep):
    """_core's steps directly: lr's __float__ empties the params list and makes new Values, or the
    params come from a generator, whose Values only the call owns."""
    kind, call, buffers = CORE_CALLS[function]
    got = run_isolated(
        PRELUDE
        + f"""
    ps = parameters() if {keep} else []
    source = ps or parameters()  # without ps, the params are their only owner
    params = list(source) if {params!r} == "list" else (p for p in source)
    del source
    buf, m, v = [0.0] * 3, [0.0] * 3, [0.0] * 3
    made = []
    class Hostile:
        def __float__(self):
            if isinstance(params, list):
                params.clear()
            made.extend(Value(d) for d in {NEW!r})
            return 0.1
    error = outcome(lambda: {call})
    print((error, [p.data for p in ps], [(v.data, v.grad) for v in made], {", ".join(buffers)},))
    """
    )
    # The oracle: one step over the params, or none if they are gone.
    ps = pure_parameters()
    opt = MAKERS[kind](ps)
    if params == "list":
        opt.params.clear()
    error = named(raised(opt.step))
    kept = [p.data for p in ps] if keep else []
    made = [(d, 0.0) for d in NEW]
    assert got == (error, kept, made, *(getattr(opt, name) for name in buffers))
    assert (error is None) == (params == "generator")


@pytest.mark.parametrize("keep", [True, False], ids=["params-kept", "params-dropped"])
def test_zero_grads_holds_a_generators_params(keep):
    """The generator's Values live until every grad is written, whoever else holds them."""
    got = run_isolated(
        PRELUDE
        + f"""
    ps = parameters()
    _core.zero_grads((p for p in ps) if {keep} else (p for p in parameters()))
    after = parameters()
    print(([(p.data, p.grad) for p in ps], [(v.data, v.grad) for v in after]))
    """
    )
    expected = [(d, 0.0) if keep else (d, g) for d, g in zip(DATA, GRADS, strict=True)]
    assert got == (expected, list(zip(DATA, GRADS, strict=True)))


@pytest.mark.skipif(under_sanitizer(), reason="AddressSanitizer aborts under an address limit")
@pytest.mark.parametrize("function", CORE_CALLS)
@pytest.mark.parametrize("margin_mb", [0, 8, 24, 40, 56])
def test_out_of_memory_in_a_step_is_memory_error(function, margin_mb):
    """Some limit fails each of the step's allocations in turn (its arrays of numbers and of
    nodes): each failure is MemoryError, and the step succeeds once memory is back."""
    call = CORE_CALLS[function][1]
    setup = """
    n = 2_000_000
    x = Value(1.0)
    x.grad = 0.5
    params = [x] * n
    buf, m, v = [0.0] * n, [0.0] * n, [0.0] * n
    class Hostile:
        def __float__(self):
            return 0.1
    """
    after = f"""
    if limited:
        {call}
    print((limited, x.data != 1.0))
    """
    got = run_with_memory_limit(PRELUDE + setup, call, after, margin_mb)
    assert got[1]
    if margin_mb == 0:
        assert got[0] == "MemoryError"
    else:
        assert got[0] in ("MemoryError", None)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_reads_its_buffers_only_with_momentum(momentum):
    """Without momentum neither engine's SGD reads a buffer entry, so an entry's __float__ does
    not run; with momentum the C++ step converts the entry first (found by fuzzing)."""
    from micrograd_cpp._core import Value

    calls = []

    class Entry:
        def __float__(self):
            calls.append(1)
            return 0.0

    p = Value(1.0)
    p.grad = 0.5
    opt = optim.SGD([p], lr=0.1, momentum=momentum)
    opt.buf[0] = Entry()
    opt.step()
    assert (len(calls), p.data) == ((1 if momentum else 0), 1.0 - 0.1 * 0.5)
