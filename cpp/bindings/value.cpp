// The Value type: construction, attributes, methods and the table of its slots. Its other jobs
// have a file each (value_parts.hpp).
#include "value.hpp"

#include <structmember.h>

#include <cstddef>
#include <vector>

#include "../deferred_stores.hpp"
#include "guarded.hpp"
#include "methods.hpp"
#include "spare_values.hpp"
#include "value_parts.hpp"

namespace mg::python {

PyTypeObject* value_type = nullptr;

namespace {

PyObject* str_label = nullptr;  // interned "label"

PyObject* dict_of(PyObject* self) {
    PyObject*& dict = as_value(self)->dict;
    own_node(self);  // Note [Ownership]
    if (!dict) dict = PyDict_New();
    return dict;
}

int store(PyObject* self, PyObject* key, PyObject* value) {
    PyObject* dict = dict_of(self);
    return dict ? PyDict_SetItem(dict, key, value) : -1;
}

// ---------------------------------------------------------------------------------------------
// Construction: Value(data, _children=(), _op='', label='')

bool as_data(PyObject* o, double* out) {
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return true;
    }
    // An exact int is converted as float(int) does, without making the float (zero_grad's
    // `p.grad = 0` took 24 ns a parameter that way); OverflowError past the largest float.
    // Anything else: __float__, else __index__; TypeError if it has neither.
    double d = PyLong_CheckExact(o) ? PyLong_AsDouble(o) : PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) return false;
    *out = d;
    return true;
}

PyObject* value_new(PyTypeObject* type, PyObject*, PyObject*) {
    Node* n = new_leaf(0.0);
    PyObject* o = type == value_type ? new_value_object() : type->tp_alloc(type, 0);
    if (!o) {
        release(n);
        return nullptr;
    }
    as_value(o)->node = n;
    n->handle = o;
    if (type == value_type) {
        as_value(o)->dict = nullptr;
        PyObject_GC_Track(o);  // as tp_alloc would: a Value() is tracked from the start
    } else {
        reaches_outside(o);  // Note [Cycle collection]
    }
    return o;
}

int value_init(PyObject* self, PyObject* args, PyObject* kwds) {
    static const char* keywords[] = {"data", "_children", "_op", "label", nullptr};
    PyObject *data, *children = nullptr, *op = nullptr, *label = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OOO:Value", const_cast<char**>(keywords), &data,
                                     &children, &op, &label)) {
        return -1;
    }
    double x;
    if (!as_data(data, &x)) return -1;
    // _op is kept as given (the default '' need not be stored), in an entry made before anything
    // changes, since making it can throw std::bad_alloc.
    const bool default_op = !op || (PyUnicode_CheckExact(op) && PyUnicode_GET_LENGTH(op) == 0);
    if (!default_op) custom_entry(self);
    PyObject* items = children ? PySequence_Fast(children,
                                                 "Value() argument '_children' must be "
                                                 "iterable")
                               : PyTuple_New(0);
    if (!items) return -1;
    Node* n = node_of(self);
    // Only the caller refers to a new object, so no parent can refer to it yet. Each parent holds
    // a reference of its own, to the node or to the object (Note [Ownership]), and so does
    // whoever lends the caller its reference: since 3.14 the interpreter may borrow a local's
    // reference instead of taking one, which lowers the count below a parent's but never hides
    // the parent.
    const bool may_have_parents = Py_REFCNT(self) > 1 || n->refs > 1;
    const bool reached_outside = n->flags & may_reach_outside;
    bool ok = false;
    try {  // Note [No C++ exception crosses into CPython]: give items back first
        std::vector<Node*> kids;
        if (nodes_of(items, kids, "children")) {
            ok = set_children(n, kids.data(), kids.size(), may_have_parents);
            if (!ok) PyErr_SetString(PyExc_ValueError, "a Value cannot be its own descendant");
        }
    } catch (...) {
        Py_DECREF(items);
        throw;
    }
    Py_DECREF(items);
    if (!ok) return -1;
    grad_written(n);  // reset below (Note [Deferred stores])
    if (!reached_outside && (n->flags & may_reach_outside)) {  // from its new children
        track(self);
        spread_from(n);
    }
    n->data = x;
    n->grad = 0.0;
    n->flags &= static_cast<std::uint8_t>(~(has_python_backward | exponent_is_int));
    // Re-initialising resets _op and _backward, as micrograd's __init__ does.
    set_field(self, &Custom::op, default_op ? nullptr : op);
    set_field(self, &Custom::backward, nullptr);
    // `if label: self.label = label`, as the oracle does: a false label keeps the one set
    // before, and a label whose __bool__ fails fails the call.
    const int label_is_true = label ? PyObject_IsTrue(label) : 0;
    if (label_is_true < 0) return -1;
    if (label_is_true && !is_atomic(label)) reaches_outside(self);  // Note [Cycle collection]
    if (label_is_true && store(self, str_label, label) < 0) return -1;
    return 0;
}

// Value(x), a leaf from one positional argument, made as tp_new and tp_init make it but
// without their argument tuple and parsing: 67 ns a call before, 29 after; W5's 2,048 input
// Values a step took 182 us, now 105. Any other call goes through them (type.__call__), and so
// does every call once code sets Value.__new__ or Value.__init__ (the class is mutable, as
// micrograd's is). Subclasses never come here: tp_vectorcall is not inherited.
PyObject* value_vectorcall(PyObject* type, PyObject* const* args, std::size_t nargsf,
                           PyObject* kwnames) {
    const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    const auto* t = reinterpret_cast<PyTypeObject*>(type);
    const bool own_slots = t->tp_new == guarded<value_new> && t->tp_init == guarded<value_init>;
    if (nargs != 1 || kwnames || !own_slots) {
        PyObject* positional = PyTuple_New(nargs);
        if (!positional) return nullptr;
        for (Py_ssize_t i = 0; i < nargs; ++i) PyTuple_SET_ITEM(positional, i, Py_NewRef(args[i]));
        PyObject* keywords = kwnames ? PyDict_New() : nullptr;
        bool ok = !kwnames || keywords;
        for (Py_ssize_t i = 0; ok && kwnames && i < PyTuple_GET_SIZE(kwnames); ++i) {
            ok = PyDict_SetItem(keywords, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) == 0;
        }
        PyObject* made = ok ? PyType_Type.tp_call(type, positional, keywords) : nullptr;
        Py_DECREF(positional);
        Py_XDECREF(keywords);
        return made;
    }
    double x;
    if (!as_data(args[0], &x)) return nullptr;
    PyObject* o = value_new(value_type, nullptr, nullptr);
    if (o) node_of(o)->data = x;
    return o;
}

// Value.__init__ as a method too (METH_COEXIST, in value_methods), so that help() and inspect
// show its parameters rather than the slot wrapper's (*args, **kwargs). Construction still goes
// through the tp_init slot, but a Python subclass initialises through the method (about 60 ns
// more per Value on 3.11). Python 3.13's inspect.signature(Value) binds such a method to the
// class and fails (TypeError), so from 3.13 __init__ stays the slot wrapper: inspect and help
// then read the signature from the class docstring (Py_tp_doc) alone.
#if PY_VERSION_HEX < 0x030D0000
PyObject* method_init(PyObject* self, PyObject* args, PyObject* kwds) {
    if (value_init(self, args, kwds) < 0) return nullptr;
    Py_RETURN_NONE;
}
#endif

// ---------------------------------------------------------------------------------------------
// Attributes

PyObject* get_data(PyObject* self, void*) { return PyFloat_FromDouble(node_of(self)->data); }
PyObject* get_grad(PyObject* self, void*) { return PyFloat_FromDouble(node_of(self)->grad); }

int set_number(PyObject* value, double* slot, const char* name) {
    if (!value) {
        PyErr_Format(PyExc_AttributeError, "cannot delete Value.%s", name);
        return -1;
    }
    return as_data(value, slot) ? 0 : -1;
}
int set_data(PyObject* self, PyObject* value, void*) {
    return set_number(value, &node_of(self)->data, "data");
}
int set_grad(PyObject* self, PyObject* value, void*) {
    Node* n = node_of(self);
    grad_written(n);  // Note [Deferred stores]
    return set_number(value, &n->grad, "grad");
}

PyObject* get_children(PyObject* self, void*) {
    Node* n = node_of(self);
    const std::vector<Node*> kids(children(n), children(n) + child_count(n));
    return objects_of(kids, false);
}

PyObject* get_prev(PyObject* self, void*) {
    // Note [Calls into Python]: the set is made from the tuple, which owns the children, so a
    // __hash__ that re-initialises this Value cannot free them.
    PyObject* kids = get_children(self, nullptr);
    if (!kids) return nullptr;
    PyObject* set = PySet_New(kids);
    Py_DECREF(kids);
    return set;
}

PyObject* builtin_op_label(const Node* n) {
    if (const char* label = facts(n->op).label) return PyUnicode_FromString(label);
    // f'**{other}' for an exact int or float exponent; other exponents stored their label.
    const double e = n->operands.pow.exponent;
    if (n->flags & exponent_is_int) {
        return PyUnicode_FromFormat("**%lld", static_cast<long long>(e));
    }
    char* digits = PyOS_double_to_string(e, 'r', 0, Py_DTSF_ADD_DOT_0, nullptr);
    if (!digits) return nullptr;
    PyObject* label = PyUnicode_FromFormat("**%s", digits);
    PyMem_Free(digits);
    return label;
}

PyObject* get_op(PyObject* self, void*) {
    if (Custom* c = custom_of(self)) {
        if (c->op) return Py_NewRef(c->op);
        if (c->op_deleted) return no_op_error(self);
    }
    return builtin_op_label(node_of(self));
}
int set_op(PyObject* self, PyObject* value, void*) {
    if (!value) return delete_op(self) ? 0 : -1;
    set_field(self, &Custom::op, value);
    return 0;
}

PyMethodDef builtin_rule_def;  // filled in below; _backward returns it bound to a Value

PyObject* get_backward(PyObject* self, void*) {
    if (Custom* c = custom_of(self); c && c->backward) return Py_NewRef(c->backward);
    return PyCFunction_New(&builtin_rule_def, self);
}
// The node's flag tells backward() to call the hook; it is set and cleared only together with
// the entry's backward.
void set_python_backward(PyObject* self, PyObject* fn) {
    if (fn) custom_entry(self);  // before anything changes, as it can throw
    Node* n = node_of(self);
    if (fn) {
        n->flags |= has_python_backward;
    } else {
        n->flags &= static_cast<std::uint8_t>(~has_python_backward);
    }
    set_field(self, &Custom::backward, fn);
}
int set_backward(PyObject* self, PyObject* value, void*) {
    set_python_backward(self, value);
    return 0;
}

PyGetSetDef value_getset[] = {
    {"data", get_data, set_data, "the scalar value (a float)", nullptr},
    {"grad", get_grad, set_grad, "d(root)/d(this value) after backward() (a float)", nullptr},
    // The same docs as the oracle's (micrograd_cpp.pure.engine.Value).
    {"_prev", guarded<get_prev>, nullptr,
     "the set of distinct operand Values, as micrograd keeps them (_children has their order)",
     nullptr},
    {"_children", guarded<get_children>, nullptr,
     "the operand Values in order (micrograd's _prev is their set)", nullptr},
    // Setting _op or _backward may make a table entry: guarded (std::bad_alloc).
    {"_op", get_op, guarded<set_op>,
     "the op that produced this node ('' for a leaf), a label for drawing", nullptr},
    {"_backward", get_backward, guarded<set_backward>,
     "this node's local chain rule: adds its share of the grad to its operands' grads. Assign a "
     "function to give your own op its rule; del restores the built-in one.",
     nullptr},
    {"__dict__", get_dict, set_dict, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef value_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(ValueObject, dict), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

// ---------------------------------------------------------------------------------------------
// Methods

// None, or the exception for a failure.
PyObject* none_or_error(Status status) {
    return status == Status::ok ? Py_NewRef(Py_None) : set_error(status);
}

// v.relu(), v.tanh(), ...: a built-in unary op's node (Note [Op table]).
template <Op op>
PyObject* method_unary(PyObject* self, PyObject*) {
    Status s;
    Node* n = unary_node(op, node_of(self), &s);
    return n ? to_python_owned(n) : set_error(s);
}
PyObject* method_backward(PyObject* self, PyObject*) {
    return none_or_error(backward(node_of(self)));
}
PyObject* method_builtin_rule(PyObject* self, PyObject*) {
    return none_or_error(apply_builtin_rule(node_of(self)));
}

// _clone(children): a new Value of the same type, op, data, grad, exponent and _backward over
// `children`.
PyObject* method_clone(PyObject* self, PyObject* arg) {
    PyObject* items = PySequence_Fast(arg, "_clone() takes a sequence of Values");
    if (!items) return nullptr;
    Node* copy = nullptr;
    try {  // Note [No C++ exception crosses into CPython]: give items back first
        std::vector<Node*> kids;
        if (nodes_of(items, kids, "children")) {
            copy = clone(node_of(self), kids.data(), kids.size());
            if (!copy) {
                PyErr_SetString(PyExc_ValueError, "_clone() needs as many children as the op has");
            }
        }
    } catch (...) {
        Py_DECREF(items);
        throw;
    }
    Py_DECREF(items);
    if (!copy) return nullptr;
    PyObject* o = wrap(Py_TYPE(self), copy);
    if (!o) {
        release(copy);
        return nullptr;
    }
    if (Custom* c = custom_of(self)) {
        if (c->op_deleted) {  // as the oracle's _clone, which reads self._op
            Py_DECREF(o);
            return no_op_error(self);
        }
        try {  // Note [No C++ exception crosses into CPython]: give the copy back first
            const Custom copied = *c;  // o's new entry may move nothing, but read it first
            set_field(o, &Custom::op, copied.op);
            set_python_backward(o, copied.backward);
        } catch (...) {
            Py_DECREF(o);
            throw;
        }
    }
    return o;
}

PyMethodDef value_methods[] = {
#if PY_VERSION_HEX < 0x030D0000
    {"__init__", as_method(guarded<method_init>), METH_VARARGS | METH_KEYWORDS | METH_COEXIST,
     "__init__($self, /, data, _children=(), _op='', label='')\n--\n\n"
     "Initialize self: a leaf holding float(data), or a node over _children made by _op."},
#endif
    {"relu", guarded<method_unary<Op::relu>>, METH_NOARGS, "max(0, x), micrograd's ReLU node"},
    {"tanh", guarded<method_unary<Op::tanh>>, METH_NOARGS, "math.tanh(x)"},
    {"exp", guarded<method_unary<Op::exp>>, METH_NOARGS, "math.exp(x)"},
    {"log", guarded<method_unary<Op::log>>, METH_NOARGS, "math.log(x)"},
    {"sigmoid", guarded<method_unary<Op::sigmoid>>, METH_NOARGS,
     "1 / (1 + math.exp(-x)), computed so that it never overflows"},
    {"backward", guarded<method_backward>, METH_NOARGS,
     "Backpropagate from this Value: its grad is set to 1 and every local rule is applied in "
     "reverse topological order, accumulating into the grads below it."},
    {"_clone", guarded<method_clone>, METH_O, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyObject* value_repr(PyObject* self) {
    PyObject* data = get_data(self, nullptr);
    PyObject* grad = get_grad(self, nullptr);
    PyObject* r =
        (data && grad) ? PyUnicode_FromFormat("Value(data=%R, grad=%R)", data, grad) : nullptr;
    Py_XDECREF(data);
    Py_XDECREF(grad);
    return r;
}

PyType_Slot value_slots[] = {
    // The text signature before "--" is what inspect.signature(Value) and help(Value) show.
    {Py_tp_doc, const_cast<char*>("Value(data, _children=(), _op='', label='')\n--\n\n"
                                  "stores a single scalar value and its gradient")},
    {Py_tp_new, reinterpret_cast<void*>(guarded<value_new>)},
    {Py_tp_init, reinterpret_cast<void*>(guarded<value_init>)},
    {Py_tp_dealloc, reinterpret_cast<void*>(guarded<value_dealloc>)},
    {Py_tp_traverse, reinterpret_cast<void*>(value_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(value_clear)},
    {Py_tp_setattro, reinterpret_cast<void*>(value_setattro)},
    {Py_tp_repr, reinterpret_cast<void*>(value_repr)},
    {Py_tp_getset, value_getset},
    {Py_tp_members, value_members},
    {Py_tp_methods, value_methods},
    {Py_nb_add, reinterpret_cast<void*>(guarded<value_add>)},
    {Py_nb_subtract, reinterpret_cast<void*>(guarded<value_sub>)},
    {Py_nb_multiply, reinterpret_cast<void*>(guarded<value_mul>)},
    {Py_nb_true_divide, reinterpret_cast<void*>(guarded<value_truediv>)},
    {Py_nb_power, reinterpret_cast<void*>(guarded<value_pow>)},
    {Py_nb_negative, reinterpret_cast<void*>(guarded<value_neg>)},
    {0, nullptr},
};

PyType_Spec value_spec = {
    "micrograd_cpp.engine.Value",
    sizeof(ValueObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    value_slots,
};

}  // namespace

bool nodes_of(PyObject* items, std::vector<Node*>& nodes, const char* what) {
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    nodes.reserve(static_cast<std::size_t>(count));
    for (Py_ssize_t i = 0; i < count; ++i) {
        PyObject* item = PySequence_Fast_GET_ITEM(items, i);
        if (!is_value(item)) {
            PyErr_Format(PyExc_TypeError, "%s must be Values, not %.200s", what,
                         Py_TYPE(item)->tp_name);
            return false;
        }
        nodes.push_back(node_of(item));
    }
    return true;
}

PyObject* create_value_type() {
    if (value_type) return Py_NewRef(reinterpret_cast<PyObject*>(value_type));
    str_label = PyUnicode_InternFromString("label");
    if (!str_label || !init_operators()) return nullptr;

    builtin_rule_def = {"_backward", guarded<method_builtin_rule>, METH_NOARGS,
                        "apply this node's local chain rule"};
    PyObject* type = PyType_FromSpec(&value_spec);
    if (!type) return nullptr;
    // Like micrograd's lecture Value, label defaults to '' and lives in the instance once set.
    PyObject* empty = PyUnicode_FromString("");
    PyObject* priority = PyFloat_FromDouble(1000.0);  // Note [numpy operands]
    int failed = !empty || !priority || PyObject_SetAttr(type, str_label, empty) < 0 ||
                 PyObject_SetAttrString(type, "__array_priority__", priority) < 0;
    Py_XDECREF(empty);
    Py_XDECREF(priority);
    if (failed) {
        Py_DECREF(type);
        return nullptr;
    }
    value_type = reinterpret_cast<PyTypeObject*>(type);
    value_type->tp_vectorcall = guarded<value_vectorcall>;  // no type slot for it before 3.14
    Py_INCREF(type);  // value_type keeps the type alive for the life of the process
    hooks.retain_handle = retain_handle;
    hooks.release_handle = release_handle;
    hooks.run_python_backward = run_python_backward;
    // Note [Counts in place] in engine.hpp: ob_refcnt, a Py_ssize_t, comes first. A Value is
    // never immortal (that would take 2**31 references), so on 3.12 and later too, adding or
    // taking one in place is what Py_INCREF and Py_DECREF do while the count stays above zero.
#if !defined(Py_GIL_DISABLED) && !defined(Py_REF_DEBUG)
    static_assert(offsetof(PyObject, ob_refcnt) == 0 && sizeof(Py_ssize_t) == sizeof(std::intptr_t),
                  "a Value's reference count begins it");
    hooks.counts_in_place = true;
#endif
    return type;
}

}  // namespace mg::python
