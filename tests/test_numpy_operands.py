"""numpy operands: numpy scalars hand their operators to Value, and object arrays of Values
combine with Values element by element, building the same nodes on both engines."""

import operator

import numpy as np
import pytest

OPERATORS = [operator.add, operator.sub, operator.mul, operator.truediv]


def describe(v):
    return (float.hex(v.data), v._op, tuple((float.hex(c.data), c._op) for c in v._children))


def outcome(op, a, b):
    """What a op b builds, or the type of what it raises (Value / np.int64 raises as
    micrograd's `self * other**-1` does: numpy refuses an integer to a negative power)."""
    try:
        return describe(op(a, b))
    except Exception as error:
        return type(error)


@pytest.mark.parametrize("op", OPERATORS, ids=lambda op: op.__name__)
@pytest.mark.parametrize("number", [np.int64(-3), np.float64(2.5), np.float32(0.1), -3, 2.5])
def test_numpy_scalars_build_what_python_numbers_build(backends, op, number):
    built = []
    for V in backends:
        v = V(1.75)
        built.append((outcome(op, number, v), outcome(op, v, number)))
        assert not isinstance(built[-1][0], type)  # number op Value always builds
        if isinstance(number, (np.float64, int, float)):  # the same value as a Python number
            plain = number.item() if isinstance(number, np.generic) else number
            assert built[-1] == (outcome(op, plain, V(1.75)), outcome(op, V(1.75), plain))
    assert built[0] == built[1]


@pytest.mark.parametrize("op", OPERATORS, ids=lambda op: op.__name__)
def test_object_arrays_of_values_combine_element_by_element(backends, op):
    built = []
    for V in backends:
        array = np.array([V(1.0), V(-2.0), V(4.0)], dtype=object)
        v = V(0.5)
        left, right = op(array, v), op(v, array)
        assert left.shape == right.shape == (3,)
        assert [x.data for x in left] == [
            op(x.data, 0.5) if op is not operator.truediv else x.data * 0.5**-1 for x in array
        ]
        built.append([describe(x) for x in (*left, *right)])
    assert built[0] == built[1]


def test_an_array_exponent_applies_element_by_element(backends):
    for V in backends:
        powers = V(3.0) ** np.array([2, -1])
        assert [p._op for p in powers] == ["**2", "**-1"]
        with pytest.raises(TypeError):
            np.array([1.0, 2.0]) ** V(2.0)  # no Value exponents, as micrograd
