// A Value's life: the objects of nodes (Note [Ownership] in engine.hpp), the engine's hooks that
// hold and drop them, cycle collection (Note [Cycle collection]) and deallocation.
#include <cstddef>
#include <iterator>
#include <new>
#include <vector>

#include "../deferred_stores.hpp"
#include "../node_pool.hpp"
#include "spare_values.hpp"
#include "value_parts.hpp"

namespace mg::python {

// ---------------------------------------------------------------------------------------------
// Hooks: the engine reaches Python objects only through these.

void retain_handle(void* handle) { Py_INCREF(static_cast<PyObject*>(handle)); }
void release_handle(void* handle) { Py_DECREF(static_cast<PyObject*>(handle)); }

// ---------------------------------------------------------------------------------------------
// Cycle collection

// Note [Cycle collection]
// A cycle can run through the graph: after `x.out = x * 2`, x's dict refers to out, out's node
// to x's node, and x's node is x. Python's collector finds such a cycle only if every object in
// it is tracked and every object's tp_traverse reports what it refers to.
//
// What a Value refers to: its dict, its custom _op and _backward, its type, and through its
// node the objects that own the node's children (Note [Ownership]). A child no object owns (the
// inner nodes of a fused sum, dot or neuron, and an op's result whose object only shares it)
// holds its own children's objects; value_traverse reports those too when this node is that
// child's one owner (refs == 1), so that each such node is reported from one Value alone and a
// Value reports what its node owns, not the graph below it. A node no object owns but with
// several owners (a compiled Program holds it too, or a sharing object) is not entered: what
// it holds counts as reachable, so a cycle through it would not be collected, but nothing
// reachable is ever freed. Such a node gets an object that owns it as soon as it may be on a cycle,
// marked as below: when it is made over a marked node (an MLP's hidden output, fused_mlp.cpp)
// or when spread_reach_outside() marks it. Every tracked Value owns its node.
//
// Which Values are tracked: tracking all of them would make the collector scan every Value,
// several times over as the graph grows (W1's forward takes 1.8 times as long). Graph edges alone
// never form a cycle (set_children refuses one), so a cycle needs a Value that refers outside the
// graph: one with a non-atomic attribute or _op (anything but None, bool, int, float and str:
// so a label is not one), a custom _backward, a __dict__ read or set whole, or of a subclass of
// Value. Such a Value reaches_outside(), and its node is marked may_reach_outside. The mark
// passes from operands to every node made over them, and a Value is tracked when its node is
// marked: a cycle through the graph runs down graph edges from a Value back to the one that
// refers outside, so every Value on it is tracked. A Value marked after nodes were built over
// it has those marked by spread_reach_outside(), a walk over every live node; if those walks
// would cost more than a few visits per node made since the process started (a loop that
// makes one such cycle per step), or one runs out of memory, every Value is tracked from then
// on instead.
//
// value_clear drops the dict and the custom entry; a subclass's slots are cleared by Python.
// Every cycle passes through one of them, so that breaks it. The nodes stay whole: a Value the
// collector has cleared, still read while the rest of its cycle is freed, keeps its data, grad
// and children.
namespace {

bool every_value_tracked = false;
std::uint64_t spread_credit = std::uint64_t{1} << 20;  // node visits spread walks may still make
std::uint32_t made_at_last_spread = 0;

}  // namespace

// The node's other owners each hold o instead, from now on (Note [Ownership]). Calls no Python
// code.
void own_node(PyObject* o) {
    Node* n = as_value(o)->node;
    if (!n || (n->flags & owned_by_object)) return;
    // Our objects are not immortal, so the count is stored as given on every version; only a
    // count of 2**31 (as many parents) would read as immortal (CPython 3.12 and later).
    Py_SET_REFCNT(o, Py_REFCNT(o) + static_cast<Py_ssize_t>(n->refs) - 1);
    n->refs = 1;
    n->flags |= owned_by_object;
}

// A tracked object owns its node (Note [Ownership]), so that each reference the collector can
// follow between tracked objects is a Python reference.
void track(PyObject* o) {
    if (Py_REFCNT(o) <= 0) return;  // being deallocated (no reference left): stays untracked
    own_node(o);                    // also if tp_alloc tracked it already (a subclass's instance)
    if (!PyObject_GC_IsTracked(o)) PyObject_GC_Track(o);
}

namespace {

void track_node(Node* n) {
    if (n->handle) track(static_cast<PyObject*>(n->handle));
}

// Newly marked nodes without an object that several nodes own: an MLP's hidden outputs (Note
// [Hidden outputs stay nodes] in fused_mlp.cpp), or nodes a program holds too. value_traverse
// cannot enter them, so each gets an object once the walk is over (its owners then hold
// references to it), and the collector follows the graph through it.
std::vector<Node*> shared_without_object;

void note_newly_marked(Node* n) {
    if (n->handle) {
        track(static_cast<PyObject*>(n->handle));
    } else if (n->refs > 1) {
        shared_without_object.push_back(n);
    }
}

// Each node noted: an object that owns it, whose references are the node's owners'. One that
// cannot be made leaves its node as it was: a cycle through it is not collected, and nothing
// else changes. Making an object can run the collector, and so a __del__ that frees nodes: each
// is held meanwhile (Note [Calls into Python]).
void give_objects_to_shared_nodes() {
    std::vector<Node*> nodes;
    nodes.swap(shared_without_object);
    for (Node* n : nodes) retain(n);
    for (Node* n : nodes) {
        if (!n->handle) {
            expose();                                 // Note [Deferred stores]
            if (PyObject* o = wrap(value_type, n)) {  // our reference is now o's
                own_node(o);  // and every owner's a reference to o, ours given back below
            } else {
                PyErr_Clear();
            }
        }
        release(n);
    }
}

void track_every_value() {
    every_value_tracked = true;
    for_each_node(track_node);
}

std::size_t live_count = 0;
void count_node(Node*) { ++live_count; }

}  // namespace

// Tracks the objects of the live nodes above n, n now marked (Note [Cycle collection]).
void spread_from(Node* n) {
    if (every_value_tracked || !(n->flags & has_had_parents)) return;
    spread_credit +=
        4 * std::uint64_t{nodes_made - made_at_last_spread};  // wraps: Note [Creation order]
    made_at_last_spread = nodes_made;
    live_count = 0;
    for_each_node(count_node);
    if (live_count > spread_credit) {
        track_every_value();
        return;
    }
    spread_credit -= live_count;
    try {
        spread_reach_outside(note_newly_marked);
    } catch (const std::bad_alloc&) {
        shared_without_object.clear();
        track_every_value();
        return;
    }
    give_objects_to_shared_nodes();
}

// self now refers outside the graph, or may (Note [Cycle collection]). Calls no Python code.
void reaches_outside(PyObject* self) {
    Node* n = as_value(self)->node;
    if (!n) return;
    track(self);
    if (n->flags & may_reach_outside) return;
    n->flags |= may_reach_outside;
    spread_from(n);
}

bool is_atomic(PyObject* o) {
    return o == Py_None || PyBool_Check(o) || PyLong_CheckExact(o) || PyFloat_CheckExact(o) ||
           PyUnicode_CheckExact(o);
}

PyObject* wrap(PyTypeObject* type, Node* n) {
    PyObject* o;
    if (type == value_type) {
        o = new_value_object();
        if (!o) return nullptr;
    } else {
        o = type->tp_alloc(type, 0);
        if (!o) return nullptr;
    }
    as_value(o)->node = n;
    as_value(o)->dict = nullptr;
    n->handle = o;
    if (type != value_type) {
        reaches_outside(o);
    } else if (every_value_tracked || (n->flags & may_reach_outside)) {
        track(o);
    }
    return o;
}

// Note [Cycle collection]: before the value is stored, so that it is never held untracked.
// An object with attributes of its own owns its node (Note [Ownership]).
int value_setattro(PyObject* self, PyObject* name, PyObject* value) {
    own_node(self);
    if (value && !is_atomic(value)) reaches_outside(self);
    return PyObject_GenericSetAttr(self, name, value);
}

// Whoever has the dict can put anything in it.
PyObject* get_dict(PyObject* self, void* context) {
    own_node(self);
    reaches_outside(self);
    return PyObject_GenericGetDict(self, context);
}

int set_dict(PyObject* self, PyObject* value, void* context) {
    if (!value) {  // `del v.__dict__`, which the oracle's (a Python class's) allows
        Py_CLEAR(as_value(self)->dict);
        return 0;
    }
    own_node(self);
    reaches_outside(self);
    return PyObject_GenericSetDict(self, value, context);
}

namespace {

// Note [Cycle collection]: reports the objects of n's children, and below each child without an
// object that n alone owns, theirs. No recursion and no allocation: such nodes pending at once
// are few (a fused sum is a chain with one product beside each link), and one that would not
// fit is not entered, which only leaves what it holds uncollected, the same way every time.
int visit_operands(Node* n, visitproc visit, void* arg) {
    Node* pending[32];
    std::size_t depth = 0;
    for (;;) {
        const std::uint32_t count = child_count(n);
        Node* const* kids = children(n);
        for (std::uint32_t i = 0; i < count; ++i) {
            Node* k = kids[i];
            if (k->flags & owned_by_object) {
                Py_VISIT(static_cast<PyObject*>(k->handle));
            } else if (k->refs == 1 && child_count(k) > 0 && depth < std::size(pending)) {
                pending[depth++] = k;
            }
        }
        if (depth == 0) return 0;
        n = pending[--depth];
    }
}

}  // namespace

int value_traverse(PyObject* self, visitproc visit, void* arg) {
    Py_VISIT(as_value(self)->dict);
    if (Custom* c = custom_of(self)) {
        Py_VISIT(c->op);
        Py_VISIT(c->backward);
    }
    Py_VISIT(Py_TYPE(self));  // heap types are referenced by their instances
    // A tracked object owns its node; one that shares it reports below only as its one owner.
    Node* n = as_value(self)->node;
    if (!n || (!(n->flags & owned_by_object) && n->refs != 1)) return 0;
    return visit_operands(n, visit, arg);
}

int value_clear(PyObject* self) {
    if (Node* n = as_value(self)->node) n->flags &= static_cast<std::uint8_t>(~has_python_backward);
    Py_CLEAR(as_value(self)->dict);
    drop_custom_entry(self);
    return 0;
}

void value_dealloc(PyObject* self) {
    PyTypeObject* type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_CLEAR(as_value(self)->dict);
    drop_custom_entry(self);
    if (Node* n = as_value(self)->node) {
        // Nobody refers to this object: if it owned the node, nobody else does (Note
        // [Ownership]).
        as_value(self)->node = nullptr;
        n->handle = nullptr;
        n->flags &= static_cast<std::uint8_t>(~owned_by_object);
        release(n);
    }
    if (type != value_type || !keep_spare(self)) type->tp_free(self);
    Py_DECREF(type);
}

// ---------------------------------------------------------------------------------------------
// Ownership: nodes to objects

PyObject* to_python(Node* n) {
    PyObject* o;
    if (n->handle) {
        o = Py_NewRef(static_cast<PyObject*>(n->handle));
    } else {
        expose();   // Note [Deferred stores]
        retain(n);  // the object's
        o = wrap(value_type, n);
        if (!o) {
            release(n);
            return nullptr;
        }
    }
    own_node(o);  // found in the graph: it keeps its identity (Note [Ownership])
    return o;
}

PyObject* to_python_owned(Node* n) {
    if (n->flags & owned_by_object) return static_cast<PyObject*>(n->handle);  // a Python one
    if (n->handle) {  // the object shares the node: a reference to each (Note [Ownership])
        PyObject* o = Py_NewRef(static_cast<PyObject*>(n->handle));
        release(n);
        return o;
    }
    if (n->refs > 1) expose();          // not a node just made: Note [Deferred stores]
    PyObject* o = wrap(value_type, n);  // it takes over the caller's reference
    if (!o) release(n);
    return o;
}

PyObject* objects_of(const std::vector<Node*>& nodes, bool as_list) {
    // Note [Calls into Python]: making an object can run the cycle collector, and so a __del__
    // that re-initialises a node and frees its children: every node is retained first.
    for (Node* n : nodes) retain(n);
    const auto count = static_cast<Py_ssize_t>(nodes.size());
    PyObject* out = as_list ? PyList_New(count) : PyTuple_New(count);
    for (Py_ssize_t i = 0; out && i < count; ++i) {
        PyObject* o = to_python(nodes[static_cast<std::size_t>(i)]);
        if (!o) {
            Py_CLEAR(out);
        } else if (as_list) {
            PyList_SET_ITEM(out, i, o);
        } else {
            PyTuple_SET_ITEM(out, i, o);
        }
    }
    for (Node* n : nodes) release(n);  // each one is in `out` now, unless it failed
    return out;
}

}  // namespace mg::python
