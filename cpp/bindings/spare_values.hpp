// Spare Value objects: Note [Spare objects].
#pragma once

#include "value.hpp"

namespace mg::python {

// Note [Spare objects]
// An op's result is an object that often lives for one line (`r = r * x + b` frees the last r),
// and CPython's allocator and collector bookkeeping for it cost about as much as the op itself
// (more on 3.13, which looks its state up in thread-local storage on each allocation and free).
// So, as CPython does for floats, freed objects of exactly Value are kept, up to a small number,
// and the next Value made takes one of them. A spare object is raw memory: untracked, with no
// dict, node or type reference; PyObject_Init makes it a new object. More frees in a row than
// there is room for means a graph or a list is being dropped: then the spares are freed and none
// is kept until a Value is made again, so that no spare keeps one of the allocator's arenas
// (1 MiB) the dropped objects filled from going back to the system. Not on the free-threaded
// build, whose objects carry more state than PyObject_Init resets. In AddressSanitizer builds a
// spare is poisoned, so that a use after free is still reported.

// A new object of exactly value_type with one reference, untracked, its node and dict not set;
// null with MemoryError set if there is no memory.
PyObject* new_value_object();

// Keeps self, an object of exactly value_type being deallocated (untracked, its dict and node
// dropped), for new_value_object(). False if none is kept: the caller frees it.
bool keep_spare(PyObject* self);

}  // namespace mg::python
