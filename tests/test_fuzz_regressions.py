"""Programs on which fuzz/fuzz_engine.py found the C++ engine and the oracle disagreeing, or the
sanitized build crashing: each runs on both engines, which must agree (and, where micrograd or
Python's float arithmetic decides, on what).
"""

import builtins
import copy
import warnings

import numpy as np
import pytest
from micrograd_cpp import _core, optim


def outcome(f):
    """f()'s result, or the type of the exception it raised."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return f()
    except Exception as e:
        return type(e)


def on_both(backends, f):
    """(outcome on C++, outcome on the oracle) of f(Value)."""
    return tuple(outcome(lambda V=V: f(V)) for V in backends)


def test_reinit_that_makes_a_cycle_is_refused(backends):
    def reinit(V):
        a = V(1.0)
        b = a + 1.0
        a.__init__(0.0, [b])  # a would be its own descendant

    assert on_both(backends, reinit) == (ValueError, ValueError)


def test_op_given_to_the_constructor_is_kept_as_given(backends):
    # micrograd stores _op as given: Value(1.0, (), None)._op is None
    def ops(V):
        return V(1.0, (), None)._op, V(1.0, (), 0)._op, V(1.0, (), "")._op

    assert on_both(backends, ops) == ((None, 0, ""), (None, 0, ""))


@pytest.mark.parametrize("start", ["a", b"a", bytearray(b"a")])
def test_sum_refuses_a_string_start_as_sum_does(start):
    assert outcome(lambda: builtins.sum([], start)) is TypeError
    assert outcome(lambda: _core.sum([], start)) is TypeError
    assert outcome(lambda: _core.dot([], [], start)) is TypeError


@pytest.mark.parametrize("divisor", [np.float64(0.0), np.float64(1e-310)])
def test_division_by_a_numpy_float_is_numpys(backends, divisor):
    # v / x is v * x**-1, and np.float64's ** gives inf where float's raises
    assert on_both(backends, lambda V: (V(1.0) / divisor).data) == (np.inf, np.inf)


def test_pow_label_of_an_int_exponent_beyond_2_53(backends):
    assert on_both(backends, lambda V: (V(1.0) ** (2**53 + 1))._op) == ("**9007199254740993",) * 2


def test_backward_set_to_none_is_called_as_micrograd_does(backends):
    def run(V):
        a = V(2.0)
        out = a * 3.0
        out._backward = None
        out.backward()

    assert on_both(backends, run) == (TypeError, TypeError)


class OddFloat(float):
    def __float__(self):
        return 42.0


class OddInt(int):
    def __float__(self):
        return 42.0

    def __index__(self):
        return 42


def test_numbers_whose_float_disagrees_with_their_value(backends):
    # Python's float arithmetic reads a float or int subclass's value: 1.0 + OddInt(3) == 4.0;
    # PyFloat_AsDouble (Value(x)) does too for a float subclass, and calls __float__ otherwise.
    def run(V):
        return V(OddFloat(1.5)).data, (V(1.0) + OddFloat(1.5)).data, (V(1.0) + OddInt(3)).data

    assert on_both(backends, run) == ((1.5, 2.5, 4.0),) * 2


def test_adamw_with_beta2_above_one(backends):
    # 1 - beta2**t < 0 made optim.py's loop compute a complex number where C++ raised: beta2
    # outside [0, 1) is now refused by both, as torch.optim refuses it
    def step(V):
        p = V(1.0)
        optim.AdamW([p], lr=0.1, betas=(0.9, 1.5), weight_decay=0.0).step()
        return p.data

    assert on_both(backends, step) == (ValueError, ValueError)


def test_sgd_with_a_numpy_float32_learning_rate(backends):
    def step(V):
        p = V(0.3)
        p.grad = 0.7
        optim.SGD([p], lr=np.float32(0.1)).step()
        return p.data

    cpp, pure = on_both(backends, step)
    assert cpp == pure


def test_adamw_with_int_settings_beyond_2_53(backends):
    def step(V):
        p = V(0.5)  # grad 0.0: the step is p.data * (1 - lr * weight_decay)
        optim.AdamW([p], lr=2**53 + 1, weight_decay=1).step()
        return p.data

    cpp, pure = on_both(backends, step)
    assert cpp == pure


def test_errors_thrown_in_the_extensions_cpp_reach_python():
    """pybind11 reports a bad argument by throwing a C++ exception. Under the sanitizers this
    aborted the process until scripts/sanitize.sh preloaded the C++ runtime beside the sanitizer
    (found by fuzzing the sanitized build)."""
    for call in (lambda: _core.topological_order(5), lambda: _core.compile("x")):
        assert outcome(call) is TypeError


def test_deleting_op(backends):
    # micrograd's _op is an instance attribute: after del, reading it raises AttributeError
    def run(V):
        v = V(1.0) * 2.0
        del v._op
        return v._op

    assert on_both(backends, run) == (AttributeError, AttributeError)


@pytest.mark.parametrize(
    "after",
    [
        lambda v: delattr(v, "_op"),
        lambda v: copy.copy(v).data,
        lambda v: copy.deepcopy(v).data,
        lambda v: v._clone(v._children).data,
        lambda v: v._clone([]),  # the wrong number of children is found first
        lambda v: (setattr(v, "_op", "mine"), v._op)[1],
        lambda v: (v.__init__(3.0), v._op, v.data)[1:],
        lambda v: (delattr(v, "_backward"), v._op)[1],
        lambda v: (setattr(v, "_backward", lambda: None), v._op)[1],
    ],
)
def test_a_deleted_op_stays_deleted_until_set(backends, after):
    def run(V):
        v = V(1.0) * 2.0
        del v._op
        return after(v)

    cpp, pure = on_both(backends, run)
    assert cpp == pure


def test_deleting_children_is_refused(backends):
    def run(V):
        v = V(1.0) * 2.0
        del v._children

    assert on_both(backends, run) == (AttributeError, AttributeError)


@pytest.mark.parametrize("children", ["self", "not a Value"])
def test_a_failed_reinit_changes_nothing(backends, children):
    # an operation that raises changes nothing: here data -0.0 and grad 3.0 stay
    def run(V):
        a = V(-0.0)
        a.grad = 3.0
        try:
            a.__init__(5.0, [a if children == "self" else children])
        except (ValueError, TypeError) as e:
            return type(e), str(a.data), a.grad

    kind = ValueError if children == "self" else TypeError
    assert on_both(backends, run) == ((kind, "-0.0", 3.0),) * 2
