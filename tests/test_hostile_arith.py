"""Operators on numbers and Values that override their own operators: the C++ engine must call
the user's code in the oracle's order (micrograd's reductions: a-b is a+(-b), a/b is a*b**-1,
-a is a*-1, other+self is self+other) and use its result as the oracle does."""

import fractions
import numbers

import pytest
from helpers import raised


def logging_types(backend, log):
    """Operand types whose dunders are recorded in log and answer something else than float's."""

    class NegFloat(float):
        def __neg__(self):
            log.append("neg")
            return 123

        def __pow__(self, exponent):
            log.append(f"pow {exponent}")
            return 0.25

    class NegInt(int):
        def __neg__(self):
            log.append("neg")
            return -7.5

    class Real:
        """A registered numbers.Real whose float() changes the Value it is combined with."""

        def __init__(self, value, x):
            self.value, self.x = value, x

        def __float__(self):
            log.append("float")
            self.value.data = -99.0
            return self.x

        def __neg__(self):
            log.append("neg")
            return Real(self.value, -self.x)

        def __pow__(self, exponent):
            log.append(f"pow {exponent}")
            return Real(self.value, 1 / self.x)

    numbers.Real.register(Real)

    class NegValue(backend):
        def __neg__(self):
            log.append("neg")
            return 5.0

        def __pow__(self, exponent):
            log.append(f"pow {exponent}")
            return 0.5

        def __mul__(self, other):
            log.append("mul")
            return backend.__mul__(self, other)

        def __add__(self, other):
            log.append("add")
            return backend.__add__(self, other)

    return NegFloat, NegInt, Real, NegValue


def test_subtracting_a_number_adds_its_own_negation(backend):
    log = []
    NegFloat, NegInt, _, _ = logging_types(backend, log)
    assert (backend(1.0) - NegFloat(2.0)).data == 124.0  # 1 + 123
    assert (backend(1.0) - NegInt(4)).data == -6.5  # 1 + -7.5
    assert (backend(1.0) - True).data == 0.0
    assert log == ["neg", "neg"]


def test_dividing_by_a_number_multiplies_by_its_own_inverse(backend):
    log = []
    NegFloat, _, _, _ = logging_types(backend, log)
    assert (backend(3.0) / NegFloat(2.0)).data == 0.75  # 3 * 0.25
    assert log == ["pow -1"]


def test_a_registered_real_is_read_after_the_value_as_the_oracle_does(backend):
    log = []
    _, _, Real, _ = logging_types(backend, log)
    v = backend(5.0)
    # (-v) + r: -v is -5.0, made before float(r) sets v.data to -99
    assert ((Real(v, 4.0) - v).data, v.data) == (-1.0, -99.0)
    assert log == ["float"]
    log.clear()
    v = backend(5.0)
    # v + (-r): float(-r) is read after -r is made
    assert (v - Real(v, 4.0)).data == -103.0
    assert log == ["neg", "float"]
    log.clear()
    v = backend(2.0)
    # v**-1 * r: the inverse 0.5 first, then float(r)
    assert (Real(v, 4.0) / v).data == 2.0
    assert log == ["float"]


def test_a_negation_that_is_not_a_number_is_added_as_python_adds_it(backend):
    class ValueNegation(float):
        def __neg__(self):
            return backend(40.0)

    class TextNegation(float):
        def __neg__(self):
            return "text"

    class TextInverse(int):
        def __pow__(self, exponent):
            return "text"

    assert (backend(1.0) - ValueNegation(2.0)).data == 41.0
    assert raised(lambda: backend(1.0) - TextNegation(2.0))[0] is TypeError
    assert raised(lambda: backend(1.0) / TextInverse(2))[0] is TypeError


def test_a_value_subclass_operators_are_the_reductions_own(backend):
    log = []
    _, _, _, NegValue = logging_types(backend, log)
    assert (backend(1.0) - NegValue(2.0)).data == 6.0  # 1 + 5.0
    assert (backend(1.0) / NegValue(2.0)).data == 0.5  # 1 * 0.5
    assert (3.0 + NegValue(2.0)).data == 5.0  # NegValue(2) + 3
    assert (3.0 * NegValue(2.0)).data == 6.0
    assert 3.0 - NegValue(2.0) == 8.0  # 5.0 + 3: a float
    assert 3.0 / NegValue(2.0) == 1.5  # 0.5 * 3: a float
    assert log == ["neg", "pow -1", "add", "mul", "neg", "pow -1"]

    class MulValue(backend):
        def __mul__(self, other):
            log.append(f"mul {other}")
            return 7.0

    log.clear()
    assert -MulValue(2.0) == 7.0  # MulValue(2) * -1
    assert log == ["mul -1"]


OPERATIONS = {
    "add": lambda v, x: v + x,
    "radd": lambda v, x: x + v,
    "sub": lambda v, x: v - x,
    "rsub": lambda v, x: x - v,
    "mul": lambda v, x: v * x,
    "rmul": lambda v, x: x * v,
    "truediv": lambda v, x: v / x,
    "rtruediv": lambda v, x: x / v,
    "pow": lambda v, x: v**x,
}


def operands(backend, log):
    """Every kind of operand, made fresh for Value v."""
    import numpy as np

    NegFloat, NegInt, Real, NegValue = logging_types(backend, log)
    return {
        "float": lambda v: -0.0,
        "int": lambda v: 3,
        "zero": lambda v: 0,
        "bool": lambda v: True,
        "huge int": lambda v: 10**400,
        "float subclass": lambda v: NegFloat(2.0),
        "int subclass": lambda v: NegInt(4),
        "registered Real": lambda v: Real(v, 4.0),
        "Fraction": lambda v: fractions.Fraction(1, 3),
        "numpy float64": lambda v: np.float64(3.0),
        "numpy int32": lambda v: np.int32(3),
        "Value subclass": lambda v: NegValue(2.0),
    }


def outcome(backend, operation, make_operand, log):
    """What an operation gives, including the backward pass through it and the calls it made."""
    v = backend(5.0)
    log.clear()
    try:
        out = operation(v, make_operand(v))
    except Exception as e:
        return type(e), log[:]
    if not isinstance(out, backend):
        return out, log[:]
    out.backward()
    return out.data, out.grad, v.data, v.grad, [c.data for c in out._children], log[:]


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
def test_every_operator_calls_and_computes_as_the_oracle(backends, operation):
    pytest.importorskip("numpy")
    results = []
    for backend in backends:
        log = []
        kinds = operands(backend, log)
        results.append({k: outcome(backend, operation, make, log) for k, make in kinds.items()})
    assert results[0] == results[1]
