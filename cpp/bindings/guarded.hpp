// Entry points that CPython calls: a C++ exception must stop at them.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <exception>
#include <new>
#include <type_traits>

namespace mg::python {

// Note [No C++ exception crosses into CPython]
// CPython calls the binding through C function pointers; a C++ exception thrown through one
// terminates the process. The engine allocates with new and std::vector, which throw
// std::bad_alloc when memory runs out, so every slot and method that can reach the engine is
// installed as guarded<function>: a noexcept wrapper that turns std::bad_alloc into MemoryError
// (any other std::exception into RuntimeError) and returns the slot's error value. The engine
// changes nothing before its allocations succeed, so a graph is left as it was; at worst a
// reference taken for the failed node is never given back. A dealloc cannot fail: it reports
// the error as unraisable instead. The wrapper costs nothing while nothing is thrown.

// Sets the Python exception for the C++ exception being handled.
inline void set_error_from_cpp_exception() noexcept {
    try {
        throw;
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (...) {
        PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception");
    }
}

template <auto Function>
struct Guard;

template <class Result, class... Args, Result (*Function)(Args...)>
struct Guard<Function> {
    static Result call(Args... args) noexcept {
        if constexpr (std::is_void_v<Result>) {  // a dealloc: keep any exception in flight
            try {
                Function(args...);
            } catch (...) {
                PyObject *type, *value, *traceback;
                PyErr_Fetch(&type, &value, &traceback);
                set_error_from_cpp_exception();
                PyErr_WriteUnraisable(nullptr);
                PyErr_Restore(type, value, traceback);
            }
        } else {
            try {
                return Function(args...);
            } catch (...) {
                set_error_from_cpp_exception();
            }
        }
        if constexpr (std::is_void_v<Result>) {
            return;
        } else if constexpr (std::is_pointer_v<Result>) {
            return nullptr;
        } else {
            return Result(-1);
        }
    }
};

// Function, with C++ exceptions turned into Python ones (Note [No C++ exception crosses into
// CPython]).
template <auto Function>
inline constexpr auto guarded = &Guard<Function>::call;

}  // namespace mg::python
