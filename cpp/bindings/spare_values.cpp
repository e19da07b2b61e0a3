#include "spare_values.hpp"

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define MG_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MG_ADDRESS_SANITIZER 1
#endif
#endif
#ifdef MG_ADDRESS_SANITIZER
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(address, size) ((void)(address), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(address, size) ((void)(address), (void)(size))
#endif

namespace mg::python {

namespace {

#ifdef Py_GIL_DISABLED
constexpr bool keeps_spares = false;  // Note [Spare objects]
#else
constexpr bool keeps_spares = true;
#endif

// A few: an expression frees its intermediate results one by one as it goes.
constexpr std::size_t most_spares = 32;
PyObject* spares[most_spares];
std::size_t spare_count = 0;
std::size_t frees_in_a_row = 0;  // objects freed since a Value was last made

void free_spares() {
    for (; spare_count; --spare_count) {
        PyObject* o = spares[spare_count - 1];
        ASAN_UNPOISON_MEMORY_REGION(o, sizeof(ValueObject));
        PyObject_GC_Del(o);
    }
}

}  // namespace

PyObject* new_value_object() {
    frees_in_a_row = 0;
    if (spare_count == 0)
        return reinterpret_cast<PyObject*>(PyObject_GC_New(ValueObject, value_type));
    PyObject* o = spares[--spare_count];
    ASAN_UNPOISON_MEMORY_REGION(o, sizeof(ValueObject));
    return PyObject_Init(o, value_type);
}

bool keep_spare(PyObject* self) {
    if (!keeps_spares) return false;
    // More frees in a row than there is room for: a graph or a list is being dropped, and the
    // allocator's arenas its objects filled should go back to the system. A spare would keep
    // its arena (1 MiB), so none is kept until a Value is made again.
    if (++frees_in_a_row > most_spares) {
        free_spares();
        return false;
    }
    if (spare_count == most_spares) return false;
    ASAN_POISON_MEMORY_REGION(self, sizeof(ValueObject));
    spares[spare_count++] = self;
    return true;
}

}  // namespace mg::python
