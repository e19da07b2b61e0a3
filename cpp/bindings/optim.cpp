// sgd_step, adamw_step, zero_grads and set_data: one call updates every parameter (see
// cpp/optim.hpp), or sets a batch of inputs.
//
// A step first does everything that can run Python (Note [Calls into Python]): the numbers'
// __index__ and __float__, the buffers' entries that are not floats, then the params' iteration
// (a generator's code). Only then does it look at the parameters' nodes and the buffers'
// lengths, and from there C++ alone reads and writes the nodes. So the step runs on the state
// as the last callback left it, without copying the params on the common path.
#include "../optim.hpp"

#include <cstring>
#include <initializer_list>
#include <new>
#include <utility>
#include <vector>

#include "../deferred_stores.hpp"
#include "methods.hpp"
#include "optim.hpp"

namespace mg::python {
namespace {

constexpr const char* bad_state = "optimizer state must be a list with one float per parameter";

// A list of floats read into `out`. An entry that is not a float converts with its __float__,
// which may change the list: the entry is held while it converts, and a change of length
// refuses the step (Note [Calls into Python]).
bool read_buffer(PyObject* list, std::vector<double>& out) {
    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_ValueError, bad_state);
        return false;
    }
    const Py_ssize_t count = PyList_GET_SIZE(list);
    out.resize(static_cast<std::size_t>(count));
    for (Py_ssize_t i = 0; i < count; ++i) {
        PyObject* item = PyList_GET_ITEM(list, i);
        if (PyFloat_CheckExact(item)) {  // the common case: no call out
            out[static_cast<std::size_t>(i)] = PyFloat_AS_DOUBLE(item);
            continue;
        }
        Py_INCREF(item);
        const double x = PyFloat_AsDouble(item);
        Py_DECREF(item);
        if (x == -1.0 && PyErr_Occurred()) return false;
        if (PyList_GET_SIZE(list) != count) {
            PyErr_SetString(PyExc_ValueError, bad_state);
            return false;
        }
        out[static_cast<std::size_t>(i)] = x;
    }
    return true;
}

bool is_list(PyObject* o) {
    if (PyList_Check(o)) return true;
    PyErr_SetString(PyExc_ValueError, bad_state);
    return false;
}

bool read_numbers(PyObject* const* args, double* out, int count) {
    for (int i = 0; i < count; ++i) {
        out[i] = PyFloat_AsDouble(args[i]);
        if (out[i] == -1.0 && PyErr_Occurred()) return false;
    }
    return true;
}

// The params as a sequence the caller owns (a list or tuple itself, else a new list of what
// the iteration produced), and their nodes in `nodes`. This is a step's last call into Python:
// from here on nothing can call into Python before the step has written the nodes (Note [Calls
// into Python]).
PyObject* parameters(PyObject* params, std::vector<Node*>& nodes) {
    PyObject* items = PySequence_Fast(params, "params must be a sequence of Values");
    if (items && !nodes_of(items, nodes, "params")) Py_CLEAR(items);
    return items;
}

// Whether each buffer has one entry per parameter, as read and as it is now.
bool buffers_fit(std::size_t count,
                 std::initializer_list<std::pair<PyObject*, std::size_t>> buffers) {
    for (const auto& [list, read] : buffers) {
        if (static_cast<std::size_t>(PyList_GET_SIZE(list)) != count || read != count) {
            PyErr_SetString(PyExc_ValueError, bad_state);
            return false;
        }
    }
    return true;
}

// After the step: PyList_SetItem checks the index, and the entries it replaces may run code.
bool write_buffer(PyObject* list, const std::vector<double>& values) {
    for (std::size_t i = 0; i < values.size(); ++i) {
        PyObject* x = PyFloat_FromDouble(values[i]);
        if (!x || PyList_SetItem(list, static_cast<Py_ssize_t>(i), x) < 0) return false;
    }
    return true;
}

// Runs a step with `items` released on every path, and no C++ exception (std::bad_alloc from
// a vector) reaching CPython.
template <typename Step>
PyObject* guarded(Step step) {
    PyObject* items = nullptr;
    PyObject* result = nullptr;
    try {
        result = step(items);
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    }
    Py_XDECREF(items);
    return result;
}

// sgd_step(params, momentum_buffers, step, lr, momentum, weight_decay)
PyObject* sgd(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (!takes_arguments(nargs, 6, 6, "sgd_step(params, buf, step, lr, momentum, weight_decay)")) {
        return nullptr;
    }
    return guarded([args](PyObject*& items) -> PyObject* {
        std::vector<Node*> params;
        std::vector<double> buf;
        double numbers[3];
        long step = PyLong_AsLong(args[2]);
        if ((step == -1 && PyErr_Occurred()) || !read_numbers(args + 3, numbers, 3)) {
            return nullptr;
        }
        // Without momentum the buffers are only checked, as the Python loop never reads them.
        const bool momentum = numbers[1] != 0;
        if (!(momentum ? read_buffer(args[1], buf) : is_list(args[1])) ||
            !(items = parameters(args[0], params)) ||
            !buffers_fit(params.size(), {{args[1], momentum ? buf.size() : params.size()}})) {
            return nullptr;
        }
        sgd_step(params.data(), buf.data(), params.size(), step,
                 {numbers[0], numbers[1], numbers[2]});
        if (momentum && !write_buffer(args[1], buf)) return nullptr;
        Py_RETURN_NONE;
    });
}

// adamw_step(params, m, v, step, lr, beta1, beta2, eps, weight_decay)
PyObject* adamw(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (!takes_arguments(nargs, 9, 9,
                         "adamw_step(params, m, v, step, lr, beta1, beta2, eps, weight_decay)")) {
        return nullptr;
    }
    return guarded([args](PyObject*& items) -> PyObject* {
        std::vector<Node*> params;
        std::vector<double> m, v;
        double numbers[5];
        long step = PyLong_AsLong(args[3]);
        if ((step == -1 && PyErr_Occurred()) || !read_numbers(args + 4, numbers, 5) ||
            !read_buffer(args[1], m) || !read_buffer(args[2], v) ||
            !(items = parameters(args[0], params)) ||
            !buffers_fit(params.size(), {{args[1], m.size()}, {args[2], v.size()}})) {
            return nullptr;
        }
        Status status = adamw_step(params.data(), m.data(), v.data(), params.size(), step,
                                   {numbers[0], numbers[1], numbers[2], numbers[3], numbers[4]});
        if (!write_buffer(args[1], m) || !write_buffer(args[2], v)) return nullptr;
        if (status != Status::ok) {
            set_error(status);
            return nullptr;
        }
        Py_RETURN_NONE;
    });
}

// zero_grads(params): p.grad = 0.0 for each p, as the Value.grad setter does it. `items` holds
// the Values (a generator's only owner) until every grad is written, and nothing in between
// calls into Python (Note [Calls into Python]).
PyObject* zero_grads(PyObject*, PyObject* arg) {
    return guarded([arg](PyObject*& items) -> PyObject* {
        std::vector<Node*> params;
        if (!(items = parameters(arg, params))) return nullptr;
        for (Node* n : params) {
            grad_written(n);  // Note [Deferred stores]
            n->grad = 0.0;
        }
        Py_RETURN_NONE;
    });
}

// set_data(values, numbers): v.data = x for each pair, for a list or tuple of exact Values and
// a one-dimensional buffer of C doubles (a float64 numpy array) as long. Returns False, having
// set nothing, for anything else: micrograd_cpp.ops.set_data then runs the Python loop. The
// buffer is taken first, then the values are copied with PySequence_Fast (the last calls that
// may run Python); from there to the last write nothing calls into Python (Note [Calls into
// Python]).
PyObject* set_data(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (!takes_arguments(nargs, 2, 2, "set_data(values, numbers)")) return nullptr;
    if (!PyObject_CheckBuffer(args[1])) Py_RETURN_FALSE;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();  // not a contiguous buffer: the Python loop reads it
        Py_RETURN_FALSE;
    }
    PyObject* result = nullptr;
    PyObject* items = nullptr;
    const bool doubles =
        view.ndim == 1 && view.itemsize == sizeof(double) && view.format &&
        (std::strcmp(view.format, "d") == 0 || std::strcmp(view.format, "=d") == 0);
    if (!doubles || !(items = PySequence_Fast(args[0], "values must be a sequence of Values"))) {
        if (doubles) PyErr_Clear();  // not a sequence: the Python loop says why
        result = Py_NewRef(Py_False);
    } else {
        const Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
        PyObject** values = PySequence_Fast_ITEMS(items);
        bool exact = true;
        for (Py_ssize_t i = 0; exact && i < count; ++i) exact = Py_IS_TYPE(values[i], value_type);
        if (!exact) {
            result = Py_NewRef(Py_False);
        } else if (view.len != count * static_cast<Py_ssize_t>(sizeof(double))) {
            PyErr_Format(PyExc_ValueError,
                         "set_data needs as many numbers as values, got %zd values and %zd "
                         "numbers",
                         count, view.len / static_cast<Py_ssize_t>(sizeof(double)));
        } else {
            const double* numbers = static_cast<const double*>(view.buf);
            for (Py_ssize_t i = 0; i < count; ++i) node_of(values[i])->data = numbers[i];
            result = Py_NewRef(Py_True);
        }
    }
    Py_XDECREF(items);
    PyBuffer_Release(&view);
    return result;
}

PyMethodDef optim_methods[] = {
    {"set_data", as_method(set_data), METH_FASTCALL,
     "set_data(values, numbers)\n--\n\nv.data = x for each pair, for exact Values and a 1-D "
     "float64 buffer as long; False, having set nothing, for anything else."},
    {"zero_grads", zero_grads, METH_O,
     "zero_grads(params)\n--\n\nSet every parameter's grad to 0.0."},
    {"sgd_step", as_method(sgd), METH_FASTCALL,
     "sgd_step(params, buf, step, lr, momentum, weight_decay)\n--\n\nOne SGD step over every "
     "parameter; buf holds the momentum buffers and is updated in place."},
    {"adamw_step", as_method(adamw), METH_FASTCALL,
     "adamw_step(params, m, v, step, lr, beta1, beta2, eps, weight_decay)\n--\n\nOne AdamW "
     "step over every parameter; m and v hold the moments and are updated in place."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

int add_optimizer_functions(PyObject* module) {
    return PyModule_AddFunctions(module, optim_methods);
}

}  // namespace mg::python
