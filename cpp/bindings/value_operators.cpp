// A Value's operators and their operands: numbers, numpy arrays, micrograd's reductions.
#include <cmath>

#include "value_parts.hpp"

namespace mg::python {

namespace {

PyObject* real_number_abc = nullptr;  // numbers.Real
PyObject* minus_one = nullptr;        // the int -1
PyObject* str_numpy = nullptr;        // interned "numpy"

}  // namespace

bool init_operators() {
    PyObject* numbers = PyImport_ImportModule("numbers");
    if (!numbers) return false;
    real_number_abc = PyObject_GetAttrString(numbers, "Real");
    Py_DECREF(numbers);
    minus_one = PyLong_FromLong(-1);
    str_numpy = PyUnicode_InternFromString("numpy");
    return real_number_abc && minus_one && str_numpy;
}

bool is_number(PyObject* o) {
    if (PyFloat_Check(o) || PyLong_Check(o)) return true;
    if (is_value(o)) return false;
    int r = PyObject_IsInstance(o, real_number_abc);
    if (r < 0) PyErr_Clear();  // a broken __instancecheck__ does not make it a number
    return r > 0;
}

bool to_double(PyObject* o, double* out) {
    if (PyFloat_Check(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return true;
    }
    double d = PyLong_Check(o) ? PyLong_AsDouble(o) : PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) return false;
    *out = d;
    return true;
}

// Operators: micrograd's graph shapes (-a is a*-1, a-b is a+(-b), a/b is a*b**-1).

namespace {

// Note [numpy operands]
// Value sets __array_priority__, so that numpy scalars hand `np.int64(2) * v` to Value (numpy's
// own path for unknown objects is twenty times slower). numpy arrays then hand their operators
// over too; for them Value calls the ufunc itself, which applies the operator element by
// element as numpy would have.
PyObject* not_a_number(const char* ufunc, PyObject* a, PyObject* b) {
    static PyObject* ndarray = nullptr;
    if (!ndarray) {
        PyObject* numpy = PyImport_GetModule(str_numpy);  // only if the user imported numpy
        if (numpy) ndarray = PyObject_GetAttrString(numpy, "ndarray");
        Py_XDECREF(numpy);
        PyErr_Clear();
    }
    PyObject* array = is_value(a) ? b : a;
    if (!ndarray || !PyObject_TypeCheck(array, reinterpret_cast<PyTypeObject*>(ndarray))) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject* numpy = PyImport_GetModule(str_numpy);
    if (!numpy) return nullptr;
    PyObject* result = PyObject_CallMethod(numpy, ufunc, "OO", a, b);
    Py_DECREF(numpy);
    return result;
}

// Note [Operators as the oracle writes them]
// Each operator is micrograd's one-line reduction (a-b is a+(-b), a/b is a*b**-1, -a is a*-1,
// other+self is self+other). For Values of exactly this type and numbers of exactly float, int
// or bool, nothing in those reductions can run user code, and the slots build the nodes
// directly. Any other operand (a float or int subclass, a numpy scalar, a Fraction, a
// registered numbers.Real, a Value subclass) may override __neg__, __pow__, __add__ or
// __mul__: then the slot evaluates the reduction itself with PyNumber_*, so the user's code
// runs in the oracle's order and its result is used as the oracle uses it.
bool is_exact_value(PyObject* o) { return Py_IS_TYPE(o, value_type); }
bool is_plain_number(PyObject* o) {
    return PyFloat_CheckExact(o) || PyLong_CheckExact(o) || PyBool_Check(o);
}

// op(x, y), or op(y, x) if y_first, giving up the reference to y (a null y: its error).
PyObject* apply_taking(binaryfunc op, PyObject* x, PyObject* y, bool y_first = false) {
    if (!y) return nullptr;
    PyObject* result = y_first ? op(y, x) : op(x, y);
    Py_DECREF(y);
    return result;
}

}  // namespace

PyObject* value_add(PyObject* a, PyObject* b) {
    double c;
    if (is_value(a)) {
        if (is_value(b)) return to_python_owned(add(node_of(a), node_of(b)));
        if (!is_number(b)) return not_a_number("add", a, b);
        if (!to_double(b, &c)) return nullptr;
        return to_python_owned(add_constant(node_of(a), c));
    }
    if (!is_number(a)) return not_a_number("add", a, b);
    if (!is_exact_value(b)) return PyNumber_Add(b, a);  // other + self is self + other
    if (!to_double(a, &c)) return nullptr;
    return to_python_owned(add_constant(node_of(b), c));
}

PyObject* value_mul(PyObject* a, PyObject* b) {
    double c;
    if (is_value(a)) {
        if (is_value(b)) return to_python_owned(mul(node_of(a), node_of(b)));
        if (!is_number(b)) return not_a_number("multiply", a, b);
        if (!to_double(b, &c)) return nullptr;
        return to_python_owned(mul_constant(node_of(a), c));
    }
    if (!is_number(a)) return not_a_number("multiply", a, b);
    if (!is_exact_value(b)) return PyNumber_Multiply(b, a);  // other * self is self * other
    if (!to_double(a, &c)) return nullptr;
    return to_python_owned(mul_constant(node_of(b), c));
}

PyObject* value_neg(PyObject* a) {
    if (!is_exact_value(a)) return PyNumber_Multiply(a, minus_one);  // -self is self * -1
    return to_python_owned(mul_constant(node_of(a), -1.0));
}

namespace {

// op(owned): the caller's reference to `owned` is given up whether op succeeds or throws.
template <class Op>
Node* releasing(Node* owned, Op op) {
    Node* out;
    try {
        out = op(owned);
    } catch (...) {
        release(owned);
        throw;
    }
    release(owned);
    return out;
}

// The node for `a + (-b)`, given -b's node.
PyObject* add_negated(Node* a, Node* b) {
    Node* sum = releasing(mul_constant(b, -1.0), [a](Node* negated) { return add(a, negated); });
    return to_python_owned(sum);
}

}  // namespace

PyObject* value_sub(PyObject* a, PyObject* b) {
    double c;
    if (is_value(a)) {  // self - other is self + (-other)
        if (!is_value(b) && !is_number(b)) return not_a_number("subtract", a, b);
        if (!is_exact_value(a) || !(is_exact_value(b) || is_plain_number(b))) {
            return apply_taking(PyNumber_Add, a, PyNumber_Negative(b));
        }
        if (is_value(b)) return add_negated(node_of(a), node_of(b));
        if (PyFloat_CheckExact(b)) {
            c = -PyFloat_AS_DOUBLE(b);
        } else {
            if (!to_double(b, &c)) return nullptr;
            c = 0.0 - c;  // float(-b): exact, and an int has no -0
        }
        return to_python_owned(add_constant(node_of(a), c));
    }
    if (!is_number(a)) return not_a_number("subtract", a, b);  // other - self is (-self) + other
    if (!is_exact_value(b)) return apply_taking(PyNumber_Add, a, PyNumber_Negative(b), true);
    // -self first, as the oracle: a's __float__ then sees the graph as it is after it.
    Node* negated = mul_constant(node_of(b), -1.0);
    if (!to_double(a, &c)) {
        release(negated);
        return nullptr;
    }
    return to_python_owned(releasing(negated, [c](Node* n) { return add_constant(n, c); }));
}

namespace {

// other ** -1 for a float, an int or a bool, as Python computes it.
bool reciprocal(PyObject* number, double* out) {
    double x;
    if (!to_double(number, &x)) return false;
    Status s = py_pow(x, -1.0, out);
    if (s != Status::ok) set_error(s);
    return s == Status::ok;
}

Node* reciprocal_node(Node* a) {
    Status s;
    Node* p = pow(a, -1.0, &s);
    if (!p) {
        set_error(s);
        return nullptr;
    }
    p->flags |= exponent_is_int;  // labelled '**-1'
    return p;
}

}  // namespace

PyObject* value_truediv(PyObject* a, PyObject* b) {
    if (is_value(a)) {  // self / other is self * other**-1
        if (!is_value(b) && !is_number(b)) return not_a_number("true_divide", a, b);
        if (!is_exact_value(a) || !(is_exact_value(b) || is_plain_number(b))) {
            return apply_taking(PyNumber_Multiply, a, PyNumber_Power(b, minus_one, Py_None));
        }
        if (is_value(b)) {
            Node* inverse = reciprocal_node(node_of(b));
            if (!inverse) return nullptr;
            Node* x = node_of(a);
            return to_python_owned(releasing(inverse, [x](Node* i) { return mul(x, i); }));
        }
        double inverse;
        if (!reciprocal(b, &inverse)) return nullptr;
        return to_python_owned(mul_constant(node_of(a), inverse));
    }
    if (!is_number(a)) return not_a_number("true_divide", a, b);
    if (!is_exact_value(b)) {  // other / self is self**-1 * other
        return apply_taking(PyNumber_Multiply, a, PyNumber_Power(b, minus_one, Py_None), true);
    }
    Node* inverse = reciprocal_node(node_of(b));
    if (!inverse) return nullptr;
    double c;
    if (!to_double(a, &c)) {
        release(inverse);
        return nullptr;
    }
    return to_python_owned(releasing(inverse, [c](Node* i) { return mul_constant(i, c); }));
}

PyObject* value_pow(PyObject* a, PyObject* b, PyObject* modulus) {
    if (modulus != Py_None || !is_value(a)) Py_RETURN_NOTIMPLEMENTED;
    if (is_value(b)) {
        PyErr_SetString(PyExc_TypeError, "only supporting int/float powers, not a Value exponent");
        return nullptr;
    }
    if (!is_number(b)) return not_a_number("power", a, b);
    double e;
    if (!to_double(b, &e)) return nullptr;
    Status s;
    Node* n = pow(node_of(a), e, &s);
    if (!n) {
        set_error(s);
        return nullptr;
    }
    bool label_is_lazy = PyFloat_CheckExact(b);
    if (PyLong_CheckExact(b) && std::fabs(e) < 9007199254740992.0) {  // below 2**53: exact
        n->flags |= exponent_is_int;
        label_is_lazy = true;
    }
    PyObject* out = to_python_owned(n);
    if (!out || label_is_lazy) return out;
    // Any other exponent (bool, numpy scalar, huge int): keep f'**{other}' as Python prints it.
    PyObject* formatted = PyObject_Format(b, nullptr);
    PyObject* label = formatted ? PyUnicode_FromFormat("**%U", formatted) : nullptr;
    Py_XDECREF(formatted);
    if (!label) {
        Py_DECREF(out);
        return nullptr;
    }
    try {  // Note [No C++ exception crosses into CPython]: give both back first
        set_field(out, &Custom::op, label);
    } catch (...) {
        Py_DECREF(label);
        Py_DECREF(out);
        throw;
    }
    Py_DECREF(label);
    return out;
}

}  // namespace mg::python
