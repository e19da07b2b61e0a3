// The Python Value type: a thin object around an engine node, written against the C API so that
// every operator is one CPython number-slot call (see Note [Ownership] in engine.hpp).
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <vector>

#include "../engine.hpp"

namespace mg::python {

struct ValueObject {
    PyObject_HEAD Node* node;
    PyObject* dict;  // user attributes and label; created on demand (not _op, _backward)
};

extern PyTypeObject* value_type;

// Creates the Value type (once) and installs the engine hooks. Returns a new reference.
PyObject* create_value_type();

inline bool is_value(PyObject* o) {
    return Py_IS_TYPE(o, value_type) || PyType_IsSubtype(Py_TYPE(o), value_type);
}
inline Node* node_of(PyObject* value) { return reinterpret_cast<ValueObject*>(value)->node; }

// The Python object of a node, created on first use. Both return a new reference; the second
// takes over the caller's reference to n (and releases n if it fails).
PyObject* to_python(Node* n);
PyObject* to_python_owned(Node* n);
// The objects of these nodes, in order: a new list (as_list) or tuple.
PyObject* objects_of(const std::vector<Node*>& nodes, bool as_list);

// Sets the Python exception Python's own float arithmetic raises for this failure.
void set_error(Status status);

// Operands: Values, or real numbers (int, float, bool, numbers.Real such as numpy scalars).
bool is_number(PyObject* o);
// A real number's value as float(); false with an exception set if it has none.
bool to_double(PyObject* o, double* out);

}  // namespace mg::python
