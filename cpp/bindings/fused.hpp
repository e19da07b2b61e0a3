// sum, dot and neuron: loops of micrograd code done in one call from Python.
#pragma once

#include <vector>

#include "value.hpp"

namespace mg::python {

// Adds the fused functions to the _core module; -1 with an exception set on failure.
int add_fused_functions(PyObject* module);
int add_fused_mlp(PyObject* module);

// neuron(w, b, x, nonlin): micrograd's Neuron forward (ops.neuron on C++ Values).
PyObject* fused_neuron(PyObject*, PyObject* const* args, Py_ssize_t nargs);

// A neuron's nodes where its operands fit the common case: w a list of exact Values, b one too,
// nonlin given as a bool, and the inputs as many as w (a list or tuple of Values and plain
// numbers, or nodes). Returns false, having done nothing, otherwise; else *out is the output (a
// new reference), or null with the exception set.
bool neuron_fast_path(PyObject* w, PyObject* b, PyObject* x, bool nonlin, Node** out);
bool neuron_fast_path(PyObject* w, PyObject* b, const std::vector<Node*>& x, bool nonlin,
                      Node** out);

}  // namespace mg::python
