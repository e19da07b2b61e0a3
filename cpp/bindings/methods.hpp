// What the binding's module functions share: how a PyMethodDef holds them, and how a
// METH_FASTCALL function checks its number of arguments.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace mg::python {

// A function as a PyMethodDef's ml_meth holds it: a PyCFunction, which CPython casts back to
// the signature its flags name (METH_FASTCALL, METH_VARARGS | METH_KEYWORDS, ...).
template <class Function>
PyCFunction as_method(Function* function) {
    return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(function));
}

// Whether a METH_FASTCALL function got from fewest to most arguments; else false, with
// TypeError "<signature> takes N arguments" (or "N or M arguments").
inline bool takes_arguments(Py_ssize_t nargs, Py_ssize_t fewest, Py_ssize_t most,
                            const char* signature) {
    if (nargs >= fewest && nargs <= most) return true;
    if (fewest == most) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments", signature, fewest);
    } else {
        PyErr_Format(PyExc_TypeError, "%s takes %zd or %zd arguments", signature, fewest, most);
    }
    return false;
}

}  // namespace mg::python
