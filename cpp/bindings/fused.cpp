// Whole loops in one call: sum, dot and a neuron's forward. Each builds exactly the nodes that
// the Python line it replaces builds, in the same order, so results equal the oracle's.
//
// The fast path covers exact Values and plain int/float numbers. Anything else (a subclass that
// may override its operators, a numpy scalar, a non-number) takes Python's own `+` and `*` for
// that step, so the semantics are Python's in every case.
#include "fused.hpp"

#include <utility>

#include "guarded.hpp"
#include "methods.hpp"

namespace mg::python {
namespace {

bool is_plain_number(PyObject* o) { return PyFloat_CheckExact(o) || PyLong_CheckExact(o); }

// A partial result: a node (a reference owned here) while the fast path holds, else a Python
// object (an owned reference). Exactly one is set; both null after a failure.
struct Partial {
    Node* node = nullptr;
    PyObject* object = nullptr;

    static Partial of(PyObject* o) {  // takes a new reference to o
        Partial p;
        if (Py_IS_TYPE(o, value_type)) {
            p.node = node_of(o);
            retain(p.node);
        } else {
            p.object = Py_NewRef(o);
        }
        return p;
    }
    static Partial steal(PyObject* o) {  // takes over a reference to o (null: failure)
        if (!o) return {};
        Partial p = of(o);
        Py_DECREF(o);
        return p;
    }
    bool failed() const { return !node && !object; }
    PyObject* release_object() {  // the result as a Python object (new reference)
        PyObject* o = node ? to_python_owned(node) : object;
        node = nullptr;
        object = nullptr;
        return o;
    }
    void clear() {
        if (node) mg::release(node);
        Py_XDECREF(object);
        node = nullptr;
        object = nullptr;
    }
};

using NodeOp = Node* (*)(Node*, Node*);
using ConstantOp = Node* (*)(Node*, double);

// left <op> right, consuming both.
Partial combine(Partial left, Partial right, NodeOp op, ConstantOp constant_op,
                binaryfunc python_op) {
    Partial out;
    if (left.node && (right.node || (right.object && is_plain_number(right.object)))) {
        // Note [No C++ exception crosses into CPython]: the partials are cleared below either way.
        try {
            double c;
            if (right.node) {
                out.node = op(left.node, right.node);
            } else if (to_double(right.object, &c)) {
                out.node = constant_op(left.node, c);
            }
        } catch (...) {
            set_error_from_cpp_exception();
        }
    } else {
        PyObject* l = left.release_object();
        PyObject* r = right.release_object();
        if (l && r) out = Partial::steal(python_op(l, r));
        Py_XDECREF(l);
        Py_XDECREF(r);
    }
    left.clear();
    right.clear();
    return out;
}

// sum((ai*bi for ai, bi in zip(a, b)), start), or with b null sum(a, start).
PyObject* reduce(PyObject* a, PyObject* b, PyObject* start) {
    // As Python's sum() does: strings are joined, not summed.
    const char* refused = PyUnicode_Check(start)     ? "strings [use ''.join(seq) instead]"
                          : PyBytes_Check(start)     ? "bytes [use b''.join(seq) instead]"
                          : PyByteArray_Check(start) ? "bytearray [use b''.join(seq) instead]"
                                                     : nullptr;
    if (refused) {
        PyErr_Format(PyExc_TypeError, "sum() can't sum %s", refused);
        return nullptr;
    }
    PyObject* ita = PyObject_GetIter(a);
    if (!ita) return nullptr;
    PyObject* itb = b ? PyObject_GetIter(b) : nullptr;
    if (b && !itb) {
        Py_DECREF(ita);
        return nullptr;
    }
    Partial acc = Partial::of(start);
    while (!acc.failed()) {
        PyObject* x = PyIter_Next(ita);
        if (!x) break;
        Partial term = Partial::steal(x);
        if (itb) {  // the term is x*y, and zip stops at the shorter input
            PyObject* y = PyIter_Next(itb);
            if (!y) {
                term.clear();
                break;
            }
            term = combine(term, Partial::steal(y), mg::mul, mg::mul_constant, PyNumber_Multiply);
            if (term.failed()) {
                acc.clear();
                break;
            }
        }
        acc = combine(acc, term, mg::add, mg::add_constant, PyNumber_Add);
    }
    Py_DECREF(ita);
    Py_XDECREF(itb);
    if (PyErr_Occurred()) {
        acc.clear();
        return nullptr;
    }
    return acc.release_object();
}

PyObject* fused_sum(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (!takes_arguments(nargs, 1, 2, "sum(values, start=0)")) return nullptr;
    PyObject* zero = nullptr;
    PyObject* start = nargs == 2 ? args[1] : (zero = PyLong_FromLong(0));
    if (!start) return nullptr;
    PyObject* out = reduce(args[0], nullptr, start);
    Py_XDECREF(zero);
    return out;
}

PyObject* fused_dot(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (!takes_arguments(nargs, 2, 3, "dot(a, b, start=0)")) return nullptr;
    PyObject* zero = nullptr;
    PyObject* start = nargs == 3 ? args[2] : (zero = PyLong_FromLong(0));
    if (!start) return nullptr;
    PyObject* out = reduce(args[0], args[1], start);
    Py_XDECREF(zero);
    return out;
}

}  // namespace

// act = sum((wi*xi for wi, xi in zip(w, x)), b), then relu() if nonlin, for ws exact Values and
// b one too; term(i, wi) makes wi*xi. A new reference; a C++ exception gives back what it took.
template <class Term>
Node* neuron_nodes(PyObject* const* ws, Py_ssize_t count, PyObject* b, bool nonlin, Term term) {
    Node* acc = node_of(b);
    retain(acc);
    // Note [No C++ exception crosses into CPython]: the *_taking ops give back what they took
    // if they throw, so acc is released here only while it is still ours.
    try {
        for (Py_ssize_t i = 0; i < count; ++i) {
            Node* t = term(i, node_of(ws[i]));
            acc = mg::add_taking(std::exchange(acc, nullptr), t);
        }
        if (nonlin) acc = mg::relu_taking(std::exchange(acc, nullptr));
    } catch (...) {
        if (acc) mg::release(acc);
        throw;
    }
    return acc;
}

// w a list of exact Values, b one too, and as many of them as inputs.
static bool fits_fast_path(PyObject* w, PyObject* b, Py_ssize_t inputs) {
    if (!PyList_CheckExact(w) || !Py_IS_TYPE(b, value_type)) return false;
    if (PyList_GET_SIZE(w) != inputs) return false;  // sized_inputs() reports it
    PyObject** ws = PySequence_Fast_ITEMS(w);
    for (Py_ssize_t i = 0; i < inputs; ++i) {
        if (!Py_IS_TYPE(ws[i], value_type)) return false;
    }
    return true;
}

// micrograd's Neuron as it nearly always is: w a list of Values, b a Value, x a list or tuple
// of as many Values and plain numbers. Builds the same nodes as reduce() with no Python call
// from the count to the last node, so x can be read in place; returns false, having done
// nothing, when the inputs are anything else.
bool neuron_fast_path(PyObject* w, PyObject* b, PyObject* x, bool nonlin, Node** out) {
    if (!PyList_CheckExact(x) && !PyTuple_CheckExact(x)) return false;
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(x);
    if (!fits_fast_path(w, b, count)) return false;
    PyObject** xs = PySequence_Fast_ITEMS(x);
    for (Py_ssize_t i = 0; i < count; ++i) {
        if (!Py_IS_TYPE(xs[i], value_type) && !is_plain_number(xs[i])) return false;
        double unused;  // an int too large for a float must fail before anything is built
        if (PyLong_CheckExact(xs[i]) && !to_double(xs[i], &unused)) {
            *out = nullptr;
            return true;
        }
    }
    *out = neuron_nodes(PySequence_Fast_ITEMS(w), count, b, nonlin, [xs](Py_ssize_t i, Node* wi) {
        if (Py_IS_TYPE(xs[i], value_type)) return mg::mul(wi, node_of(xs[i]));
        double c;
        to_double(xs[i], &c);  // cannot fail: checked above
        return mg::mul_constant(wi, c);
    });
    return true;
}

bool neuron_fast_path(PyObject* w, PyObject* b, const std::vector<Node*>& x, bool nonlin,
                      Node** out) {
    const auto count = static_cast<Py_ssize_t>(x.size());
    if (!fits_fast_path(w, b, count)) return false;
    *out = neuron_nodes(PySequence_Fast_ITEMS(w), count, b, nonlin, [&x](Py_ssize_t i, Node* wi) {
        return mg::mul(wi, x[static_cast<std::size_t>(i)]);
    });
    return true;
}

namespace {

// x read once into a tuple that must hold as many inputs as w has weights: zip would silently
// drop the extra inputs or the weights left without one. The tuple owns its items, so a Python
// call made later (a __float__, an operator) cannot free them. On failure, null with ValueError
// set (or the error of reading x), before any node is made.
PyObject* sized_inputs(PyObject* w, PyObject* x) {
    const Py_ssize_t nin = PyObject_Size(w);  // first, as len(self.w) in the oracle's Neuron
    if (nin < 0) return nullptr;
    PyObject* xs = PySequence_Tuple(x);  // a tuple is taken as it is, a generator read once
    if (!xs) return nullptr;
    if (PyTuple_GET_SIZE(xs) != nin) {
        PyErr_Format(PyExc_ValueError, "wrong number of inputs: Neuron takes %zd, got %zd", nin,
                     PyTuple_GET_SIZE(xs));
        Py_CLEAR(xs);
    }
    return xs;
}

// neuron() once x is read into xs and counted. nonlin's truth is read after the sum, as the
// oracle's `act.relu() if nonlin else act` reads it (its __bool__ may see or change the graph).
PyObject* neuron_forward(PyObject* w, PyObject* b, PyObject* xs, PyObject* nonlin_object) {
    PyObject* act = reduce(w, xs, b);
    if (!act) return nullptr;
    const int nonlin = PyObject_IsTrue(nonlin_object);
    if (nonlin <= 0) {
        if (nonlin < 0) Py_CLEAR(act);
        return act;
    }
    if (!Py_IS_TYPE(act, value_type)) {
        PyObject* out = PyObject_CallMethod(act, "relu", nullptr);
        Py_DECREF(act);
        return out;
    }
    Node* out = nullptr;
    try {  // Note [No C++ exception crosses into CPython]: act is released either way
        out = mg::relu(node_of(act));
    } catch (...) {
        set_error_from_cpp_exception();
    }
    Py_DECREF(act);
    return out ? to_python_owned(out) : nullptr;
}

}  // namespace

// neuron(w, b, x, nonlin): act = sum((wi*xi for wi, xi in zip(w, x)), b);
// act.relu() if nonlin else act; ValueError, before any node is made, unless x holds len(w)
// inputs.
PyObject* fused_neuron(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (!takes_arguments(nargs, 4, 4, "neuron(w, b, x, nonlin)")) return nullptr;
    PyObject *w = args[0], *b = args[1], *x = args[2], *nonlin = args[3];
    // With nonlin a bool, the fast path makes no Python call at all
    PyObject* out;
    Node* node;
    if (PyBool_Check(nonlin) && neuron_fast_path(w, b, x, nonlin == Py_True, &node)) {
        return node ? to_python_owned(node) : nullptr;
    }
    PyObject* xs = sized_inputs(w, x);
    if (!xs) return nullptr;
    out = neuron_forward(w, b, xs, nonlin);
    Py_DECREF(xs);
    return out;
}

namespace {

// The forward of one neuron object: its w, b and nonlin attributes, as Neuron.__call__ reads them.
PyObject* neuron_object_forward(PyObject* neuron, PyObject* x) {
    static PyObject* const name_w = PyUnicode_InternFromString("w");
    static PyObject* const name_b = PyUnicode_InternFromString("b");
    static PyObject* const name_nonlin = PyUnicode_InternFromString("nonlin");
    if (!name_w || !name_b || !name_nonlin) return nullptr;
    PyObject* w = PyObject_GetAttr(neuron, name_w);
    PyObject* b = w ? PyObject_GetAttr(neuron, name_b) : nullptr;
    PyObject* nonlin = b ? PyObject_GetAttr(neuron, name_nonlin) : nullptr;
    PyObject* out = nullptr;
    if (nonlin) {
        PyObject* args[] = {w, b, x, nonlin};
        out = fused_neuron(nullptr, args, 4);
    }
    Py_XDECREF(w);
    Py_XDECREF(b);
    Py_XDECREF(nonlin);
    return out;
}

// layer(neurons, x): [n(x) for n in neurons] for micrograd's Neuron objects, in one call.
PyObject* fused_layer(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (!takes_arguments(nargs, 2, 2, "layer(neurons, x)")) return nullptr;
    PyObject* neurons = PySequence_Fast(args[0], "layer() takes a sequence of neurons");
    if (!neurons) return nullptr;
    PyObject* out = PyList_New(0);
    // Note [Calls into Python]: reading a neuron's attributes runs Python code, which may change
    // the list of neurons. As the oracle's list comprehension does, the length is read again
    // before each neuron, and the neuron is held while it is used.
    for (Py_ssize_t i = 0; out && i < PySequence_Fast_GET_SIZE(neurons); ++i) {
        PyObject* neuron = Py_NewRef(PySequence_Fast_GET_ITEM(neurons, i));
        PyObject* y = neuron_object_forward(neuron, args[1]);
        Py_DECREF(neuron);
        if (!y || PyList_Append(out, y) < 0) Py_CLEAR(out);
        Py_XDECREF(y);
    }
    Py_DECREF(neurons);
    return out;
}

// layer_call(neurons, x, neuron_type, python_layer): micrograd_cpp.nn's Layer.__call__ up to
// its fallback, in one call, as a step crosses into C++ once per layer:
//
//     if set(map(type, neurons)) != {neuron_type}: return NotImplemented  # someone's own neurons
//     out = ops.layer(neurons, x)  # fused when neurons[0].b is a C++ Value, else python_layer
//     return out[0] if len(out) == 1 else out
//
// Nothing observable happens before NotImplemented: only the list's items' types are read. The
// types are compared by identity, which is what the set's comparison comes to for classes.
PyObject* layer_call(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (!takes_arguments(nargs, 4, 4, "layer_call(neurons, x, neuron_type, python_layer)")) {
        return nullptr;
    }
    PyObject* neurons = args[0];
    if (!PyList_CheckExact(neurons) || PyList_GET_SIZE(neurons) == 0) Py_RETURN_NOTIMPLEMENTED;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(neurons); ++i) {
        if (reinterpret_cast<PyObject*>(Py_TYPE(PyList_GET_ITEM(neurons, i))) != args[2]) {
            Py_RETURN_NOTIMPLEMENTED;
        }
    }
    static PyObject* const name_b = PyUnicode_InternFromString("b");
    if (!name_b) return nullptr;
    PyObject* first = Py_NewRef(PyList_GET_ITEM(neurons, 0));
    PyObject* b = PyObject_GetAttr(first, name_b);
    Py_DECREF(first);
    if (!b) return nullptr;
    const bool fused = Py_IS_TYPE(b, value_type);
    Py_DECREF(b);
    PyObject* out =
        fused ? fused_layer(nullptr, args, 2) : PyObject_Vectorcall(args[3], args, 2, nullptr);
    if (!out || !PyList_CheckExact(out) || PyList_GET_SIZE(out) != 1) return out;
    PyObject* only = Py_NewRef(PyList_GET_ITEM(out, 0));
    Py_DECREF(out);
    return only;
}

PyMethodDef fused_methods[] = {
    {"layer_call", as_method(guarded<layer_call>), METH_FASTCALL,
     "layer_call(neurons, x, neuron_type, python_layer)\n--\n\nmicrograd_cpp.nn's Layer "
     "forward: NotImplemented unless every neuron is exactly neuron_type; else ops.layer's "
     "outputs, the only one alone."},
    {"layer", as_method(guarded<fused_layer>), METH_FASTCALL,
     "layer(neurons, x)\n--\n\n[neuron(x) for neuron in neurons] for micrograd Neurons, in one "
     "call."},
    {"sum", as_method(guarded<fused_sum>), METH_FASTCALL,
     "sum(values, start=0)\n--\n\nPython's sum(values, start), building the same nodes in one "
     "call."},
    {"dot", as_method(guarded<fused_dot>), METH_FASTCALL,
     "dot(a, b, start=0)\n--\n\nsum((ai*bi for ai, bi in zip(a, b)), start) in one call."},
    {"neuron", as_method(guarded<fused_neuron>), METH_FASTCALL,
     "neuron(w, b, x, nonlin)\n--\n\nmicrograd's Neuron forward: sum((wi*xi for wi, xi in "
     "zip(w, x)), b), then relu() if nonlin; ValueError unless x holds len(w) inputs."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

int add_fused_functions(PyObject* module) { return PyModule_AddFunctions(module, fused_methods); }

}  // namespace mg::python
