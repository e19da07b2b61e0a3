// A user's _op and _backward on a Value: Note [Custom op and backward] (value_parts.hpp).
#include <unordered_map>

#include "value_parts.hpp"

namespace mg::python {

namespace {
std::unordered_map<PyObject*, Custom> customs;
}  // namespace

Custom* custom_of(PyObject* self) {
    Node* n = as_value(self)->node;
    if (!n || !(n->flags & has_custom_entry)) return nullptr;
    return &customs.find(self)->second;
}

// The object's entry, made if need be (this can throw std::bad_alloc; then nothing changed).
Custom& custom_entry(PyObject* self) {
    if (Custom* c = custom_of(self)) return *c;
    Custom& c = customs[self];
    own_node(self);  // Note [Ownership]
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

// Sets (value null: clears) the object's _op or _backward (Note [Custom op and backward]). Can
// throw std::bad_alloc before it changes anything. The old value is released last: that can
// run a __del__ (Note [Calls into Python]), which then sees the new value.
void set_field(PyObject* self, PyObject* Custom::* field, PyObject* value) {
    Custom* c = value ? &custom_entry(self) : custom_of(self);
    if (!c) return;
    PyObject* old = c->*field;
    c->*field = Py_XNewRef(value);
    if (field == &Custom::op) c->op_deleted = false;
    if (!c->op && !c->backward && !c->op_deleted) {
        customs.erase(self);
        node_of(self)->flags &= static_cast<std::uint8_t>(~has_custom_entry);
    }
    if (value && !is_atomic(value)) reaches_outside(self);
    Py_XDECREF(old);
}

bool delete_op(PyObject* self) {
    if (Custom* c = custom_of(self); c && c->op_deleted) {
        PyErr_SetString(PyExc_AttributeError, "_op");
        return false;
    }
    Custom& c = custom_entry(self);
    PyObject* old = c.op;
    c.op = nullptr;
    c.op_deleted = true;
    Py_XDECREF(old);  // last: Note [Calls into Python]
    return true;
}

PyObject* no_op_error(PyObject* self) {
    PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '_op'",
                 Py_TYPE(self)->tp_name);
    return nullptr;
}

}  // namespace mg::python
