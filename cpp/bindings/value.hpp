// The Python Value type: a thin object around an engine node, written against the C API so that
// every operator is one CPython number-slot call (see Note [Ownership] in engine.hpp).
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <vector>

#include "../engine.hpp"

// Note [Calls into Python]
// Any call into Python can free or change anything: a Value, a list being read, a node's
// children, an optimizer's buffers. Calls that run Python code: __hash__, __eq__, __float__,
// __index__, __neg__, __bool__ and the other number methods of an operand; attribute access
// (properties, __getattr__); iteration; allocating a GC-tracked object (a list, a tuple, a
// Value), which can run the cycle collector and so any __del__; and Py_DECREF or a node's
// release, which can free an object with a __del__. The rule: while C++ holds a raw Node*, a
// borrowed reference or a length, it makes none of these calls; or it first takes strong
// references (retains the nodes, copies the sequence with PySequence_Fast or PySequence_Tuple
// and keeps that alive) and re-checks lengths after each call. How each part obeys it:
// - objects_of() (value_lifecycle.cpp), the one place that turns nodes into objects in bulk
//   (_children, _prev, topological_order): retains every node, then allocates the container and
//   each object, then releases the nodes. _prev builds its set from the _children tuple, so
//   __hash__ and __eq__ run while the tuple owns every child.
// - Value.__init__ and _clone read numbers (__float__) and copy the children with
//   PySequence_Fast before reading any node, and call nothing between reading the nodes and
//   linking them; the label's __bool__ is read last, as the oracle reads it. The operators read
//   node_of(v) only from objects the caller owns, after the other operand's number methods ran
//   (an object's node never changes while the object lives).
// - fused.cpp: reduce() (sum, dot, neuron) keeps the accumulator and each term as owned
//   references across PyIter_Next and Python's operators. neuron's fast path reads borrowed
//   list items only when it calls no Python from the length check to the last node (exact
//   types, nonlin a real bool). layer() re-reads the neuron list's length before each neuron and
//   holds the neuron while its w, b and nonlin attributes run.
// - optim.cpp: a step makes every call into Python first (the step number, hyperparameters, each
//   buffer entry's __float__ while the entry is held, then PySequence_Fast of the params, kept
//   until the step returns), and only then reads the nodes and checks the buffers' lengths;
//   from there to the last write it calls nothing. zero_grads holds its PySequence_Fast result
//   the same way.

namespace mg::python {

struct ValueObject {
    PyObject_HEAD Node* node;
    PyObject* dict;  // user attributes and label; created on demand (not _op, _backward)
};

extern PyTypeObject* value_type;

// Creates the Value type (once) and installs the engine hooks. Returns a new reference.
PyObject* create_value_type();

inline bool is_value(PyObject* o) {
    if (Py_IS_TYPE(o, value_type)) return true;
    // The other common operands, without a walk up their type's bases.
    if (PyFloat_CheckExact(o) || PyLong_CheckExact(o)) return false;
    return PyType_IsSubtype(Py_TYPE(o), value_type);
}
inline Node* node_of(PyObject* value) { return reinterpret_cast<ValueObject*>(value)->node; }

// The Python object of a node, made if it has none. Both return a new reference. The first is
// for a node found in the graph: its object owns it from then on, so that it keeps its identity
// (Note [Ownership]). The second is for an op's result: it takes over the caller's reference to
// n (and releases n if it fails).
PyObject* to_python(Node* n);
PyObject* to_python_owned(Node* n);
// The objects of these nodes, in order: a new list (as_list) or tuple.
PyObject* objects_of(const std::vector<Node*>& nodes, bool as_list);

// Sets the Python exception Python's own float arithmetic raises for this failure; for
// callback_failed, the one the user's code raised is set already. Returns null, so that a
// function that fails can `return set_error(status);`. Every Status becomes an exception here.
PyObject* set_error(Status status);

// The nodes of the Values in `items` (a PySequence_Fast result), appended to `nodes` and
// borrowed from it: the one conversion of a sequence of Values to nodes. False, with "<what>
// must be Values" (TypeError), if an item is not a Value.
bool nodes_of(PyObject* items, std::vector<Node*>& nodes, const char* what);

// Operands: Values, or real numbers (int, float, bool, numbers.Real such as numpy scalars).
bool is_number(PyObject* o);
// A real number's value as float(); false with an exception set if it has none.
bool to_double(PyObject* o, double* out);

}  // namespace mg::python
