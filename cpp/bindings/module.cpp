// The _core extension module: the Value type and the whole-graph functions that cross from
// Python to C++ once per call instead of once per scalar.
#include <pybind11/pybind11.h>

#include <vector>

#include "fused.hpp"
#include "node_pool.hpp"
#include "optim.hpp"
#include "program.hpp"
#include "value.hpp"

namespace py = pybind11;
using namespace mg;
using mg::python::is_value;
using mg::python::node_of;

namespace {

Node* node_arg(py::handle o, const char* what) {
    if (!is_value(o.ptr())) {
        throw py::type_error(std::string(what) + " must be a Value, not " +
                             Py_TYPE(o.ptr())->tp_name);
    }
    return node_of(o.ptr());
}

py::list topological_order_of(py::handle root) {
    std::vector<Node*> order;
    mg::topological_order(node_arg(root, "root"), order);
    PyObject* out = python::objects_of(order, true);  // Note [Calls into Python]
    if (!out) throw py::error_already_set();
    return py::reinterpret_steal<py::list>(out);
}

// For tests and benchmarks: what the node pool holds (Note [Giving blocks back]).
py::dict pool_stats_of() {
    const PoolStats s = pool_stats();
    py::dict out;
    out["live_nodes"] = s.live_nodes;
    out["blocks"] = s.blocks;
    out["empty_blocks"] = s.empty_blocks;
    out["maps"] = s.maps;
    out["releases"] = s.releases;
    return out;
}

// Note [The C++ runtime's thread-local data]
// glibc gives a thread its copy of a shared library's thread-local data on first use, and if
// malloc fails then, it aborts the process. The C++ runtime's exception state is such data, first
// used by the first exception a thread throws: for a std::bad_alloc, that is when memory has run
// out, and MemoryError would become an abort. Throwing one exception at import makes the
// importing thread get its copy while there is memory. (Another thread gets its copy at its
// first exception: README, "Value".)
void prepare_exception_state() {
    try {
        throw 0;
    } catch (int) {
    }
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    prepare_exception_state();
    m.doc() = "micrograd-cpp's C++ engine";
    PyObject* value_type = python::create_value_type();
    if (!value_type) throw py::error_already_set();
    auto value = py::reinterpret_steal<py::object>(value_type);
    m.add_object("Value", value);
    // Copying works the same on both engines: one implementation, written over _clone.
    py::object pure = py::module_::import("micrograd_cpp.pure.engine").attr("Value");
    for (const char* name : {"__copy__", "__deepcopy__", "__reduce_ex__"}) {
        value.attr(name) = pure.attr(name);
    }
    if (python::add_fused_functions(m.ptr()) < 0 || python::add_fused_mlp(m.ptr()) < 0 ||
        python::add_optimizer_functions(m.ptr()) < 0) {
        throw py::error_already_set();
    }
    python::bind_program(m);
    m.def("topological_order", &topological_order_of, py::arg("root"),
          "Nodes under root, children before parents, in the order backward() visits them "
          "reversed.");
    m.def("_pool_stats", &pool_stats_of,
          "The node pool's live nodes, blocks held (empty_blocks of them empty), and blocks "
          "mapped and given back so far.");
}
