#include "value.hpp"

#include <structmember.h>

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <iterator>
#include <new>
#include <unordered_map>
#include <vector>

#include "../deferred_stores.hpp"
#include "../node_pool.hpp"
#include "guarded.hpp"

namespace mg::python {

PyTypeObject* value_type = nullptr;

namespace {

PyObject* real_number_abc = nullptr;  // numbers.Real
PyObject* str_label = nullptr;        // interned "label"
PyObject* minus_one = nullptr;        // the int -1
PyObject* str_numpy = nullptr;        // interned "numpy"

ValueObject* as_value(PyObject* o) { return reinterpret_cast<ValueObject*>(o); }

// ---------------------------------------------------------------------------------------------
// Hooks: the engine reaches Python objects only through these.

void retain_handle(void* handle) { Py_INCREF(static_cast<PyObject*>(handle)); }
void release_handle(void* handle) { Py_DECREF(static_cast<PyObject*>(handle)); }

// Note [Custom op and backward]
// A user's _op and _backward live outside __dict__, as micrograd_cpp.pure's live in slots:
// replacing, clearing or deleting __dict__ changes neither. Few Values have them, so rather than
// in two more fields of every object (16 bytes each, with the allocator's rounding) they live in
// a side table, which only objects whose node has `has_custom_entry` have an entry in. The
// node's `has_python_backward` is set and cleared together with the entry's backward.
struct Custom {
    PyObject* op = nullptr;        // null: the built-in label
    PyObject* backward = nullptr;  // null: the built-in rule
};
std::unordered_map<PyObject*, Custom> customs;

Custom* custom_of(PyObject* self) {
    Node* n = as_value(self)->node;
    if (!n || !(n->flags & has_custom_entry)) return nullptr;
    return &customs.find(self)->second;
}

// The object's entry, made if need be (this can throw std::bad_alloc; then nothing changed).
Custom& custom_entry(PyObject* self) {
    if (Custom* c = custom_of(self)) return *c;
    Custom& c = customs[self];
    node_of(self)->flags |= has_custom_entry;
    return c;
}

// Removes the object's entry and releases what it held, last: that can run a __del__ (Note
// [Calls into Python]), which then finds no entry.
void drop_custom_entry(PyObject* self) {
    Custom* c = custom_of(self);
    if (!c) return;
    const Custom taken = *c;
    customs.erase(self);
    as_value(self)->node->flags &=
        static_cast<std::uint8_t>(~(has_custom_entry | has_python_backward));
    Py_XDECREF(taken.op);
    Py_XDECREF(taken.backward);
}

Status run_python_backward(Node* n) {
    // Only Python code assigns _backward, so the node has its object, and the object its entry;
    // hold the callable while the user's code runs (it may assign another).
    Custom* c = custom_of(static_cast<PyObject*>(n->handle));
    PyObject* fn = c ? c->backward : nullptr;
    if (!fn) return apply_builtin_rule(n);  // the flag follows the entry: not reached
    Py_INCREF(fn);
    PyObject* result = PyObject_CallNoArgs(fn);
    Py_DECREF(fn);
    if (!result) return Status::callback_failed;
    Py_DECREF(result);
    return Status::ok;
}

// ---------------------------------------------------------------------------------------------
// Objects

// Note [Cycle collection]
// A cycle can run through the graph: after `x.out = x * 2`, x's dict refers to out, out's node
// to x's node, and x's node is x. Python's collector finds such a cycle only if every object in
// it is tracked and every object's tp_traverse reports what it refers to.
//
// What a Value refers to: its dict, its custom _op and _backward, its type, and through its
// node the objects of the node's children (Note [Ownership]). A child without an object (the
// inner nodes of a fused sum, dot or neuron) holds its own children's objects; value_traverse
// reports those too when this node is that child's one owner (refs == 1), so that each such
// node is reported from one Value alone and a Value reports what its node owns, not the graph
// below it. A node without an object but with several owners (a compiled Program holds it too)
// is not entered: what it holds counts as reachable, so a cycle through it is not collected,
// but nothing reachable is ever freed.
//
// Which Values are tracked: tracking all of them would make the collector scan every Value,
// several times over as the graph grows (W1's forward takes 1.8 times as long). Graph edges alone
// never form a cycle (set_children refuses one), so a cycle needs a Value that refers outside the
// graph: one with a non-atomic attribute or _op (anything but None, bool, int, float and str:
// so a label is not one), a custom _backward, a __dict__ read or set whole, or of a subclass of
// Value. Such a Value reaches_outside(), and its node is marked may_reach_outside. The mark
// passes from operands to every node made over them, and a Value is tracked when its node is
// marked: a cycle through the graph runs down graph edges from a Value back to the one that
// refers outside, so every Value on it is tracked. A Value marked after nodes were built over
// it has those marked by spread_reach_outside(), a walk over every live node; if those walks
// would cost more than a few visits per node made since the process started (a loop that
// makes one such cycle per step), or one runs out of memory, every Value is tracked from then
// on instead.
//
// value_clear drops the dict and the custom entry; a subclass's slots are cleared by Python.
// Every cycle passes through one of them, so that breaks it. The nodes stay whole: a Value the
// collector has cleared, still read while the rest of its cycle is freed, keeps its data, grad
// and children.
bool every_value_tracked = false;
std::uint64_t spread_credit = std::uint64_t{1} << 20;  // node visits spread walks may still make
std::uint32_t made_at_last_spread = 0;

void track(PyObject* o) {
    // An object being deallocated (no reference left) stays untracked.
    if (Py_REFCNT(o) > 0 && !PyObject_GC_IsTracked(o)) PyObject_GC_Track(o);
}

void track_node(Node* n) {
    if (n->handle) track(static_cast<PyObject*>(n->handle));
}

void track_every_value() {
    every_value_tracked = true;
    for_each_node(track_node);
}

std::size_t live_count = 0;
void count_node(Node*) { ++live_count; }

// Tracks the objects of the live nodes above n, n now marked (Note [Cycle collection]).
void spread_from(Node* n) {
    if (every_value_tracked || !(n->flags & has_had_parents)) return;
    spread_credit +=
        4 * std::uint64_t{nodes_made - made_at_last_spread};  // wraps: Note [Creation order]
    made_at_last_spread = nodes_made;
    live_count = 0;
    for_each_node(count_node);
    if (live_count > spread_credit) {
        track_every_value();
        return;
    }
    spread_credit -= live_count;
    try {
        spread_reach_outside(track_node);
    } catch (const std::bad_alloc&) {
        track_every_value();
    }
}

// self now refers outside the graph, or may (Note [Cycle collection]). Calls no Python code.
void reaches_outside(PyObject* self) {
    Node* n = as_value(self)->node;
    if (!n) return;
    track(self);
    if (n->flags & may_reach_outside) return;
    n->flags |= may_reach_outside;
    spread_from(n);
}

bool is_atomic(PyObject* o) {
    return o == Py_None || PyBool_Check(o) || PyLong_CheckExact(o) || PyFloat_CheckExact(o) ||
           PyUnicode_CheckExact(o);
}

PyObject* wrap(PyTypeObject* type, Node* n, Py_ssize_t refcount) {
    PyObject* o;
    if (type == value_type) {
        o = reinterpret_cast<PyObject*>(PyObject_GC_New(ValueObject, type));
        if (!o) return nullptr;
    } else {
        o = type->tp_alloc(type, 0);
        if (!o) return nullptr;
    }
    as_value(o)->node = n;
    as_value(o)->dict = nullptr;
    n->handle = o;
    // A new object is not immortal, so the count is stored as given on every version; only a
    // count of 2**31 (as many parents) would read as immortal (CPython 3.12 and later).
    Py_SET_REFCNT(o, refcount);
    if (type != value_type) {
        reaches_outside(o);
    } else if (every_value_tracked || (n->flags & may_reach_outside)) {
        track(o);
    }
    return o;
}

PyObject* dict_of(PyObject* self) {
    PyObject*& dict = as_value(self)->dict;
    if (!dict) dict = PyDict_New();
    return dict;
}

int store(PyObject* self, PyObject* key, PyObject* value) {
    PyObject* dict = dict_of(self);
    return dict ? PyDict_SetItem(dict, key, value) : -1;
}

// Sets (value null: clears) the object's _op or _backward (Note [Custom op and backward]). Can
// throw std::bad_alloc before it changes anything. The old value is released last: that can
// run a __del__ (Note [Calls into Python]), which then sees the new value.
void set_field(PyObject* self, PyObject* Custom::* field, PyObject* value) {
    Custom* c = value ? &custom_entry(self) : custom_of(self);
    if (!c) return;
    PyObject* old = c->*field;
    c->*field = Py_XNewRef(value);
    if (!c->op && !c->backward) {
        customs.erase(self);
        node_of(self)->flags &= static_cast<std::uint8_t>(~has_custom_entry);
    }
    if (value && !is_atomic(value)) reaches_outside(self);
    Py_XDECREF(old);
}

// ---------------------------------------------------------------------------------------------
// Construction: Value(data, _children=(), _op='', label='')

bool as_data(PyObject* o, double* out) {
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return true;
    }
    double d = PyFloat_AsDouble(o);  // __float__, else __index__; TypeError for anything else
    if (d == -1.0 && PyErr_Occurred()) return false;
    *out = d;
    return true;
}

PyObject* value_new(PyTypeObject* type, PyObject*, PyObject*) {
    Node* n = new_leaf(0.0);
    PyObject* o = type->tp_alloc(type, 0);
    if (!o) {
        release(n);
        return nullptr;
    }
    as_value(o)->node = n;
    n->handle = o;
    if (type != value_type) reaches_outside(o);  // Note [Cycle collection]
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
    // a reference of its own (Note [Ownership]), and so does whoever lends the caller its
    // reference: since 3.14 the interpreter may borrow a local's reference instead of taking
    // one, which lowers the count below a parent's but never hides the parent.
    const bool may_have_parents = Py_REFCNT(self) > 1;
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

// Note [Cycle collection]: before the value is stored, so that it is never held untracked.
int value_setattro(PyObject* self, PyObject* name, PyObject* value) {
    if (value && !is_atomic(value)) reaches_outside(self);
    return PyObject_GenericSetAttr(self, name, value);
}

// Whoever has the dict can put anything in it.
PyObject* get_dict(PyObject* self, void* context) {
    reaches_outside(self);
    return PyObject_GenericGetDict(self, context);
}

int set_dict(PyObject* self, PyObject* value, void* context) {
    if (!value) {  // `del v.__dict__`, which the oracle's (a Python class's) allows
        Py_CLEAR(as_value(self)->dict);
        return 0;
    }
    reaches_outside(self);
    return PyObject_GenericSetDict(self, value, context);
}

// Note [Cycle collection]: reports the objects of n's children, and below each child without an
// object that n alone owns, theirs. No recursion and no allocation: such nodes pending at once
// are few (a fused sum is a chain with one product beside each link), and one that would not
// fit is not entered, which only leaves what it holds uncollected, the same way every time.
int visit_operands(Node* n, visitproc visit, void* arg) {
    Node* pending[32];
    std::size_t depth = 0;
    for (;;) {
        const std::uint32_t count = child_count(n);
        Node* const* kids = children(n);
        for (std::uint32_t i = 0; i < count; ++i) {
            Node* k = kids[i];
            if (k->handle) {
                Py_VISIT(static_cast<PyObject*>(k->handle));
            } else if (k->refs == 1 && child_count(k) > 0 && depth < std::size(pending)) {
                pending[depth++] = k;
            }
        }
        if (depth == 0) return 0;
        n = pending[--depth];
    }
}

int value_traverse(PyObject* self, visitproc visit, void* arg) {
    Py_VISIT(as_value(self)->dict);
    if (Custom* c = custom_of(self)) {
        Py_VISIT(c->op);
        Py_VISIT(c->backward);
    }
    Py_VISIT(Py_TYPE(self));  // heap types are referenced by their instances
    Node* n = as_value(self)->node;
    return n ? visit_operands(n, visit, arg) : 0;
}

int value_clear(PyObject* self) {
    if (Node* n = as_value(self)->node) n->flags &= static_cast<std::uint8_t>(~has_python_backward);
    Py_CLEAR(as_value(self)->dict);
    drop_custom_entry(self);
    return 0;
}

void value_dealloc(PyObject* self) {
    PyTypeObject* type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_CLEAR(as_value(self)->dict);
    drop_custom_entry(self);
    if (Node* n = as_value(self)->node) {
        // Nobody refers to this object, so nobody but it owns the node (Note [Ownership]).
        as_value(self)->node = nullptr;
        n->handle = nullptr;
        release(n);
    }
    type->tp_free(self);
    Py_DECREF(type);
}

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
    if (Custom* c = custom_of(self); c && c->op) return Py_NewRef(c->op);
    return builtin_op_label(node_of(self));
}
int set_op(PyObject* self, PyObject* value, void*) {
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
    PyObject* o = wrap(Py_TYPE(self), copy, 1);
    if (!o) {
        release(copy);
        return nullptr;
    }
    if (Custom* c = custom_of(self)) {
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
    {"__init__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<method_init>)),
     METH_VARARGS | METH_KEYWORDS | METH_COEXIST,
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

// ---------------------------------------------------------------------------------------------
// Operators: micrograd's graph shapes (-a is a*-1, a-b is a+(-b), a/b is a*b**-1).

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

// -------------------------------------------------------------------------------------------------

PyObject* to_python(Node* n) {
    if (n->handle) return Py_NewRef(static_cast<PyObject*>(n->handle));
    expose();  // Note [Deferred stores]
    // The node's C++ owners now each hold a reference to its object instead (Note [Ownership]).
    PyObject* o = wrap(value_type, n, static_cast<Py_ssize_t>(n->refs) + 1);
    if (o) n->refs = 1;
    return o;
}

PyObject* to_python_owned(Node* n) {
    if (n->handle) return static_cast<PyObject*>(n->handle);  // already a Python reference
    if (n->refs > 1) expose();  // not a node just made: Note [Deferred stores]
    PyObject* o = wrap(value_type, n, static_cast<Py_ssize_t>(n->refs));
    if (o) {
        n->refs = 1;
    } else {
        release(n);
    }
    return o;
}

PyObject* objects_of(const std::vector<Node*>& nodes, bool as_list) {
    // Note [Calls into Python]: making an object can run the cycle collector, and so a __del__
    // that re-initialises a node and frees its children: every node is retained first.
    for (Node* n : nodes) retain(n);
    const auto count = static_cast<Py_ssize_t>(nodes.size());
    PyObject* out = as_list ? PyList_New(count) : PyTuple_New(count);
    for (Py_ssize_t i = 0; out && i < count; ++i) {
        PyObject* o = to_python(nodes[static_cast<std::size_t>(i)]);
        if (!o) {
            Py_CLEAR(out);
        } else if (as_list) {
            PyList_SET_ITEM(out, i, o);
        } else {
            PyTuple_SET_ITEM(out, i, o);
        }
    }
    for (Node* n : nodes) release(n);  // each one is in `out` now, unless it failed
    return out;
}

PyObject* set_error(Status status) {
    switch (status) {
        case Status::ok:
        case Status::callback_failed:
            break;
        case Status::zero_to_negative_power:
            PyErr_SetString(PyExc_ZeroDivisionError, "0.0 cannot be raised to a negative power");
            break;
        case Status::pow_out_of_range:
            errno = ERANGE;
            PyErr_SetFromErrno(PyExc_OverflowError);
            break;
        case Status::pow_domain_error:
            errno = EDOM;
            PyErr_SetFromErrno(PyExc_ValueError);
            break;
        case Status::complex_power:
            PyErr_SetString(PyExc_ValueError,
                            "negative number cannot be raised to a fractional power");
            break;
        case Status::complex_overflow:
            PyErr_SetString(PyExc_OverflowError, "complex exponentiation");
            break;
        case Status::math_range_error:
            PyErr_SetString(PyExc_OverflowError, "math range error");
            break;
        case Status::math_domain_error:
            PyErr_SetString(PyExc_ValueError, "math domain error");
            break;
        case Status::division_by_zero:
            PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
            break;
    }
    return nullptr;
}

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

PyObject* create_value_type() {
    if (value_type) return Py_NewRef(reinterpret_cast<PyObject*>(value_type));
    PyObject* numbers = PyImport_ImportModule("numbers");
    if (!numbers) return nullptr;
    real_number_abc = PyObject_GetAttrString(numbers, "Real");
    Py_DECREF(numbers);
    str_label = PyUnicode_InternFromString("label");
    minus_one = PyLong_FromLong(-1);
    str_numpy = PyUnicode_InternFromString("numpy");
    if (!real_number_abc || !str_label || !minus_one || !str_numpy) {
        return nullptr;
    }

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
    Py_INCREF(type);  // value_type keeps the type alive for the life of the process
    hooks.retain_handle = retain_handle;
    hooks.release_handle = release_handle;
    hooks.run_python_backward = run_python_backward;
    return type;
}

}  // namespace mg::python
