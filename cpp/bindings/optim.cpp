// sgd_step, adamw_step and zero_grads: one call updates every parameter (see cpp/optim.hpp).
#include "../optim.hpp"

#include <vector>

#include "optim.hpp"

namespace mg::python {
namespace {

bool parameter_nodes(PyObject* params, std::vector<Node*>& out) {
    PyObject* items = PySequence_Fast(params, "params must be a sequence of Values");
    if (!items) return false;
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    out.resize(static_cast<std::size_t>(count));
    for (Py_ssize_t i = 0; i < count; ++i) {
        PyObject* p = PySequence_Fast_GET_ITEM(items, i);
        if (!is_value(p)) {
            PyErr_Format(PyExc_TypeError, "params must be Values, not %.200s", Py_TYPE(p)->tp_name);
            Py_DECREF(items);
            return false;
        }
        out[static_cast<std::size_t>(i)] = node_of(p);
    }
    Py_DECREF(items);
    return true;
}

// A list of floats, one per parameter, read into `out`.
bool read_buffer(PyObject* list, std::size_t count, std::vector<double>& out) {
    if (!PyList_Check(list) || static_cast<std::size_t>(PyList_GET_SIZE(list)) != count) {
        PyErr_SetString(PyExc_ValueError,
                        "optimizer state must be a list with one float per "
                        "parameter");
        return false;
    }
    out.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
        double x = PyFloat_AsDouble(PyList_GET_ITEM(list, static_cast<Py_ssize_t>(i)));
        if (x == -1.0 && PyErr_Occurred()) return false;
        out[i] = x;
    }
    return true;
}

bool write_buffer(PyObject* list, const std::vector<double>& values) {
    for (std::size_t i = 0; i < values.size(); ++i) {
        PyObject* x = PyFloat_FromDouble(values[i]);
        if (!x || PyList_SetItem(list, static_cast<Py_ssize_t>(i), x) < 0) return false;
    }
    return true;
}

bool read_numbers(PyObject* const* args, double* out, int count) {
    for (int i = 0; i < count; ++i) {
        out[i] = PyFloat_AsDouble(args[i]);
        if (out[i] == -1.0 && PyErr_Occurred()) return false;
    }
    return true;
}

// sgd_step(params, momentum_buffers, step, lr, momentum, weight_decay)
PyObject* sgd(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(
            PyExc_TypeError,
            "sgd_step(params, buf, step, lr, momentum, weight_decay) takes 6 arguments");
        return nullptr;
    }
    std::vector<Node*> params;
    std::vector<double> buf;
    double numbers[3];
    long step = PyLong_AsLong(args[2]);
    if ((step == -1 && PyErr_Occurred()) || !parameter_nodes(args[0], params) ||
        !read_buffer(args[1], params.size(), buf) || !read_numbers(args + 3, numbers, 3)) {
        return nullptr;
    }
    sgd_step(params.data(), buf.data(), params.size(), step, {numbers[0], numbers[1], numbers[2]});
    if (!write_buffer(args[1], buf)) return nullptr;
    Py_RETURN_NONE;
}

// adamw_step(params, m, v, step, lr, beta1, beta2, eps, weight_decay)
PyObject* adamw(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "adamw_step(params, m, v, step, lr, beta1, beta2, eps, "
                        "weight_decay) takes 9 arguments");
        return nullptr;
    }
    std::vector<Node*> params;
    std::vector<double> m, v;
    double numbers[5];
    long step = PyLong_AsLong(args[3]);
    if ((step == -1 && PyErr_Occurred()) || !parameter_nodes(args[0], params) ||
        !read_buffer(args[1], params.size(), m) || !read_buffer(args[2], params.size(), v) ||
        !read_numbers(args + 4, numbers, 5)) {
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
}

// zero_grads(params): p.grad = 0.0 for each p, as the Value.grad setter does it
PyObject* zero_grads(PyObject*, PyObject* arg) {
    std::vector<Node*> params;
    if (!parameter_nodes(arg, params)) return nullptr;
    for (Node* n : params) {
        if (n->flags & has_had_children) ++inner_grad_writes;
        n->grad = 0.0;
    }
    Py_RETURN_NONE;
}

PyMethodDef optim_methods[] = {
    {"zero_grads", zero_grads, METH_O,
     "zero_grads(params)\n--\n\nSet every parameter's grad to 0.0."},
    {"sgd_step", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sgd)), METH_FASTCALL,
     "sgd_step(params, buf, step, lr, momentum, weight_decay)\n--\n\nOne SGD step over every "
     "parameter; buf holds the momentum buffers and is updated in place."},
    {"adamw_step", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(adamw)),
     METH_FASTCALL,
     "adamw_step(params, m, v, step, lr, beta1, beta2, eps, weight_decay)\n--\n\nOne AdamW "
     "step over every parameter; m and v hold the moments and are updated in place."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

int add_optimizer_functions(PyObject* module) {
    return PyModule_AddFunctions(module, optim_methods);
}

}  // namespace mg::python
