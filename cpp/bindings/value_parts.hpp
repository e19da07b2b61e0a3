// The Value type's parts, shared by the files that make it up, one job each:
//   value.cpp            the type: construction, attributes, methods, the table of its slots
//   value_lifecycle.cpp  the engine's hooks, cycle collection, deallocation, nodes to objects
//   value_custom.cpp     a user's _op and _backward
//   value_operators.cpp  the operator slots and their operands (numbers, numpy arrays)
//   spare_values.cpp     freed objects kept for the next Values (Note [Spare objects])
//   errors.cpp           every Status as a Python exception
// value.hpp is what the rest of the binding uses.
#pragma once

#include "value.hpp"

namespace mg::python {

inline ValueObject* as_value(PyObject* o) { return reinterpret_cast<ValueObject*>(o); }

// ---------------------------------------------------------------------------------------------
// value_custom.cpp

// Note [Custom op and backward]
// A user's _op and _backward live outside __dict__, as micrograd_cpp.pure's live in slots:
// replacing, clearing or deleting __dict__ changes neither. Few Values have them, so rather than
// in two more fields of every object (16 bytes each, with the allocator's rounding) they live in
// a side table, which only objects whose node has `has_custom_entry` have an entry in. The
// node's `has_python_backward` is set and cleared together with the entry's backward. As on the
// oracle (a slot), `del v._op` leaves no _op at all until one is set again (or __init__ runs):
// reading it, copying the Value or deleting it again raises AttributeError.
struct Custom {
    PyObject* op = nullptr;        // null: the built-in label, unless op_deleted
    PyObject* backward = nullptr;  // null: the built-in rule
    bool op_deleted = false;
};

// The object's entry, or null if it has none.
Custom* custom_of(PyObject* self);
// The object's entry, made if need be (this can throw std::bad_alloc; then nothing changed).
Custom& custom_entry(PyObject* self);
// Removes the object's entry and releases what it held.
void drop_custom_entry(PyObject* self);
// Sets (value null: clears) the object's _op or _backward. Can throw std::bad_alloc before it
// changes anything.
void set_field(PyObject* self, PyObject* Custom::* field, PyObject* value);
// `del self._op`: false, with AttributeError set, if it has none. Can throw std::bad_alloc
// before it changes anything.
bool delete_op(PyObject* self);
// AttributeError for the _op self does not have; returns null.
PyObject* no_op_error(PyObject* self);
// The engine's hook for a node whose _backward the user assigned.
Status run_python_backward(Node* n);

// ---------------------------------------------------------------------------------------------
// value_lifecycle.cpp

// The engine's hooks that hold and drop a node's object (Note [Ownership]).
void retain_handle(void* handle);
void release_handle(void* handle);

// Note [Cycle collection]: track(o) has the collector scan o; reaches_outside(self) says self
// may now refer outside the graph; spread_from(n) tracks the objects above n, n just marked.
void track(PyObject* o);
void reaches_outside(PyObject* self);
void spread_from(Node* n);
// None, a bool, an exact int, float or str: nothing a cycle can run through.
bool is_atomic(PyObject* o);
// A new object of `type` for node n, with one reference; it takes over one of the node's.
PyObject* wrap(PyTypeObject* type, Node* n);
// From now on self owns its node, and the node's other owners hold self (Note [Ownership]):
// for an object with anything of its own (attributes, a custom _op or _backward).
void own_node(PyObject* self);

// Slots of the type's life.
int value_setattro(PyObject* self, PyObject* name, PyObject* value);
PyObject* get_dict(PyObject* self, void* context);
int set_dict(PyObject* self, PyObject* value, void* context);
int value_traverse(PyObject* self, visitproc visit, void* arg);
int value_clear(PyObject* self);
void value_dealloc(PyObject* self);

// ---------------------------------------------------------------------------------------------
// value_operators.cpp

// Imports and makes what the operators use; false with an exception set if that fails.
bool init_operators();
PyObject* value_add(PyObject* a, PyObject* b);
PyObject* value_sub(PyObject* a, PyObject* b);
PyObject* value_mul(PyObject* a, PyObject* b);
PyObject* value_truediv(PyObject* a, PyObject* b);
PyObject* value_pow(PyObject* a, PyObject* b, PyObject* modulus);
PyObject* value_neg(PyObject* a);

}  // namespace mg::python
