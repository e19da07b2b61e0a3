#include "program.hpp"

#include <memory>
#include <string>

#include "../program.hpp"
#include "value.hpp"

namespace py = pybind11;

namespace mg::python {
namespace {

// A pass's failure as set_error's exception, passed on through pybind11.
void check(Status status) {
    if (status == Status::ok) return;
    set_error(status);
    throw py::error_already_set();
}

std::unique_ptr<Program> compile_graph(py::handle root) {
    if (!is_value(root.ptr())) {
        throw py::type_error(std::string("compile() takes a Value, not ") +
                             Py_TYPE(root.ptr())->tp_name);
    }
    Node* refused = nullptr;
    std::unique_ptr<Program> program(Program::compile(node_of(root.ptr()), &refused));
    if (!program) {
        py::object node = py::reinterpret_steal<py::object>(to_python(refused));
        if (!node) throw py::error_already_set();
        throw py::value_error(
            "cannot compile a graph with a user-defined operation: node " +
            py::repr(node).cast<std::string>() + " (op " +
            py::repr(node.attr("_op")).cast<std::string>() +
            ") has a Python _backward or a forward only Python knows; rebuild such graphs each "
            "step instead");
    }
    return program;
}

}  // namespace

void bind_program(py::module_& m) {
    // Only compile() makes a Program: an instance made by Program.__new__ would have no C++
    // object behind it, so Python may not create one (Program() raises "cannot create
    // 'Program' instances", and every __new__ reached through the base types refuses too).
    auto no_instances = py::custom_type_setup([](PyHeapTypeObject* heap_type) {
        heap_type->ht_type.tp_flags |= Py_TPFLAGS_DISALLOW_INSTANTIATION;
    });
    py::class_<Program>(m, "Program",
                        "A graph frozen for replay: forward() recomputes it from its leaves, "
                        "backward() backpropagates it, without rebuilding it.",
                        no_instances)
        .def(
            "forward", [](Program& p) { check(p.forward()); },
            "Recompute every non-leaf node from the leaves' current data; their grads restart "
            "at zero.")
        .def(
            "backward", [](Program& p) { check(p.backward()); },
            "What root.backward() does, over the frozen order.")
        .def("zero_grad", &Program::zero_grad, "Set every grad in the graph to zero.")
        .def("__len__", &Program::size)
        .def_property_readonly("_runs", &Program::runs,
                               "The runs of one op a replay loops over; 0 if it goes node by "
                               "node. For tests.")
        .def_property_readonly(
            "root",
            [](const Program& p) { return py::reinterpret_steal<py::object>(to_python(p.root())); },
            "The Value the program was compiled from.");
    m.def("compile", &compile_graph, py::arg("root"),
          "Freeze the graph under root into a Program that replays forward and backward.");
}

}  // namespace mg::python
