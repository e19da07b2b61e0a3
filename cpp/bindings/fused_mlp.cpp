// A whole MLP forward in one call: micrograd_cpp.nn's MLP, Layer and Neuron, as their Python
// code runs them, with the hidden layers' outputs kept as nodes.
#include <cstddef>
#include <initializer_list>
#include <utility>
#include <vector>

#include "fused.hpp"
#include "guarded.hpp"
#include "methods.hpp"

namespace mg::python {
namespace {

// Note [Hidden outputs stay nodes]
// Inside an MLP's forward, a layer's outputs are seen only by the next layer: MLP.__call__
// keeps them in a local. So they stay nodes without Python objects (as the inner nodes of a
// fused neuron are), which saves a step of the demo an object made and freed for each hidden
// neuron of each sample (3,200 in W2), and the collector's passes those allocations set off.
// The graph is the same: the same nodes in the same order. Whenever Python code takes the
// inputs (a Layer or Neuron of someone else's, weights that are not C++ Values), they become
// a list of Values first, as they would have been. An output that may be on a reference cycle
// gets its object all the same (Note [Cycle collection] in value_lifecycle.cpp).

// A layer's input: an object (the caller's x, or what a layer returned), or the nodes of the
// previous layer's outputs. Owns what it holds.
class Inputs {
  public:
    explicit Inputs(PyObject* x) : object_(Py_NewRef(x)) {}
    Inputs(const Inputs&) = delete;
    Inputs& operator=(const Inputs&) = delete;
    ~Inputs() { clear(); }

    PyObject* object() const { return object_; }  // null while the inputs are nodes
    const std::vector<Node*>& nodes() const { return nodes_; }

    // The inputs as Python sees them (a borrowed reference), making the nodes' list of Values
    // if need be; null with the exception set on failure.
    PyObject* as_object() {
        if (object_) return object_;
        PyObject* list = PyList_New(static_cast<Py_ssize_t>(nodes_.size()));
        if (!list) return nullptr;
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
            PyObject* o = to_python_owned(std::exchange(nodes_[i], nullptr));  // takes the node
            if (!o) {
                Py_DECREF(list);
                return nullptr;  // clear() releases the nodes not yet taken
            }
            PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), o);
        }
        nodes_.clear();
        object_ = list;
        return object_;
    }
    void take(PyObject* object) {  // an owned reference, or null: false
        clear();
        object_ = object;
    }
    void take(std::vector<Node*>& nodes) {
        clear();
        nodes_.swap(nodes);
    }

  private:
    void clear() {
        Py_CLEAR(object_);
        for (Node* n : nodes_) {
            if (n) mg::release(n);
        }
        nodes_.clear();
    }

    PyObject* object_ = nullptr;
    std::vector<Node*> nodes_;
};

// A layer's outputs so far: nodes, or objects once one of them is. Owns what it holds.
struct Outputs {
    std::vector<Node*> nodes;
    PyObject* objects = nullptr;  // a list, once an output is an object
    Outputs() = default;
    Outputs(const Outputs&) = delete;
    Outputs& operator=(const Outputs&) = delete;
    ~Outputs() {
        for (Node* n : nodes) mg::release(n);
        Py_XDECREF(objects);
    }

    bool add_node(Node* n) {
        // Note [Cycle collection]: an output that may reach outside the graph gets its object,
        // so that the collector can follow the graph through it; n then stands for our
        // reference to that object.
        if ((n->flags & may_reach_outside) && !n->handle && !to_python_owned(n)) return false;
        if (!objects) {
            nodes.push_back(n);
            return true;
        }
        return add_object(to_python_owned(n));
    }
    bool add_object(PyObject* o) {  // takes o (null: false)
        if (!o) return false;
        if (!objects && !(objects = nodes_as_list())) {
            Py_DECREF(o);
            return false;
        }
        const int failed = PyList_Append(objects, o);
        Py_DECREF(o);
        return failed == 0;
    }
    // Layer.__call__'s `out[0] if len(out) == 1 else out`, given to x.
    bool give_to(Inputs& x) {
        if (!objects && nodes.size() != 1) {
            x.take(nodes);
            return true;
        }
        if (!objects && !(objects = nodes_as_list())) return false;
        PyObject* out = std::exchange(objects, nullptr);
        if (PyList_GET_SIZE(out) == 1) {
            PyObject* only = Py_NewRef(PyList_GET_ITEM(out, 0));
            Py_DECREF(out);
            out = only;
        }
        x.take(out);
        return true;
    }

  private:
    PyObject* nodes_as_list() {
        PyObject* list = PyList_New(0);
        for (std::size_t i = 0; list && i < nodes.size(); ++i) {
            PyObject* o = to_python_owned(std::exchange(nodes[i], nullptr));
            if (!o || PyList_Append(list, o) < 0) Py_CLEAR(list);
            Py_XDECREF(o);
        }
        for (Node* n : nodes) {
            if (n) mg::release(n);
        }
        nodes.clear();
        return list;
    }
};

// The attribute names the forward reads, interned once when the module is made.
PyObject* name_w = nullptr;
PyObject* name_b = nullptr;
PyObject* name_nonlin = nullptr;
PyObject* name_neurons = nullptr;

struct Call {
    PyObject* layer_type;
    PyObject* neuron_type;
    PyObject* layer_forward;  // layer_forward(layer, neurons, x): Layer.__call__ given neurons
    PyObject* python_layer;   // ops.python_layer(neurons, x)
};

// One neuron of a fused layer, as Neuron.__call__ reads it: w, b, then nonlin.
bool neuron_forward(PyObject* neuron, Inputs& x, Outputs& out) {
    PyObject* w = PyObject_GetAttr(neuron, name_w);
    PyObject* b = w ? PyObject_GetAttr(neuron, name_b) : nullptr;
    PyObject* nonlin = b ? PyObject_GetAttr(neuron, name_nonlin) : nullptr;
    bool ok = false;
    if (nonlin) {
        Node* node = nullptr;
        bool done = false;
        if (PyBool_Check(nonlin)) {
            const bool relu = nonlin == Py_True;
            done = x.object() ? neuron_fast_path(w, b, x.object(), relu, &node)
                              : neuron_fast_path(w, b, x.nodes(), relu, &node);
        }
        if (done) {
            ok = node && out.add_node(node);
        } else if (PyObject* xs = x.as_object()) {
            PyObject* args[] = {w, b, xs, nonlin};
            ok = out.add_object(fused_neuron(nullptr, args, 4));
        }
    }
    Py_XDECREF(w);
    Py_XDECREF(b);
    Py_XDECREF(nonlin);
    return ok;
}

// x = layer(x), as micrograd_cpp.nn's Layer.__call__ computes it when layer is one.
bool layer_forward(PyObject* layer, Inputs& x, const Call& call) {
    if (reinterpret_cast<PyObject*>(Py_TYPE(layer)) != call.layer_type) {
        PyObject* xs = x.as_object();
        if (!xs) return false;
        x.take(PyObject_CallOneArg(layer, xs));
        return x.object() != nullptr;
    }
    PyObject* neurons = PyObject_GetAttr(layer, name_neurons);
    if (!neurons) return false;
    bool fused = PyList_CheckExact(neurons) && PyList_GET_SIZE(neurons) > 0;
    for (Py_ssize_t i = 0; fused && i < PyList_GET_SIZE(neurons); ++i) {
        fused =
            reinterpret_cast<PyObject*>(Py_TYPE(PyList_GET_ITEM(neurons, i))) == call.neuron_type;
    }
    if (fused) {  // ops.layer's test, on the first neuron's b
        PyObject* first = Py_NewRef(PyList_GET_ITEM(neurons, 0));
        PyObject* b = PyObject_GetAttr(first, name_b);
        Py_DECREF(first);
        if (!b) {
            Py_DECREF(neurons);
            return false;
        }
        fused = Py_IS_TYPE(b, value_type);
        Py_DECREF(b);
        if (!fused) {  // ops.python_layer, then the single output alone
            PyObject* xs = x.as_object();
            PyObject* args[] = {neurons, xs};
            PyObject* y = xs ? PyObject_Vectorcall(call.python_layer, args, 2, nullptr) : nullptr;
            Py_DECREF(neurons);
            if (y && PyList_CheckExact(y) && PyList_GET_SIZE(y) == 1) {
                PyObject* only = Py_NewRef(PyList_GET_ITEM(y, 0));
                Py_DECREF(y);
                y = only;
            }
            x.take(y);
            return y != nullptr;
        }
    } else {  // someone's neurons: Layer.__call__ decides, given the neurons read here
        PyObject* xs = x.as_object();
        PyObject* args[] = {layer, neurons, xs};
        PyObject* y = xs ? PyObject_Vectorcall(call.layer_forward, args, 3, nullptr) : nullptr;
        Py_DECREF(neurons);
        x.take(y);
        return y != nullptr;
    }
    // Note [Calls into Python]: as the oracle's list comprehension does, the length is read
    // again before each neuron, and the neuron is held while it is used.
    Outputs out;
    out.nodes.reserve(static_cast<std::size_t>(PyList_GET_SIZE(neurons)));
    bool ok = true;
    for (Py_ssize_t i = 0; ok && i < PyList_GET_SIZE(neurons); ++i) {
        PyObject* neuron = Py_NewRef(PyList_GET_ITEM(neurons, i));
        ok = neuron_forward(neuron, x, out);
        Py_DECREF(neuron);
    }
    Py_DECREF(neurons);
    return ok && out.give_to(x);
}

// mlp_call(layers, x, layer_type, neuron_type, layer_forward, python_layer): MLP.__call__,
//     for layer in layers: x = layer(x)
//     return x
// NotImplemented, having read nothing, unless layers is a list. Note [Hidden outputs stay nodes].
PyObject* mlp_call(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (!takes_arguments(nargs, 6, 6,
                         "mlp_call(layers, x, layer_type, neuron_type, layer_forward, "
                         "python_layer)")) {
        return nullptr;
    }
    PyObject* layers = args[0];
    if (!PyList_CheckExact(layers)) Py_RETURN_NOTIMPLEMENTED;
    const Call call{args[2], args[3], args[4], args[5]};
    Inputs x(args[1]);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(layers); ++i) {
        PyObject* layer = Py_NewRef(PyList_GET_ITEM(layers, i));
        const bool ok = layer_forward(layer, x, call);
        Py_DECREF(layer);
        if (!ok) return nullptr;
    }
    PyObject* out = x.as_object();
    return Py_XNewRef(out);
}

PyMethodDef mlp_methods[] = {
    {"mlp_call", as_method(guarded<mlp_call>), METH_FASTCALL,
     "mlp_call(layers, x, layer_type, neuron_type, layer_forward, python_layer)\n--\n\n"
     "micrograd_cpp.nn's MLP forward, `for layer in layers: x = layer(x)`, in one call; "
     "NotImplemented unless layers is a list."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

int add_fused_mlp(PyObject* module) {
    for (auto [name, text] :
         {std::pair{&name_w, "w"}, std::pair{&name_b, "b"}, std::pair{&name_nonlin, "nonlin"},
          std::pair{&name_neurons, "neurons"}}) {
        if (!*name && !(*name = PyUnicode_InternFromString(text))) return -1;
    }
    return PyModule_AddFunctions(module, mlp_methods);
}

}  // namespace mg::python
