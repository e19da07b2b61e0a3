// Unit tests of the engine core (engine.hpp, pymath.hpp) with a minimal runner: TEST registers a
// function, CHECK records a failure and carries on, REQUIRE also ends the test. Expected numbers
// never come from the engine itself: they are closed forms written here, loops over doubles that
// mirror micrograd's formulas, or CPython's own results pasted in as literals. Every node a test
// creates is released before it ends, so a sanitized build (MICROGRAD_CPP_SANITIZE=ON, with
// LeakSanitizer) runs clean.
//
// Usage: engine_tests [substring]   runs the tests whose name contains substring (default: all).

#include <cerrno>
#include <cfloat>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "engine.hpp"
#include "node_pool.hpp"
#include "program.hpp"

namespace {

using mg::Node;
using mg::Op;
using mg::Status;

// ---------------------------------------------------------------------------------------------
// The runner

struct TestCase {
    const char* name;
    void (*run)();
};

std::vector<TestCase>& registry() {
    static std::vector<TestCase> tests;
    return tests;
}

struct Registration {
    Registration(const char* name, void (*run)()) { registry().push_back({name, run}); }
};

int failed_checks = 0;  // in the test that is running

bool report(bool ok, const char* file, int line, const std::string& what) {
    if (!ok) {
        ++failed_checks;
        std::printf("  %s:%d: %s\n", file, line, what.c_str());
    }
    return ok;
}

#define TEST(name)                                       \
    void name();                                         \
    const Registration name##_registration(#name, name); \
    void name()

#define CHECK(cond) report((cond), __FILE__, __LINE__, "CHECK(" #cond ") failed")
#define REQUIRE(cond)             \
    do {                          \
        if (!CHECK(cond)) return; \
    } while (0)
#define CHECK_EQ(actual, expected)                                                               \
    check_eq(static_cast<unsigned long long>(actual), static_cast<unsigned long long>(expected), \
             __FILE__, __LINE__, #actual)
#define CHECK_STATUS(actual, expected) \
    check_status((actual), (expected), __FILE__, __LINE__, #actual)
#define CHECK_SAME(actual, expected) check_same((actual), (expected), __FILE__, __LINE__, #actual)
#define CHECK_BITS(actual, expected) \
    check_same((actual), from_bits(expected), __FILE__, __LINE__, #actual)
#define CHECK_NEAR(actual, expected) check_near((actual), (expected), __FILE__, __LINE__, #actual)

std::uint64_t bits(double x) {
    std::uint64_t u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}

double from_bits(std::uint64_t u) {
    double x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

const char* status_name(Status s) {
    switch (s) {
        case Status::ok:
            return "ok";
        case Status::zero_to_negative_power:
            return "zero_to_negative_power";
        case Status::pow_out_of_range:
            return "pow_out_of_range";
        case Status::pow_domain_error:
            return "pow_domain_error";
        case Status::complex_power:
            return "complex_power";
        case Status::complex_overflow:
            return "complex_overflow";
        case Status::math_range_error:
            return "math_range_error";
        case Status::math_domain_error:
            return "math_domain_error";
        case Status::division_by_zero:
            return "division_by_zero";
        case Status::callback_failed:
            return "callback_failed";
    }
    return "unknown status";
}

std::string describe(double x) {
    char text[64];
    std::snprintf(text, sizeof text, "%.17g (0x%016" PRIx64 ")", x, bits(x));
    return text;
}

bool check_eq(unsigned long long actual, unsigned long long expected, const char* file, int line,
              const char* what) {
    return report(actual == expected, file, line,
                  std::string(what) + " is " + std::to_string(actual) + ", expected " +
                      std::to_string(expected));
}

bool check_status(Status actual, Status expected, const char* file, int line, const char* what) {
    return report(
        actual == expected, file, line,
        std::string(what) + " is " + status_name(actual) + ", expected " + status_name(expected));
}

// Bit for bit: -0.0 differs from 0.0, and a NaN equals a NaN with the same bits.
bool check_same(double actual, double expected, const char* file, int line, const char* what) {
    return report(
        bits(actual) == bits(expected), file, line,
        std::string(what) + " is " + describe(actual) + ", expected " + describe(expected));
}

// Within 4 units in the last place, for closed forms that libm rounds its own way.
bool check_near(double actual, double expected, const char* file, int line, const char* what) {
    const bool ok =
        actual == expected || std::fabs(actual - expected) <= 4 * DBL_EPSILON * std::fabs(expected);
    return report(
        ok, file, line,
        std::string(what) + " is " + describe(actual) + ", expected about " + describe(expected));
}

// ---------------------------------------------------------------------------------------------
// Helpers

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kE = 2.718281828459045235;    // e
constexpr double kLn2 = 0.693147180559945309;  // log(2)

// The references a test owns, released when it ends, also when a REQUIRE ends it early.
class Owned {
  public:
    Owned() = default;
    Owned(const Owned&) = delete;
    Owned& operator=(const Owned&) = delete;
    ~Owned() {
        for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) mg::release(*it);
    }
    Node* operator()(Node* n) {
        if (n) nodes_.push_back(n);
        return n;
    }

  private:
    std::vector<Node*> nodes_;
};

Node* kid(const Node* n, std::size_t i) { return mg::children(n)[i]; }

std::vector<Node*> topo(Node* root) {
    std::vector<Node*> order;
    mg::topological_order(root, order);
    return order;
}

// micrograd's build_topo, recursive, over the children in operand order: the reference the
// engine's iterative sort must reproduce.
void build_topo(Node* v, std::set<const Node*>& visited, std::vector<Node*>& order) {
    if (visited.count(v)) return;
    visited.insert(v);
    for (std::uint32_t i = 0; i < mg::child_count(v); ++i) {
        build_topo(kid(v, i), visited, order);
    }
    order.push_back(v);
}

// Whether every node of order appears once, after all of its children.
bool children_first_each_once(const std::vector<Node*>& order) {
    std::set<const Node*> seen;
    for (Node* n : order) {
        if (seen.count(n)) return false;
        for (std::uint32_t i = 0; i < mg::child_count(n); ++i) {
            if (!seen.count(kid(n, i))) return false;
        }
        seen.insert(n);
    }
    return true;
}

// Runs n's local rule with upstream gradient g on operands whose gradients start at `prior`.
Status apply_rule(Node* n, double g, double prior) {
    for (std::uint32_t i = 0; i < mg::child_count(n); ++i) kid(n, i)->grad = prior;
    n->grad = g;
    return mg::apply_builtin_rule(n);
}

// The hooks as a test installs them, restored when it ends.
struct HookCalls {
    int retain = 0;
    int release = 0;
    int python_backward = 0;
    void* last_handle = nullptr;
};
HookCalls hook_calls;

void count_retain(void* handle) {
    ++hook_calls.retain;
    hook_calls.last_handle = handle;
}
void count_release(void* handle) {
    ++hook_calls.release;
    hook_calls.last_handle = handle;
}
Status count_python_backward(Node*) {
    ++hook_calls.python_backward;
    return Status::ok;
}

class HooksScope {
  public:
    HooksScope() : saved_(mg::hooks) { hook_calls = HookCalls(); }
    HooksScope(const HooksScope&) = delete;
    HooksScope& operator=(const HooksScope&) = delete;
    ~HooksScope() { mg::hooks = saved_; }

  private:
    mg::Hooks saved_;
};

void install_counting_hooks() {
    mg::hooks.retain_handle = count_retain;
    mg::hooks.release_handle = count_release;
    mg::hooks.run_python_backward = count_python_backward;
}

// ---------------------------------------------------------------------------------------------
// Out of memory. These tests come first, so that the engine's reused scratch space is as a fresh
// process has it (empty) and a traversal must allocate.

bool failing_allocations = false;  // while set, operator new throws std::bad_alloc
std::uint64_t allocations = 0;     // calls of operator new

}  // namespace

// The global allocation functions, replaced for this program so that tests can make them fail.
// GCC, inlining them into the standard containers, takes the replaced new and delete for a
// mismatched malloc/free pair; they are the matching pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t size) {
    ++allocations;
    if (failing_allocations) throw std::bad_alloc();
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return ::operator new(size); }
// The nothrow forms too (std::stable_sort's buffer), so that every delete frees what malloc gave.
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    try {
        return ::operator new(size);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
    return ::operator new(size, tag);
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace {

// Whether call() threw std::bad_alloc with every allocation failing while it ran.
template <typename F>
bool runs_out_of_memory(F call) {
    bool threw = false;
    failing_allocations = true;
    try {
        call();
    } catch (const std::bad_alloc&) {
        threw = true;
    }
    failing_allocations = false;
    return threw;
}

TEST(backward_out_of_memory_gives_the_scratch_space_back) {
    Owned own;
    Node* a = own(mg::new_leaf(2.0));
    Node* small = own(mg::mul(a, a));
    CHECK_STATUS(mg::backward(small), Status::ok);  // the scratch space now fits this graph
    Node* chain = a;
    for (int i = 0; i < 100; ++i) chain = own(mg::add(chain, a));
    CHECK(runs_out_of_memory([&] { mg::backward(chain); }));  // it needs more scratch space
    allocations = 0;
    const Status status = mg::backward(small);
    const std::uint64_t made = allocations;  // before the checks, which allocate their messages
    CHECK_STATUS(status, Status::ok);
    CHECK_EQ(made, 0);         // it uses the shared space again rather than its own
    CHECK_SAME(a->grad, 8.0);  // 4 from each pass over small, none from the failed one
}

TEST(teardown_needs_no_memory) {
    HooksScope scope;
    install_counting_hooks();
    // Five relu nodes over leaves that have (stand-in) Python objects, under one custom node: when
    // it goes, they die at once, and all but one wait on the stack of dying nodes.
    std::intptr_t objects[5] = {};
    Node* leaves[5];
    Node* kids[5];
    for (int i = 0; i < 5; ++i) {
        leaves[i] = mg::new_leaf(i);
        leaves[i]->handle = &objects[i];
        leaves[i]->flags |= mg::owned_by_object;
        kids[i] = mg::relu(leaves[i]);
    }
    Node* root = mg::new_leaf(0.0);
    REQUIRE(mg::set_children(root, kids, 5, false));
    for (Node* k : kids) mg::release(k);
    bool threw = false;
    failing_allocations = true;
    try {
        mg::release(root);
    } catch (...) {
        threw = true;
    }
    failing_allocations = false;
    CHECK(!threw);
    CHECK_EQ(hook_calls.release, 5);  // every relu freed gives its leaf's object back
    mg::release(mg::relu(leaves[0]));
    CHECK_EQ(hook_calls.release, 6);  // and teardown goes on working
    for (Node* leaf : leaves) {
        leaf->handle = nullptr;
        leaf->flags &= static_cast<std::uint8_t>(~mg::owned_by_object);
        mg::release(leaf);
    }
}

// ---------------------------------------------------------------------------------------------
// Forward values and local gradient rules, one op at a time

TEST(leaf_is_a_fresh_node_with_one_reference) {
    Node* a = mg::new_leaf(2.5);
    CHECK_SAME(a->data, 2.5);
    CHECK_SAME(a->grad, 0.0);
    CHECK_EQ(a->refs, 1);
    CHECK(a->op == Op::leaf);
    CHECK_EQ(mg::child_count(a), 0);
    CHECK(a->handle == nullptr);
    CHECK_EQ(a->flags, 0);
    mg::release(a);
}

std::multiset<const Node*> visited_nodes;
void visit_node(Node* n) { visited_nodes.insert(n); }

TEST(for_each_node_visits_every_live_node_once) {
    // Enough nodes for several of the pool's blocks, every other one freed again.
    std::vector<Node*> kept, freed;
    for (int i = 0; i < 20000; ++i) (i % 2 ? freed : kept).push_back(mg::new_leaf(i));
    const std::set<const Node*> freed_addresses(freed.begin(), freed.end());
    for (Node* n : freed) mg::release(n);
    visited_nodes.clear();
    mg::for_each_node(visit_node);
    CHECK_EQ(visited_nodes.size(), kept.size());  // no other test leaves a node alive
    for (Node* n : kept) CHECK_EQ(visited_nodes.count(n), 1u);
    for (const Node* n : visited_nodes) CHECK_EQ(freed_addresses.count(n), 0u);
    for (Node* n : kept) mg::release(n);
    visited_nodes.clear();
    mg::for_each_node(visit_node);
    CHECK_EQ(visited_nodes.size(), 0u);
}

std::vector<Node*> newly_marked_nodes;
void record_marked(Node* n) { newly_marked_nodes.push_back(n); }
bool marked(const Node* n) { return n->flags & mg::may_reach_outside; }

TEST(a_mark_passes_to_nodes_made_over_it_and_spreads_to_those_made_before) {
    Owned own;
    Node* a = own(mg::new_leaf(1.0));
    Node* b = own(mg::new_leaf(2.0));
    Node* early = own(mg::mul(own(mg::add(a, b)), a));  // made before a is marked
    Node* other = own(mg::tanh(b));                     // never above a
    CHECK(a->flags & mg::has_had_parents);
    CHECK(!(other->flags & mg::has_had_parents));
    a->flags |= mg::may_reach_outside;
    Node* late = own(mg::add_constant(b, 1.0));
    CHECK(!marked(late));
    late = own(mg::mul(late, a));
    CHECK(marked(late));  // made over a marked node
    CHECK(!marked(early));

    newly_marked_nodes.clear();
    mg::spread_reach_outside(record_marked);
    CHECK(marked(early) && marked(kid(early, 0)));
    CHECK(!marked(b) && !marked(other) && !marked(kid(kid(late, 0), 1)));
    const std::set<Node*> newly(newly_marked_nodes.begin(), newly_marked_nodes.end());
    CHECK(newly == (std::set<Node*>{early, kid(early, 0)}));
    CHECK_EQ(newly_marked_nodes.size(), newly.size());
    // No node keeps the walk's own flag.
    for (Node* n : {a, b, early, other, late}) CHECK(!(n->flags & mg::spread_visited));
}

// Note [Giving blocks back] in node_pool.cpp: a block holds 4,087 nodes; a graph dropped after
// smaller ones leaves at most 2 MiB of empty blocks (8) behind. Sanitizer builds have no blocks:
// these tests check only their nodes there.
constexpr std::size_t fewest_reserved_blocks = 8;

bool pool_has_blocks() {
    Node* probe = mg::new_leaf(0.0);
    const bool blocks = mg::pool_stats().blocks > 0;
    mg::release(probe);
    return blocks;
}

// A chain of 2n nodes, x0 + 1 + 2 + ... + n, owned by the result.
Node* long_sum(int n) {
    Node* y = mg::new_leaf(0.0);
    for (int i = 1; i <= n; ++i) y = mg::add_taking(y, mg::new_leaf(i));
    return y;
}

// A small graph built and dropped: the pool's last cycle was small, whatever ran before.
void small_step() { mg::release(long_sum(10000)); }

TEST(a_dropped_graph_gives_its_blocks_back) {
    small_step();
    const mg::PoolStats before = mg::pool_stats();
    Node* y = long_sum(300000);  // 600,001 nodes: ~147 blocks
    const mg::PoolStats peak = mg::pool_stats();
    CHECK_EQ(peak.live_nodes, before.live_nodes + 600001);
    mg::release(y);  // torn down in one loop (Note [Iterative teardown])
    const mg::PoolStats after = mg::pool_stats();
    CHECK_EQ(after.live_nodes, before.live_nodes);
    if (!pool_has_blocks()) return;
    CHECK(peak.blocks >= 147);
    CHECK(after.empty_blocks <= fewest_reserved_blocks);
    CHECK(after.blocks - after.empty_blocks <= before.blocks - before.empty_blocks);
    CHECK(after.blocks <= before.blocks - before.empty_blocks + fewest_reserved_blocks);
    CHECK_EQ(after.maps - before.maps,
             after.blocks + after.releases - before.blocks - before.releases);
}

TEST(a_graph_rebuilt_every_step_reuses_its_blocks) {
    // Twice the size of the smallest reserve, and far more: kept because the step before used
    // them too. The first two steps map and give back; later ones neither.
    for (const int n : {40000, 300000}) {
        small_step();
        for (int step = 0; step < 2; ++step) mg::release(long_sum(n));
        const mg::PoolStats warm = mg::pool_stats();
        for (int step = 0; step < 10; ++step) mg::release(long_sum(n));
        const mg::PoolStats after = mg::pool_stats();
        CHECK_EQ(after.live_nodes, warm.live_nodes);
        CHECK_EQ(after.maps, warm.maps);
        CHECK_EQ(after.releases, warm.releases);
        CHECK_EQ(after.blocks, warm.blocks);
    }
    // As a Python loop runs: the next step's graph is made before the last one is dropped.
    small_step();
    Node* last = long_sum(40000);
    for (int step = 0; step < 3; ++step) {
        Node* next = long_sum(40000);
        mg::release(last);
        last = next;
    }
    const mg::PoolStats warm = mg::pool_stats();
    for (int step = 0; step < 10; ++step) {
        Node* next = long_sum(40000);
        mg::release(last);
        last = next;
    }
    mg::release(last);
    CHECK_EQ(mg::pool_stats().maps, warm.maps);
    // Then smaller steps: the blocks beyond their needs go back.
    small_step();
    small_step();
    if (pool_has_blocks()) CHECK(mg::pool_stats().empty_blocks <= fewest_reserved_blocks);
}

TEST(for_each_node_skips_the_blocks_given_back) {
    // Keep every 50,000th node of a graph spread over ~147 blocks; free the rest and the blocks.
    small_step();
    std::vector<Node*> leaves, kept;
    for (int i = 0; i < 600000; ++i) leaves.push_back(mg::new_leaf(i));
    for (std::size_t i = 0; i < leaves.size(); ++i) {
        if (i % 50000 == 7) {
            kept.push_back(leaves[i]);
        } else {
            mg::release(leaves[i]);
        }
    }
    visited_nodes.clear();
    mg::for_each_node(visit_node);
    CHECK_EQ(visited_nodes.size(), kept.size());  // no other test leaves a node alive
    for (Node* n : kept) CHECK_EQ(visited_nodes.count(n), 1u);
    if (pool_has_blocks()) {
        const mg::PoolStats stats = mg::pool_stats();
        CHECK(stats.blocks - stats.empty_blocks <= kept.size() + 1);
        CHECK(stats.empty_blocks <= fewest_reserved_blocks);
    }
    // New nodes go into the blocks kept, then into new ones; all are visited.
    Node* y = long_sum(100000);
    visited_nodes.clear();
    mg::for_each_node(visit_node);
    CHECK_EQ(visited_nodes.size(), kept.size() + 200001);
    mg::release(y);
    for (Node* n : kept) mg::release(n);
    visited_nodes.clear();
    mg::for_each_node(visit_node);
    CHECK_EQ(visited_nodes.size(), 0u);
}

TEST(a_node_freer_frees_each_node_once_in_any_order) {
    // Nodes over ~30 blocks freed through one NodeFreer in an order that jumps between more
    // spans than it gathers at once, and back: every node is freed once, and the blocks go
    // back.
    small_step();
    const mg::PoolStats before = mg::pool_stats();
    std::vector<Node*> nodes;
    for (int i = 0; i < 120000; ++i) nodes.push_back(mg::new_leaf(i));
    std::vector<Node*> order;
    for (std::size_t start = 0; start < 7; ++start) {  // strides of 7 slots cross spans often
        for (std::size_t i = start; i < nodes.size(); i += 7) order.push_back(nodes[i]);
    }
    CHECK_EQ(order.size(), nodes.size());
    {
        mg::NodeFreer freer;
        for (std::size_t i = 0; i < order.size(); ++i) {
            freer.free(order[i]);
            if (i == order.size() / 2) {  // what was gathered is in the pool after a flush
                freer.flush();
                CHECK_EQ(mg::pool_stats().live_nodes, before.live_nodes + nodes.size() - i - 1);
            }
        }
    }  // the rest at the freer's end
    const mg::PoolStats after = mg::pool_stats();
    CHECK_EQ(after.live_nodes, before.live_nodes);
    if (pool_has_blocks()) CHECK(after.empty_blocks <= fewest_reserved_blocks);
}

std::size_t live_at_release = 0;
void note_live_nodes(void*) { live_at_release = mg::pool_stats().live_nodes; }

TEST(teardown_hands_its_frees_to_the_pool_before_an_object_goes) {
    // The binding's release hook can run Python code, which can make and free nodes: the pool
    // must then know of every node the teardown freed so far.
    HooksScope scope;
    install_counting_hooks();
    mg::hooks.release_handle = note_live_nodes;
    mg::hooks.counts_in_place = false;
    small_step();
    std::intptr_t object = 1;
    Node* a = mg::new_leaf(1.0);
    a->handle = &object;
    a->flags |= mg::owned_by_object;
    const std::size_t start = mg::pool_stats().live_nodes;  // a and what other tests keep
    Node* y = mg::add_constant(a, 0.0);  // (a + 0) + 1 + 2 + ...: a is the bottom's first operand
    for (int i = 1; i <= 5000; ++i) y = mg::add_taking(y, mg::new_leaf(i));
    mg::release(y);
    // The hook ran while the bottom sum was being freed: it and its constant were still there,
    // and so were the 5,000 constants above it, which wait on the stack of dying nodes; the
    // 5,000 sums above it were freed.
    CHECK_EQ(live_at_release, start + 2 + 5000);
    CHECK_EQ(mg::pool_stats().live_nodes, start);
    a->handle = nullptr;
    a->flags &= static_cast<std::uint8_t>(~mg::owned_by_object);
    mg::release(a);
}

TEST(add_value_and_rule) {
    Owned own;
    const double x = 1.5, y = -4.25, g = 0.75, prior = 0.5;
    Node* a = own(mg::new_leaf(x));
    Node* b = own(mg::new_leaf(y));
    Node* s = own(mg::add(a, b));
    CHECK(s->op == Op::add);
    CHECK_EQ(mg::child_count(s), 2);
    CHECK(kid(s, 0) == a && kid(s, 1) == b);
    CHECK_SAME(s->data, -2.75);
    CHECK_STATUS(apply_rule(s, g, prior), Status::ok);
    CHECK_SAME(a->grad, prior + 1.0 * g);  // d(a+b)/da == 1
    CHECK_SAME(b->grad, prior + 1.0 * g);  // d(a+b)/db == 1

    Node* twice = own(mg::add(a, a));  // a + a: both operands feed the same gradient
    CHECK_SAME(twice->data, 3.0);
    CHECK_STATUS(apply_rule(twice, g, prior), Status::ok);
    CHECK_SAME(a->grad, prior + 2.0 * g);

    Node* plus = own(mg::add_constant(a, 2.5));  // a + Value(2.5)
    CHECK_SAME(plus->data, 4.0);
    CHECK(kid(plus, 0) == a);
    CHECK(kid(plus, 1)->op == Op::leaf);
    CHECK_SAME(kid(plus, 1)->data, 2.5);
}

TEST(mul_value_and_rule) {
    Owned own;
    const double x = 3.0, y = -4.25, g = 0.75, prior = 0.5;
    Node* a = own(mg::new_leaf(x));
    Node* b = own(mg::new_leaf(y));
    Node* p = own(mg::mul(a, b));
    CHECK(p->op == Op::mul);
    CHECK(kid(p, 0) == a && kid(p, 1) == b);
    CHECK_SAME(p->data, -12.75);
    CHECK_STATUS(apply_rule(p, g, prior), Status::ok);
    CHECK_SAME(a->grad, prior + y * g);  // d(a*b)/da == b
    CHECK_SAME(b->grad, prior + x * g);  // d(a*b)/db == a

    Node* square = own(mg::mul(a, a));  // a * a
    CHECK_SAME(square->data, 9.0);
    CHECK_STATUS(apply_rule(square, g, prior), Status::ok);
    CHECK_SAME(a->grad, prior + 2.0 * x * g);  // d(a*a)/da == 2a

    Node* times = own(mg::mul_constant(a, -0.5));  // a * Value(-0.5)
    CHECK_SAME(times->data, -1.5);
    CHECK(kid(times, 0) == a);
    CHECK_SAME(kid(times, 1)->data, -0.5);
    CHECK_STATUS(apply_rule(times, 1.0, 0.0), Status::ok);
    CHECK_SAME(a->grad, -0.5);
    CHECK_SAME(kid(times, 1)->grad, x);
}

TEST(pow_value_and_rule) {
    struct Case {
        double x, e;
        double value;  // x ** e
        double slope;  // e * x ** (e - 1)
    };
    const Case cases[] = {
        {3.0, 2.0, 9.0, 6.0},
        {3.0, 1.0, 3.0, 1.0},
        {2.0, 0.0, 1.0, 0.0},
        {2.0, -3.0, 1.0 / 8.0, -3.0 / 16.0},
        {4.0, -1.0, 1.0 / 4.0, -1.0 / 16.0},
        {-2.0, 3.0, -8.0, 12.0},
        {-2.0, -2.0, 1.0 / 4.0, 1.0 / 4.0},
        {0.0, 2.0, 0.0, 0.0},
        {0.0, 1.0, 0.0, 1.0},
        {4.0, 0.5, std::sqrt(4.0), 0.5 / std::sqrt(4.0)},
        {2.0, 0.5, std::sqrt(2.0), 0.5 / std::sqrt(2.0)},
        {9.0, -0.5, 1.0 / std::sqrt(9.0), -0.5 / (9.0 * std::sqrt(9.0))},
        {8.0, 1.0 / 3.0, std::cbrt(8.0), 1.0 / (3.0 * std::cbrt(8.0) * std::cbrt(8.0))},
        {1.5, 2.5, 1.5 * 1.5 * std::sqrt(1.5), 2.5 * 1.5 * std::sqrt(1.5)},
    };
    const double g = 0.75, prior = 0.5;
    for (const Case& c : cases) {
        Owned own;
        Node* a = own(mg::new_leaf(c.x));
        Status status = Status::callback_failed;
        Node* p = own(mg::pow(a, c.e, &status));
        CHECK_STATUS(status, Status::ok);
        REQUIRE(p != nullptr);
        CHECK(p->op == Op::pow);
        CHECK_EQ(mg::child_count(p), 1);
        CHECK(kid(p, 0) == a);
        CHECK_SAME(p->operands.pow.exponent, c.e);
        CHECK_NEAR(p->data, c.value);
        CHECK_STATUS(apply_rule(p, g, prior), Status::ok);
        CHECK_NEAR(a->grad, prior + c.slope * g);
    }
}

TEST(relu_value_and_rule) {
    struct Case {
        double x;
        double value;  // 0 if x < 0 else x, as micrograd writes it
        double slope;  // (out.data > 0) as a number
    };
    const Case cases[] = {
        {3.0, 3.0, 1.0},   {1e-300, 1e-300, 1.0}, {-2.0, 0.0, 0.0},  {0.0, 0.0, 0.0},
        {-0.0, -0.0, 0.0}, {kNaN, kNaN, 0.0},     {kInf, kInf, 1.0}, {-kInf, 0.0, 0.0},
    };
    const double g = 0.75, prior = 0.5;
    for (const Case& c : cases) {
        Owned own;
        Node* a = own(mg::new_leaf(c.x));
        Node* r = own(mg::relu(a));
        CHECK(r->op == Op::relu);
        CHECK(kid(r, 0) == a);
        CHECK_SAME(r->data, c.value);
        CHECK_STATUS(apply_rule(r, g, prior), Status::ok);
        CHECK_SAME(a->grad, prior + c.slope * g);
        CHECK_STATUS(apply_rule(r, 1.0, 0.0), Status::ok);
        CHECK_SAME(a->grad, c.slope);  // 0.0, never -0.0, when the input is -0.0
    }
    // (False) * inf is nan in Python: a dead unit still passes nan on an infinite gradient.
    Owned own;
    Node* a = own(mg::new_leaf(-1.0));
    Node* r = own(mg::relu(a));
    CHECK_STATUS(apply_rule(r, kInf, 0.0), Status::ok);
    CHECK(std::isnan(a->grad));
}

TEST(tanh_value_and_rule) {
    const double g = 0.75, prior = 0.5;
    for (double x : {0.5, -1.0, 2.0, 1e-3}) {
        Owned own;
        Node* a = own(mg::new_leaf(x));
        Node* t = own(mg::tanh(a));
        CHECK(t->op == Op::tanh);
        CHECK(kid(t, 0) == a);
        const double em1 = std::expm1(2.0 * x);  // tanh(x) == (e**2x - 1) / (e**2x + 1)
        CHECK_NEAR(t->data, em1 / (em1 + 2.0));
        CHECK_STATUS(apply_rule(t, g, prior), Status::ok);
        const double ch = std::cosh(x);
        CHECK_NEAR(a->grad, prior + g / (ch * ch));  // d tanh(x)/dx == 1 / cosh(x)**2
    }
    Owned own;
    Node* zero = own(mg::new_leaf(0.0));
    Node* t0 = own(mg::tanh(zero));
    CHECK_SAME(t0->data, 0.0);
    CHECK_STATUS(apply_rule(t0, g, prior), Status::ok);
    CHECK_SAME(zero->grad, prior + g);
    Node* negative_zero = own(mg::new_leaf(-0.0));
    CHECK_SAME(own(mg::tanh(negative_zero))->data, -0.0);
    // Saturated: tanh(20) rounds to 1.0, so micrograd's 1 - t**2 is exactly 0.
    Node* big = own(mg::new_leaf(20.0));
    Node* t20 = own(mg::tanh(big));
    CHECK_SAME(t20->data, 1.0);
    CHECK_STATUS(apply_rule(t20, g, prior), Status::ok);
    CHECK_SAME(big->grad, prior);
}

TEST(sigmoid_value_and_rule) {
    const double g = 0.75, prior = 0.5;
    for (double x : {0.5, -1.0, 2.0, -3.0, 1e-3}) {
        Owned own;
        Node* a = own(mg::new_leaf(x));
        Status status = Status::callback_failed;
        Node* s = own(mg::unary_node(Op::sigmoid, a, &status));
        CHECK_STATUS(status, Status::ok);
        REQUIRE(s != nullptr);
        CHECK(s->op == Op::sigmoid);
        CHECK(kid(s, 0) == a);
        const double half_tanh = 0.5 * std::tanh(0.5 * x);  // sigmoid(x) == 1/2 + tanh(x/2)/2
        CHECK_NEAR(s->data, 0.5 + half_tanh);
        CHECK_STATUS(apply_rule(s, g, prior), Status::ok);
        const double ch = std::cosh(0.5 * x);
        CHECK_NEAR(a->grad, prior + g / (4.0 * ch * ch));  // d sigmoid/dx == 1 / (4 cosh(x/2)**2)
    }
    // exp never overflows: the far tails are exactly 0 and 1, and nothing fails.
    for (double x : {-1000.0, -1e308, 1000.0, 1e308}) {
        Owned own;
        Status status = Status::callback_failed;
        Node* s = own(mg::unary_node(Op::sigmoid, own(mg::new_leaf(x)), &status));
        CHECK_STATUS(status, Status::ok);
        REQUIRE(s != nullptr);
        CHECK_SAME(s->data, x < 0 ? 0.0 : 1.0);
    }
}

TEST(exp_value_and_rule) {
    struct Case {
        double x, value;  // value == e ** x == d exp(x)/dx
    };
    const Case cases[] = {
        {0.0, 1.0}, {1.0, kE}, {-1.0, 1.0 / kE}, {0.5, std::sqrt(kE)}, {kLn2, 2.0}};
    const double g = 0.75, prior = 0.5;
    for (const Case& c : cases) {
        Owned own;
        Node* a = own(mg::new_leaf(c.x));
        Status status = Status::callback_failed;
        Node* e = own(mg::exp(a, &status));
        CHECK_STATUS(status, Status::ok);
        REQUIRE(e != nullptr);
        CHECK(e->op == Op::exp);
        CHECK(kid(e, 0) == a);
        CHECK_NEAR(e->data, c.value);
        CHECK_STATUS(apply_rule(e, g, prior), Status::ok);
        CHECK_NEAR(a->grad, prior + c.value * g);
    }
}

TEST(log_value_and_rule) {
    struct Case {
        double x, value;  // value == log(x); d log(x)/dx == 1 / x
    };
    const Case cases[] = {
        {1.0, 0.0}, {4.0, 2.0 * kLn2}, {0.5, -kLn2}, {kE, 1.0}, {0.125, -3 * kLn2}};
    const double g = 0.75, prior = 0.5;
    for (const Case& c : cases) {
        Owned own;
        Node* a = own(mg::new_leaf(c.x));
        Status status = Status::callback_failed;
        Node* l = own(mg::log(a, &status));
        CHECK_STATUS(status, Status::ok);
        REQUIRE(l != nullptr);
        CHECK(l->op == Op::log);
        CHECK(kid(l, 0) == a);
        CHECK_NEAR(l->data, c.value);
        CHECK_STATUS(apply_rule(l, g, prior), Status::ok);
        CHECK_NEAR(a->grad, prior + g / c.x);
    }
}

TEST(failing_ops_create_nothing) {
    Owned own;
    Node* zero = own(mg::new_leaf(0.0));
    Node* minus_eight = own(mg::new_leaf(-8.0));
    Node* ten = own(mg::new_leaf(10.0));
    Node* big = own(mg::new_leaf(709.8));
    Node* minus_one = own(mg::new_leaf(-1.0));
    Status status = Status::ok;
    CHECK(own(mg::pow(zero, -1.0, &status)) == nullptr);
    CHECK_STATUS(status, Status::zero_to_negative_power);
    CHECK(own(mg::pow(minus_eight, 1.0 / 3.0, &status)) == nullptr);
    CHECK_STATUS(status, Status::complex_power);
    CHECK(own(mg::pow(ten, 400.0, &status)) == nullptr);
    CHECK_STATUS(status, Status::pow_out_of_range);
    CHECK(own(mg::exp(big, &status)) == nullptr);
    CHECK_STATUS(status, Status::math_range_error);
    CHECK(own(mg::log(zero, &status)) == nullptr);
    CHECK_STATUS(status, Status::math_domain_error);
    CHECK(own(mg::log(minus_one, &status)) == nullptr);
    CHECK_STATUS(status, Status::math_domain_error);
    for (Node* n : {zero, minus_eight, ten, big, minus_one}) CHECK_EQ(n->refs, 1);
}

// ---------------------------------------------------------------------------------------------
// Python's float semantics. The tables below are CPython 3.11's results for these inputs
// (CPython 3.11.7 on x86-64 Linux with glibc): `float.hex`/bit patterns of `x ** e`,
// `math.exp(x)`, `math.log(x)` and `math.tanh(x)` with float arguments, or the exception raised:
// ZeroDivisionError -> zero_to_negative_power, OverflowError -> pow_out_of_range (from **) or
// math_range_error (from math), ValueError -> math_domain_error, and a complex result of ** ->
// complex_power. Inputs are Python's repr of each float, which C++ reads back exactly.

struct PowCase {
    double x, e;
    Status status;
    std::uint64_t result;  // bits of x ** e when status is ok
};

const PowCase pow_cases[] = {
    {0.0, 0.0, Status::ok, 0x3ff0000000000000},                  // 1.0
    {kNaN, 0.0, Status::ok, 0x3ff0000000000000},                 // 1.0
    {kNaN, -0.0, Status::ok, 0x3ff0000000000000},                // 1.0
    {kInf, 0.0, Status::ok, 0x3ff0000000000000},                 // 1.0
    {kNaN, 1.0, Status::ok, 0x7ff8000000000000},                 // nan
    {-kNaN, 1.0, Status::ok, 0xfff8000000000000},                // -nan
    {kNaN, kNaN, Status::ok, 0x7ff8000000000000},                // nan
    {kNaN, kInf, Status::ok, 0x7ff8000000000000},                // nan
    {kNaN, -kInf, Status::ok, 0x7ff8000000000000},               // nan
    {-kNaN, 2.0, Status::ok, 0xfff8000000000000},                // -nan
    {-kNaN, 0.5, Status::ok, 0xfff8000000000000},                // -nan
    {kNaN, -1.0, Status::ok, 0x7ff8000000000000},                // nan
    {-kNaN, -3.0, Status::ok, 0xfff8000000000000},               // -nan
    {1.0, kNaN, Status::ok, 0x3ff0000000000000},                 // 1.0
    {2.0, kNaN, Status::ok, 0x7ff8000000000000},                 // nan
    {2.0, -kNaN, Status::ok, 0xfff8000000000000},                // -nan
    {-1.0, kNaN, Status::ok, 0x7ff8000000000000},                // nan
    {1.0, kInf, Status::ok, 0x3ff0000000000000},                 // 1.0
    {1.0, -kInf, Status::ok, 0x3ff0000000000000},                // 1.0
    {-1.0, kInf, Status::ok, 0x3ff0000000000000},                // 1.0
    {-1.0, -kInf, Status::ok, 0x3ff0000000000000},               // 1.0
    {0.5, kInf, Status::ok, 0x0000000000000000},                 // 0.0
    {0.5, -kInf, Status::ok, 0x7ff0000000000000},                // inf
    {-0.5, -kInf, Status::ok, 0x7ff0000000000000},               // inf
    {2.0, kInf, Status::ok, 0x7ff0000000000000},                 // inf
    {2.0, -kInf, Status::ok, 0x0000000000000000},                // 0.0
    {-2.0, kInf, Status::ok, 0x7ff0000000000000},                // inf
    {kInf, kInf, Status::ok, 0x7ff0000000000000},                // inf
    {kInf, -kInf, Status::ok, 0x0000000000000000},               // 0.0
    {0.0, kInf, Status::ok, 0x0000000000000000},                 // 0.0
    {0.0, -kInf, Status::ok, 0x7ff0000000000000},                // inf
    {-0.0, -kInf, Status::ok, 0x7ff0000000000000},               // inf
    {kInf, 0.5, Status::ok, 0x7ff0000000000000},                 // inf
    {kInf, -1.0, Status::ok, 0x0000000000000000},                // 0.0
    {-kInf, 3.0, Status::ok, 0xfff0000000000000},                // -inf
    {-kInf, 2.0, Status::ok, 0x7ff0000000000000},                // inf
    {-kInf, -3.0, Status::ok, 0x8000000000000000},               // -0.0
    {-kInf, -2.0, Status::ok, 0x0000000000000000},               // 0.0
    {-kInf, 0.5, Status::ok, 0x7ff0000000000000},                // inf
    {0.0, -1.0, Status::zero_to_negative_power, 0},              // ZeroDivisionError
    {-0.0, -1.0, Status::zero_to_negative_power, 0},             // ZeroDivisionError
    {0.0, -0.5, Status::zero_to_negative_power, 0},              // ZeroDivisionError
    {-0.0, 3.0, Status::ok, 0x8000000000000000},                 // -0.0
    {-0.0, 2.0, Status::ok, 0x0000000000000000},                 // 0.0
    {-0.0, 0.5, Status::ok, 0x0000000000000000},                 // 0.0
    {0.0, 1e-300, Status::ok, 0x0000000000000000},               // 0.0
    {-8.0, 0.3333333333333333, Status::complex_power, 0},        // complex
    {-8.0, -0.5, Status::complex_power, 0},                      // complex
    {-1.0, 0.5, Status::complex_power, 0},                       // complex
    {-2.0, 10000000000.5, Status::complex_overflow, 0},          // OverflowError
    {-1e+300, 2.5, Status::complex_overflow, 0},                 // OverflowError
    {-1e-300, -2.5, Status::complex_overflow, 0},                // OverflowError
    {-1.0, 3.0, Status::ok, 0xbff0000000000000},                 // -1.0
    {-1.0, 1e+300, Status::ok, 0x3ff0000000000000},              // 1.0
    {-1.0, -1e+300, Status::ok, 0x3ff0000000000000},             // 1.0
    {-1.0, 9007199254740991.0, Status::ok, 0xbff0000000000000},  // -1.0
    {10.0, 400.0, Status::pow_out_of_range, 0},                  // OverflowError
    {-10.0, 401.0, Status::pow_out_of_range, 0},                 // OverflowError
    {1e+308, 2.0, Status::pow_out_of_range, 0},                  // OverflowError
    {-8.0, 1e+300, Status::pow_out_of_range, 0},                 // OverflowError
    {2.0, 1024.0, Status::pow_out_of_range, 0},                  // OverflowError
    {-2.0, 1025.0, Status::pow_out_of_range, 0},                 // OverflowError
    {2.0, -1080.0, Status::ok, 0x0000000000000000},              // 0.0
    {2.0, -1074.0, Status::ok, 0x0000000000000001},              // 5e-324
    {2.0, -1070.5, Status::ok, 0x000000000000000b},              // 5.4e-323
    {1.5, -1800.0, Status::ok, 0x0000000000218862},              // 1.0857597e-317
    {10.0, -400.0, Status::ok, 0x0000000000000000},              // 0.0
    {-10.0, -401.0, Status::ok, 0x8000000000000000},             // -0.0
    {-1e-300, 3.0, Status::ok, 0x8000000000000000},              // -0.0
    {2.0, 0.5, Status::ok, 0x3ff6a09e667f3bcd},                  // 1.4142135623730951
    {2.0, -1.0, Status::ok, 0x3fe0000000000000},                 // 0.5
    {3.0, 2.0, Status::ok, 0x4022000000000000},                  // 9.0
    {-2.0, 3.0, Status::ok, 0xc020000000000000},                 // -8.0
    {-2.0, 2.0, Status::ok, 0x4010000000000000},                 // 4.0
    {-2.0, -3.0, Status::ok, 0xbfc0000000000000},                // -0.125
    {4.0, 0.5, Status::ok, 0x4000000000000000},                  // 2.0
    {10.0, 0.1, Status::ok, 0x3ff4248ef8fc2604},                 // 1.2589254117941673
    {0.1, 3.0, Status::ok, 0x3f50624dd2f1a9fd},                  // 0.0010000000000000002
    {0.001, -2.0, Status::ok, 0x412e848000000000},               // 1000000.0
    {2.0, 1023.0, Status::ok, 0x7fe0000000000000},               // 8.98846567431158e+307
    {7.0, 0.3333333333333333, Status::ok, 0x3ffe9b5dba58189d},   // 1.912931182772389
    {1.0000001, 10000000000.0, Status::pow_out_of_range, 0},     // OverflowError
};

struct MathCase {
    double x;
    Status status;
    std::uint64_t result;  // bits of the result when status is ok
};

const MathCase exp_cases[] = {
    {0.0, Status::ok, 0x3ff0000000000000},      // 1.0
    {-0.0, Status::ok, 0x3ff0000000000000},     // 1.0
    {1.0, Status::ok, 0x4005bf0a8b145769},      // 2.718281828459045
    {-1.0, Status::ok, 0x3fd78b56362cef38},     // 0.36787944117144233
    {0.5, Status::ok, 0x3ffa61298e1e069c},      // 1.6487212707001282
    {1e-300, Status::ok, 0x3ff0000000000000},   // 1.0
    {709.78, Status::ok, 0x7fefe9ce5c4c52b4},   // 1.7928227943945155e+308
    {709.8, Status::math_range_error, 0},       // OverflowError
    {710.0, Status::math_range_error, 0},       // OverflowError
    {1e+308, Status::math_range_error, 0},      // OverflowError
    {kInf, Status::ok, 0x7ff0000000000000},     // inf
    {-kInf, Status::ok, 0x0000000000000000},    // 0.0
    {kNaN, Status::ok, 0x7ff8000000000000},     // nan
    {-708.5, Status::ok, 0x000e6cf6d08897ac},   // 2.006132305331306e-308
    {-740.0, Status::ok, 0x0000000000000055},   // 4.2e-322
    {-745.0, Status::ok, 0x0000000000000001},   // 5e-324
    {-1000.0, Status::ok, 0x0000000000000000},  // 0.0
};

const MathCase log_cases[] = {
    {1.0, Status::ok, 0x0000000000000000},                      // 0.0
    {2.0, Status::ok, 0x3fe62e42fefa39ef},                      // 0.6931471805599453
    {0.5, Status::ok, 0xbfe62e42fefa39ef},                      // -0.6931471805599453
    {2.718281828459045, Status::ok, 0x3ff0000000000000},        // 1.0
    {10.0, Status::ok, 0x40026bb1bbb55516},                     // 2.302585092994046
    {1e+308, Status::ok, 0x40862991d5d62a5e},                   // 709.1962086421661
    {1.7976931348623157e+308, Status::ok, 0x40862e42fefa39ef},  // 709.782712893384
    {1e-320, Status::ok, 0xc087069e3078e52d},                   // -736.8272408909739
    {5e-324, Status::ok, 0xc0874385446d71c3},                   // -744.4400719213812
    {kInf, Status::ok, 0x7ff0000000000000},                     // inf
    {kNaN, Status::ok, 0x7ff8000000000000},                     // nan
    {0.0, Status::math_domain_error, 0},                        // ValueError
    {-0.0, Status::math_domain_error, 0},                       // ValueError
    {-1.0, Status::math_domain_error, 0},                       // ValueError
    {-5e-324, Status::math_domain_error, 0},                    // ValueError
    {-kInf, Status::math_domain_error, 0},                      // ValueError
};

struct TanhCase {
    double x;
    std::uint64_t result;
};

const TanhCase tanh_cases[] = {
    {0.0, 0x0000000000000000},     // 0.0
    {-0.0, 0x8000000000000000},    // -0.0
    {1e-300, 0x01a56e1fc2f8f359},  // 1e-300
    {0.5, 0x3fdd9353d7568af3},     // 0.46211715726000974
    {-1.0, 0xbfe85efab514f394},    // -0.7615941559557649
    {20.0, 0x3ff0000000000000},    // 1.0
    {-20.0, 0xbff0000000000000},   // -1.0
    {kInf, 0x3ff0000000000000},    // 1.0
    {-kInf, 0xbff0000000000000},   // -1.0
    {kNaN, 0x7ff8000000000000},    // nan
};

// A stale errno from earlier work must not turn into an error.
void set_stale_errno() { errno = ERANGE; }

TEST(py_pow_matches_python) {
    for (const PowCase& c : pow_cases) {
        double out = 0.0;
        set_stale_errno();
        const Status status = mg::py_pow(c.x, c.e, &out);
        const std::string what = describe(c.x) + " ** " + describe(c.e);
        report(status == c.status, __FILE__, __LINE__,
               what + ": " + status_name(status) + ", expected " + status_name(c.status));
        if (status == Status::ok && c.status == Status::ok) {
            report(bits(out) == c.result, __FILE__, __LINE__,
                   what + " = " + describe(out) + ", expected " + describe(from_bits(c.result)));
        }
    }
}

TEST(py_exp_matches_python) {
    for (const MathCase& c : exp_cases) {
        double out = 0.0;
        set_stale_errno();
        const Status status = mg::py_exp(c.x, &out);
        const std::string what = "exp(" + describe(c.x) + ")";
        report(status == c.status, __FILE__, __LINE__,
               what + ": " + status_name(status) + ", expected " + status_name(c.status));
        if (status == Status::ok && c.status == Status::ok) {
            report(bits(out) == c.result, __FILE__, __LINE__,
                   what + " = " + describe(out) + ", expected " + describe(from_bits(c.result)));
        }
    }
}

TEST(py_log_matches_python) {
    for (const MathCase& c : log_cases) {
        double out = 0.0;
        set_stale_errno();
        const Status status = mg::py_log(c.x, &out);
        const std::string what = "log(" + describe(c.x) + ")";
        report(status == c.status, __FILE__, __LINE__,
               what + ": " + status_name(status) + ", expected " + status_name(c.status));
        if (status == Status::ok && c.status == Status::ok) {
            report(bits(out) == c.result, __FILE__, __LINE__,
                   what + " = " + describe(out) + ", expected " + describe(from_bits(c.result)));
        }
    }
}

TEST(py_tanh_matches_python) {
    for (const TanhCase& c : tanh_cases) {
        const double out = mg::py_tanh(c.x);
        report(bits(out) == c.result, __FILE__, __LINE__,
               "tanh(" + describe(c.x) + ") = " + describe(out) + ", expected " +
                   describe(from_bits(c.result)));
    }
}

TEST(ops_fail_where_python_fails) {
    // The same verdicts through the node constructors, which use py_pow, py_exp and py_log.
    for (const PowCase& c : pow_cases) {
        Node* a = mg::new_leaf(c.x);
        Status status = Status::callback_failed;
        Node* p = mg::pow(a, c.e, &status);
        report(status == c.status && (p != nullptr) == (c.status == Status::ok), __FILE__, __LINE__,
               "pow node of " + describe(c.x) + " ** " + describe(c.e));
        if (p) {
            CHECK_BITS(p->data, c.result);
            mg::release(p);
        }
        CHECK_EQ(a->refs, 1);
        mg::release(a);
    }
    for (const MathCase& c : exp_cases) {
        Node* a = mg::new_leaf(c.x);
        Status status = Status::callback_failed;
        Node* e = mg::exp(a, &status);
        report(status == c.status && (e != nullptr) == (c.status == Status::ok), __FILE__, __LINE__,
               "exp node of " + describe(c.x));
        if (e) {
            CHECK_BITS(e->data, c.result);
            mg::release(e);
        }
        mg::release(a);
    }
    for (const MathCase& c : log_cases) {
        Node* a = mg::new_leaf(c.x);
        Status status = Status::callback_failed;
        Node* l = mg::log(a, &status);
        report(status == c.status && (l != nullptr) == (c.status == Status::ok), __FILE__, __LINE__,
               "log node of " + describe(c.x));
        if (l) {
            CHECK_BITS(l->data, c.result);
            mg::release(l);
        }
        mg::release(a);
    }
}

// ---------------------------------------------------------------------------------------------
// Topological order and backward()

TEST(backward_sets_the_root_grad_to_one) {
    Owned own;
    Node* leaf = own(mg::new_leaf(3.0));
    leaf->grad = 5.0;
    CHECK_STATUS(mg::backward(leaf), Status::ok);
    CHECK_SAME(leaf->grad, 1.0);  // set, not accumulated

    Node* a = own(mg::new_leaf(2.0));
    Node* b = own(mg::new_leaf(-3.0));
    Node* p = own(mg::mul(a, b));
    p->grad = 7.0;
    CHECK_STATUS(mg::backward(p), Status::ok);
    CHECK_SAME(p->grad, 1.0);
    CHECK_SAME(a->grad, -3.0);
    CHECK_SAME(b->grad, 2.0);
}

TEST(backward_accumulates_on_every_call) {
    Owned own;
    const double x = 2.0, y = 3.0;
    Node* a = own(mg::new_leaf(x));
    Node* b = own(mg::new_leaf(y));
    Node* s = own(mg::mul(a, b));
    Node* root = own(mg::add(s, a));  // a*b + a
    double a_grad = 0.0, b_grad = 0.0;
    for (int call = 1; call <= 3; ++call) {
        CHECK_STATUS(mg::backward(root), Status::ok);
        // The root's grad is reset to 1 each time; everything below keeps what it had, so the
        // product's grad is the number of calls and the leaves accumulate from it.
        const double k = call;
        a_grad += k * y + 1.0;
        b_grad += k * x;
        CHECK_SAME(root->grad, 1.0);
        CHECK_SAME(s->grad, k);
        CHECK_SAME(a->grad, a_grad);
        CHECK_SAME(b->grad, b_grad);
    }
}

TEST(topological_order_of_a_leaf) {
    Owned own;
    Node* a = own(mg::new_leaf(1.0));
    const std::vector<Node*> order = topo(a);
    CHECK(order == std::vector<Node*>{a});
}

TEST(topological_order_of_a_diamond) {
    Owned own;
    const double x = 1.5;
    Node* a = own(mg::new_leaf(x));
    Node* left = own(mg::mul_constant(a, 2.0));   // children a, 2
    Node* right = own(mg::add_constant(a, 3.0));  // children a, 3
    Node* root = own(mg::mul(left, right));       // 2a * (a + 3)
    const std::vector<Node*> expected = {a, kid(left, 1), left, kid(right, 1), right, root};
    const std::vector<Node*> order = topo(root);
    CHECK(order == expected);
    CHECK(children_first_each_once(order));
    CHECK_STATUS(mg::backward(root), Status::ok);
    CHECK_SAME(a->grad, 4.0 * x + 6.0);  // d(2a(a+3))/da == 4a + 6
    CHECK_SAME(left->grad, x + 3.0);
    CHECK_SAME(right->grad, 2.0 * x);
}

TEST(topological_order_with_a_shared_subexpression) {
    Owned own;
    const double x = 2.0, y = 3.0;
    Node* a = own(mg::new_leaf(x));
    Node* b = own(mg::new_leaf(y));
    Node* s = own(mg::mul(a, b));
    Node* t = own(mg::add(s, s));
    Node* root = own(mg::mul(t, s));  // (s + s) * s == 2 (ab)**2
    const std::vector<Node*> order = topo(root);
    CHECK(order == (std::vector<Node*>{a, b, s, t, root}));
    CHECK_STATUS(mg::backward(root), Status::ok);
    CHECK_SAME(root->data, 2.0 * (x * y) * (x * y));
    CHECK_SAME(s->grad, 4.0 * x * y);      // dL/ds == 4s
    CHECK_SAME(a->grad, 4.0 * x * y * y);  // dL/da == 4ab**2
    CHECK_SAME(b->grad, 4.0 * x * x * y);  // dL/db == 4a**2 b
}

TEST(topological_order_matches_build_topo_on_random_graphs) {
    std::uint64_t state = 0x9e3779b97f4a7c15u;
    auto next = [&state](std::size_t bound) {  // a small LCG: the same graph on every run
        state = state * 6364136223846793005u + 1442695040888963407u;
        return static_cast<std::size_t>((state >> 33) % bound);
    };
    Owned own;
    std::vector<Node*> pool;
    for (int i = 0; i < 8; ++i) pool.push_back(own(mg::new_leaf(0.25 * i)));
    for (int i = 0; i < 400; ++i) {
        Node* a = pool[next(pool.size())];
        Node* b = pool[next(pool.size())];
        Node* n = nullptr;
        Status status = Status::ok;
        switch (next(7)) {
            case 0:
                n = mg::add(a, b);
                break;
            case 1:
                n = mg::mul(a, b);
                break;
            case 2:
                n = mg::relu(a);
                break;
            case 3:
                n = mg::tanh(a);
                break;
            case 4:
                n = mg::pow(a, 1.0, &status);
                break;
            default: {
                Node* kids[5];
                const std::size_t count = 1 + next(5);
                for (std::size_t k = 0; k < count; ++k) kids[k] = pool[next(pool.size())];
                n = mg::new_leaf(1.0);
                CHECK(mg::set_children(n, kids, count, false));
            }
        }
        CHECK_STATUS(status, Status::ok);
        REQUIRE(n != nullptr);
        pool.push_back(own(n));
    }
    for (std::size_t i = pool.size() - 40; i < pool.size(); ++i) {
        std::set<const Node*> visited;
        std::vector<Node*> expected;
        build_topo(pool[i], visited, expected);
        const std::vector<Node*> order = topo(pool[i]);
        CHECK(order == expected);
        CHECK(children_first_each_once(order));
    }
}

TEST(backward_stops_at_a_failing_log_rule) {
    Owned own;
    Node* u = own(mg::new_leaf(3.0));
    Node* v = own(mg::new_leaf(5.0));
    Node* x = own(mg::new_leaf(2.0));
    Status status;
    Node* m = own(mg::mul(u, v));
    Node* l = own(mg::log(x, &status));
    REQUIRE(l != nullptr);
    Node* root = own(mg::add(m, l));
    CHECK(topo(root) == (std::vector<Node*>{u, v, m, x, l, root}));
    x->data = 0.0;  // micrograd's (1 / self.data) now divides by zero
    CHECK_STATUS(mg::backward(root), Status::division_by_zero);
    // Reverse order: root (done), l (fails); m, v, u and x are never reached.
    CHECK_SAME(root->grad, 1.0);
    CHECK_SAME(m->grad, 1.0);
    CHECK_SAME(l->grad, 1.0);
    CHECK_SAME(x->grad, 0.0);
    CHECK_SAME(u->grad, 0.0);
    CHECK_SAME(v->grad, 0.0);
    x->data = -0.0;
    CHECK_STATUS(mg::backward(root), Status::division_by_zero);  // 1 / -0.0 raises too
    CHECK_SAME(m->grad, 2.0);
    x->data = 4.0;
    CHECK_STATUS(mg::backward(root), Status::ok);  // fixed: this pass runs to the end
    CHECK_SAME(m->grad, 3.0);
    CHECK_SAME(l->grad, 3.0);
    CHECK_SAME(x->grad, 3.0 / 4.0);
    CHECK_SAME(u->grad, 15.0);
    CHECK_SAME(v->grad, 9.0);
}

TEST(backward_stops_at_a_failing_pow_rule) {
    struct Case {
        double x, e;
        double later_x;  // the base's data when backward runs
        Status expected;
    };
    const Case cases[] = {
        {2.0, -1.0, 0.0, Status::zero_to_negative_power},  // 0.0 ** -2
        {4.0, 0.5, -4.0, Status::complex_power},           // (-4.0) ** -0.5
        {0.0, 0.5, 0.0, Status::zero_to_negative_power},   // Value(0) ** 0.5, as built
        {2.0, 2.0, 1e300, Status::ok},                     // 2 * 1e300 ** 1 is fine
        {2.0, 3.0, 1e300, Status::pow_out_of_range},       // 1e300 ** 2 overflows
    };
    for (const Case& c : cases) {
        Owned own;
        Node* a = own(mg::new_leaf(c.x));
        Node* w = own(mg::new_leaf(0.5));
        Status status;
        Node* p = own(mg::pow(a, c.e, &status));
        REQUIRE(p != nullptr);
        Node* root = own(mg::mul(p, w));
        a->data = c.later_x;
        CHECK_STATUS(mg::backward(root), c.expected);
        CHECK_SAME(p->grad, 0.5);  // the root's rule ran before
        CHECK_SAME(w->grad, p->data);
        if (c.expected != Status::ok) CHECK_SAME(a->grad, 0.0);
    }
}

TEST(backward_stops_at_a_failing_tanh_rule) {
    Owned own;
    Node* a = own(mg::new_leaf(0.5));
    Node* t = own(mg::tanh(a));
    Node* root = own(mg::mul_constant(t, 2.0));
    t->data = 1e200;  // micrograd's t**2 overflows
    CHECK_STATUS(mg::backward(root), Status::pow_out_of_range);
    CHECK_SAME(t->grad, 2.0);
    CHECK_SAME(a->grad, 0.0);
}

// ---------------------------------------------------------------------------------------------
// Ownership

TEST(retain_and_release_count_references) {
    Node* a = mg::new_leaf(1.0);
    Node* b = mg::new_leaf(2.0);
    Node* s = mg::add(a, b);
    CHECK_EQ(a->refs, 2);
    CHECK_EQ(b->refs, 2);
    CHECK_EQ(s->refs, 1);
    mg::retain(s);
    CHECK_EQ(s->refs, 2);
    mg::release(s);
    CHECK_EQ(s->refs, 1);
    Node* square = mg::mul(a, a);  // one reference per operand slot
    CHECK_EQ(a->refs, 4);
    Node* r = mg::relu(s);
    CHECK_EQ(s->refs, 2);
    mg::release(s);  // r still owns s, which still owns a and b
    CHECK_EQ(r->refs, 1);
    CHECK_SAME(kid(r, 0)->data, 3.0);
    CHECK_EQ(a->refs, 4);
    mg::release(r);  // frees r, then s
    CHECK_EQ(a->refs, 3);
    CHECK_EQ(b->refs, 1);
    mg::release(square);
    CHECK_EQ(a->refs, 1);
    Node* c = mg::mul_constant(a, 3.0);
    CHECK_EQ(kid(c, 1)->refs, 1);  // the constant belongs to its node alone
    mg::release(c);
    CHECK_EQ(a->refs, 1);
    mg::release(a);
    mg::release(b);
}

constexpr std::size_t kDepth = 1000000;

TEST(deep_chain_backpropagates_and_frees_node_by_node) {
    // chain[i] = chain[i-1] * c_i, or chain[i-1] + 0.25 on every third step; all held here.
    auto factor = [](std::size_t i) {
        return 1.0 + static_cast<double>(static_cast<int>(i % 5) - 2) * 0x1p-20;
    };
    auto is_add = [](std::size_t i) { return i % 3 == 0; };
    std::vector<Node*> chain;
    chain.reserve(kDepth + 1);
    chain.push_back(mg::new_leaf(0.75));
    for (std::size_t i = 1; i <= kDepth; ++i) {
        chain.push_back(is_add(i) ? mg::add_constant(chain.back(), 0.25)
                                  : mg::mul_constant(chain.back(), factor(i)));
    }
    double value = 0.75;
    for (std::size_t i = 1; i <= kDepth; ++i) value = is_add(i) ? value + 0.25 : value * factor(i);
    CHECK_SAME(chain.back()->data, value);

    CHECK_STATUS(mg::backward(chain.back()), Status::ok);
    // micrograd's rules in reverse order: x.grad += g (add) or x.grad += c * g (mul).
    std::vector<double> grads(kDepth + 1);
    grads[kDepth] = 1.0;
    for (std::size_t i = kDepth; i > 0; --i) {
        grads[i - 1] = 0.0 + (is_add(i) ? grads[i] : factor(i) * grads[i]);
    }
    std::size_t wrong_grad = kDepth + 1, wrong_constant_grad = kDepth + 1;
    for (std::size_t i = kDepth + 1; i-- > 0;) {
        if (chain[i]->grad != grads[i]) wrong_grad = i;
        if (i == 0) continue;
        const double constant_grad =
            is_add(i) ? 0.0 + grads[i] : 0.0 + chain[i - 1]->data * grads[i];
        if (kid(chain[i], 1)->grad != constant_grad) wrong_constant_grad = i;
    }
    CHECK_EQ(wrong_grad, kDepth + 1);  // the index of the first wrong grad, if any
    CHECK_EQ(wrong_constant_grad, kDepth + 1);
    CHECK_SAME(chain[0]->grad, grads[0]);

    // Root first: each release frees exactly one node (and its constant).
    std::size_t wrong_refs = kDepth + 1;
    for (std::size_t i = kDepth + 1; i-- > 0;) {
        if (chain[i]->refs != 1) wrong_refs = i;
        mg::release(chain[i]);
    }
    CHECK_EQ(wrong_refs, kDepth + 1);
}

TEST(deep_chain_is_freed_from_its_root) {
    // exp, log, relu and ** 1.0 in turn, keeping only the leaf and the newest node.
    Node* leaf = mg::new_leaf(0.5);
    Node* node = leaf;
    for (std::size_t i = 1; i <= kDepth; ++i) {
        Status status = Status::ok;
        Node* next = nullptr;
        switch (i % 4) {
            case 1:
                next = mg::exp(node, &status);
                break;
            case 2:
                next = mg::log(node, &status);
                break;
            case 3:
                next = mg::relu(node);
                break;
            default:
                next = mg::pow(node, 1.0, &status);
        }
        REQUIRE(next != nullptr);
        if (node != leaf) mg::release(node);
        node = next;
    }
    Node* root = node;
    CHECK_EQ(leaf->refs, 2);

    std::vector<double> values(kDepth + 1);  // the forward pass over plain doubles
    values[0] = 0.5;
    for (std::size_t i = 1; i <= kDepth; ++i) {
        const double x = values[i - 1];
        switch (i % 4) {
            case 1:
                values[i] = std::exp(x);
                break;
            case 2:
                values[i] = std::log(x);
                break;
            case 3:
                values[i] = x < 0 ? 0.0 : x;
                break;
            default:
                values[i] = x;  // x ** 1 == x
        }
    }
    CHECK_SAME(root->data, values[kDepth]);

    CHECK_STATUS(mg::backward(root), Status::ok);
    double g = 1.0;  // micrograd's rules, root to leaf
    for (std::size_t i = kDepth; i > 0; --i) {
        switch (i % 4) {
            case 1:
                g = 0.0 + values[i] * g;  // exp: out.data * out.grad
                break;
            case 2:
                g = 0.0 + (1.0 / values[i - 1]) * g;  // log: (1 / self.data) * out.grad
                break;
            case 3:
                g = 0.0 + (values[i] > 0 ? 1.0 : 0.0) * g;  // relu: (out.data > 0) * out.grad
                break;
            default:
                g = 0.0 + (1.0 * 1.0) * g;  // ** 1: (1 * x ** 0) * out.grad
        }
    }
    CHECK_SAME(leaf->grad, g);

    mg::release(root);  // frees the whole chain in one call
    CHECK_EQ(leaf->refs, 1);
    mg::release(leaf);
}

TEST(deep_chain_of_custom_nodes_with_three_children) {
    Node* u = mg::new_leaf(-1.0);
    Node* v = mg::new_leaf(-2.0);
    Node* first = mg::new_leaf(0.0);
    Node* node = first;
    for (std::size_t i = 1; i <= kDepth; ++i) {
        Node* next = mg::new_leaf(static_cast<double>(i));
        Node* kids[3] = {u, node, v};
        CHECK(mg::set_children(next, kids, 3, false));
        mg::release(node);
        node = next;
    }
    Node* root = node;
    CHECK_EQ(u->refs, kDepth + 1);
    CHECK_EQ(mg::child_count(root), 3);

    // u and v are reached first from the bottom node: u, first, v, then the chain upwards.
    const std::vector<Node*> order = topo(root);
    CHECK_EQ(order.size(), kDepth + 3);
    if (order.size() == kDepth + 3) {
        CHECK(order[0] == u && order[2] == v && order[kDepth + 2] == root);
        CHECK(order[1] == kid(order[3], 1));
        CHECK_SAME(order[1]->data, 0.0);
        std::size_t wrong = 0;
        for (std::size_t i = 3; i < order.size(); ++i) {
            if (order[i]->data != static_cast<double>(i - 2)) wrong = i;
        }
        CHECK_EQ(wrong, 0);
    }
    CHECK_STATUS(mg::backward(root), Status::ok);  // custom nodes have no rule of their own
    CHECK_SAME(root->grad, 1.0);
    CHECK_SAME(u->grad, 0.0);

    mg::release(root);
    CHECK_EQ(u->refs, 1);
    CHECK_EQ(v->refs, 1);
    mg::release(u);
    mg::release(v);
}

TEST(set_children_with_0_1_2_and_5_children) {
    Owned own;
    Node* k[5];
    for (int i = 0; i < 5; ++i) k[i] = own(mg::new_leaf(10.0 + i));
    Node* n = own(mg::new_leaf(7.0));
    auto refs_are = [&k](std::uint32_t r0, std::uint32_t r1, std::uint32_t r2, std::uint32_t r3,
                         std::uint32_t r4) {
        return k[0]->refs == r0 && k[1]->refs == r1 && k[2]->refs == r2 && k[3]->refs == r3 &&
               k[4]->refs == r4;
    };

    CHECK(mg::set_children(n, k, 0, false));
    CHECK(n->op == Op::leaf);
    CHECK_EQ(mg::child_count(n), 0);

    CHECK(mg::set_children(n, k, 1, false));
    CHECK(n->op == Op::custom);
    CHECK_EQ(mg::child_count(n), 1);
    CHECK(kid(n, 0) == k[0]);
    CHECK(refs_are(2, 1, 1, 1, 1));

    CHECK(mg::set_children(n, k, 2, false));
    CHECK_EQ(mg::child_count(n), 2);
    CHECK(kid(n, 0) == k[0] && kid(n, 1) == k[1]);
    CHECK(refs_are(2, 2, 1, 1, 1));

    CHECK(mg::set_children(n, k, 5, true));
    CHECK_EQ(mg::child_count(n), 5);  // more than fit in the node itself
    for (std::size_t i = 0; i < 5; ++i) CHECK(kid(n, i) == k[i]);
    CHECK(refs_are(2, 2, 2, 2, 2));
    CHECK_SAME(n->data, 7.0);
    CHECK(topo(n) == (std::vector<Node*>{k[0], k[1], k[2], k[3], k[4], n}));

    Node* reversed[5] = {k[4], k[3], k[2], k[1], k[0]};  // five to five
    CHECK(mg::set_children(n, reversed, 5, true));
    for (std::size_t i = 0; i < 5; ++i) CHECK(kid(n, i) == k[4 - i]);
    CHECK(refs_are(2, 2, 2, 2, 2));

    Node* repeated[4] = {k[2], k[2], k[3], k[2]};
    CHECK(mg::set_children(n, repeated, 4, true));
    CHECK(refs_are(1, 1, 4, 2, 1));
    CHECK(topo(n) == (std::vector<Node*>{k[2], k[3], n}));  // each node once

    CHECK(mg::set_children(n, k + 3, 2, true));  // five to two
    CHECK_EQ(mg::child_count(n), 2);
    CHECK(kid(n, 0) == k[3] && kid(n, 1) == k[4]);
    CHECK(refs_are(1, 1, 1, 2, 2));

    CHECK(mg::set_children(n, k + 3, 2, true));  // the same children again
    CHECK(refs_are(1, 1, 1, 2, 2));

    CHECK_STATUS(mg::backward(n), Status::ok);  // no rule: the children keep their grads
    CHECK_SAME(k[3]->grad, 0.0);

    CHECK(mg::set_children(n, nullptr, 0, true));  // back to a leaf
    CHECK(n->op == Op::leaf);
    CHECK_EQ(mg::child_count(n), 0);
    CHECK(refs_are(1, 1, 1, 1, 1));
}

TEST(set_children_frees_replaced_children_and_keeps_reused_ones) {
    Owned own;
    Node* a = own(mg::new_leaf(1.0));
    Node* n = own(mg::new_leaf(0.0));
    Node* only_owned_by_n = mg::tanh(a);
    CHECK(mg::set_children(n, &only_owned_by_n, 1, false));
    mg::release(only_owned_by_n);
    CHECK_EQ(only_owned_by_n->refs, 1);
    CHECK_EQ(a->refs, 2);
    // Set to the very child it already has, whose only owner it is: must not free it.
    CHECK(mg::set_children(n, &only_owned_by_n, 1, true));
    CHECK_EQ(only_owned_by_n->refs, 1);
    CHECK_SAME(kid(n, 0)->data, std::tanh(1.0));
    // Replaced: the old child is freed, and releases a.
    CHECK(mg::set_children(n, &a, 1, true));
    CHECK_EQ(a->refs, 2);

    // A built-in node can be made custom: its operands are released.
    Node* b = own(mg::new_leaf(2.0));
    Status status;
    Node* p = own(mg::pow(b, 3.0, &status));
    REQUIRE(p != nullptr);
    CHECK_EQ(b->refs, 2);
    Node* kids[3] = {a, b, a};
    CHECK(mg::set_children(p, kids, 3, true));
    CHECK(p->op == Op::custom);
    CHECK_EQ(b->refs, 2);
    CHECK_EQ(a->refs, 4);
    CHECK(mg::set_children(p, kids, 0, true));
    CHECK_EQ(b->refs, 1);
    CHECK_EQ(a->refs, 2);
}

TEST(set_children_refuses_a_cycle) {
    Owned own;
    Node* a = own(mg::new_leaf(1.0));
    Node* x = own(mg::new_leaf(2.0));
    Node* y = own(mg::new_leaf(3.0));
    Node* b = own(mg::add(a, x));
    Node* c = own(mg::mul(b, y));
    Node* d = own(mg::new_leaf(4.0));
    Node* kids[3] = {y, d, c};

    CHECK(!mg::set_children(a, &c, 1, true));  // a would be its own grandchild
    CHECK(!mg::set_children(a, &a, 1, true));  // or its own child
    CHECK(!mg::set_children(a, kids, 3, true));
    CHECK(!mg::set_children(b, &c, 1, true));
    CHECK(a->op == Op::leaf);
    CHECK_EQ(mg::child_count(a), 0);
    CHECK(kid(b, 0) == a && kid(b, 1) == x);
    CHECK_EQ(c->refs, 1);
    CHECK_EQ(y->refs, 2);
    CHECK_EQ(d->refs, 1);

    CHECK(!mg::set_children(d, kids, 2, true));  // y, d: d under itself
    CHECK(!mg::set_children(d, kids + 1, 1, true));
    CHECK(d->op == Op::leaf);
    Node* e = own(mg::new_leaf(5.0));
    CHECK(mg::set_children(e, kids, 3, true));  // no cycle: accepted
    CHECK_EQ(c->refs, 2);
}

TEST(clone_needs_as_many_children_as_the_op_has) {
    Owned own;
    Node* a = own(mg::new_leaf(2.0));
    Node* b = own(mg::new_leaf(-3.0));
    Node* c = own(mg::new_leaf(0.5));
    Node* k[5];
    for (int i = 0; i < 5; ++i) k[i] = own(mg::new_leaf(1.0 + i));
    Status status;
    Node* custom = own(mg::new_leaf(4.0));
    Node* abc[3] = {a, b, c};
    CHECK(mg::set_children(custom, abc, 3, false));
    struct Case {
        Node* node;
        std::size_t min_children, max_children;
    };
    const Case cases[] = {
        {own(mg::new_leaf(1.0)), 0, 0},
        {own(mg::add(a, b)), 2, 2},
        {own(mg::mul(a, b)), 2, 2},
        {own(mg::pow(a, 3.0, &status)), 1, 1},
        {own(mg::relu(b)), 1, 1},
        {own(mg::tanh(a)), 1, 1},
        {own(mg::exp(a, &status)), 1, 1},
        {own(mg::log(c, &status)), 1, 1},
        {custom, 1, 5},
    };
    for (const Case& op : cases) {
        REQUIRE(op.node != nullptr);
        op.node->grad = -0.125;
        if (op.node->op == Op::pow) op.node->flags |= mg::exponent_is_int;
        for (std::size_t count = 0; count <= 5; ++count) {
            Node* copy = mg::clone(op.node, k, count);
            if (count < op.min_children || count > op.max_children) {
                CHECK(copy == nullptr);
                CHECK_EQ(k[0]->refs, 1);
                continue;
            }
            REQUIRE(copy != nullptr);
            CHECK(copy != op.node);
            CHECK(copy->op == op.node->op);
            CHECK_SAME(copy->data, op.node->data);
            CHECK_SAME(copy->grad, -0.125);
            CHECK_EQ(copy->refs, 1);
            CHECK(copy->handle == nullptr);
            CHECK_EQ(mg::child_count(copy), count);
            for (std::size_t i = 0; i < count; ++i) CHECK(kid(copy, i) == k[i]);
            if (count > 0) CHECK_EQ(k[0]->refs, 2);
            if (op.node->op == Op::pow) {
                CHECK_SAME(copy->operands.pow.exponent, 3.0);
                CHECK((copy->flags & mg::exponent_is_int) != 0);
            }
            mg::release(copy);
            CHECK_EQ(k[0]->refs, 1);
        }
    }
    // A clone computes with its new operands: d(k1 * k2)/dk1 == k2.
    Node* copy = own(mg::clone(cases[2].node, k + 1, 2));
    REQUIRE(copy != nullptr);
    copy->grad = 0.0;
    CHECK_STATUS(mg::backward(copy), Status::ok);
    CHECK_SAME(k[1]->grad, k[2]->data);
    CHECK_SAME(k[2]->grad, k[1]->data);
    CHECK_SAME(a->grad, 0.0);
}

// ---------------------------------------------------------------------------------------------
// Hooks

// Builds a graph with every op and a few custom nodes, runs backward twice and frees it all.
// Returns how many of its nodes had a handle.
std::size_t exercise_engine() {
    Owned own;
    Status status;
    Node* a = own(mg::new_leaf(0.5));
    Node* b = own(mg::new_leaf(-1.5));
    Node* s = own(mg::add(a, b));
    Node* p = own(mg::mul(s, a));
    Node* q = own(mg::pow(p, -2.0, &status));
    Node* r = own(mg::relu(q));
    Node* t = own(mg::tanh(r));
    Node* e = own(mg::exp(t, &status));
    Node* l = own(mg::log(e, &status));
    Node* c = own(mg::add_constant(l, 1.0));
    Node* m = own(mg::mul_constant(c, 2.0));
    Node* kids[5] = {a, m, s, m, b};
    Node* custom = own(mg::new_leaf(3.0));
    mg::set_children(custom, kids, 5, true);
    Node* copy = own(mg::clone(m, kids + 1, 2));
    Node* root = own(mg::add(custom, copy));
    mg::set_children(custom, kids, 2, true);
    mg::backward(root);
    mg::backward(root);
    Node* temporary = mg::mul(root, root);
    mg::retain(temporary);
    mg::release(temporary);
    mg::release(temporary);
    std::size_t with_handle = 0;
    for (Node* n : topo(root)) with_handle += n->handle != nullptr;
    return with_handle;
}

TEST(hooks_are_never_called_without_handles) {
    // Left null, as in pure C++ use: calling any of them would crash.
    CHECK(mg::hooks.retain_handle == nullptr);
    CHECK(mg::hooks.release_handle == nullptr);
    CHECK(mg::hooks.run_python_backward == nullptr);
    CHECK_EQ(exercise_engine(), 0);
    HooksScope scope;
    install_counting_hooks();
    CHECK_EQ(exercise_engine(), 0);
    CHECK_EQ(hook_calls.retain, 0);
    CHECK_EQ(hook_calls.release, 0);
    CHECK_EQ(hook_calls.python_backward, 0);
}

TEST(a_node_its_object_owns_counts_references_through_the_hooks) {
    HooksScope scope;
    install_counting_hooks();
    Node* a = mg::new_leaf(1.0);
    Node* b = mg::new_leaf(2.0);
    std::intptr_t python_object = 0;  // stands for the Value that owns a
    a->handle = &python_object;
    a->flags |= mg::owned_by_object;
    mg::retain(a);
    CHECK_EQ(hook_calls.retain, 1);
    CHECK(hook_calls.last_handle == &python_object);
    mg::release(a);
    CHECK_EQ(hook_calls.release, 1);
    CHECK_EQ(a->refs, 1);
    Node* s = mg::add(a, b);  // retains a through its handle, b by count
    CHECK_EQ(hook_calls.retain, 2);
    CHECK_EQ(a->refs, 1);
    CHECK_EQ(b->refs, 2);
    mg::release(s);
    CHECK_EQ(hook_calls.release, 2);
    CHECK_EQ(b->refs, 1);
    a->handle = nullptr;
    a->flags &= static_cast<std::uint8_t>(~mg::owned_by_object);
    mg::release(a);
    mg::release(b);
    CHECK_EQ(hook_calls.retain, 2);
    CHECK_EQ(hook_calls.release, 2);
}

TEST(a_node_that_shares_its_object_counts_references_itself) {
    HooksScope scope;
    install_counting_hooks();
    Node* a = mg::new_leaf(1.0);  // the reference of the object that shares it
    int python_object = 0;
    a->handle = &python_object;
    Node* s = mg::add(a, a);
    CHECK_EQ(a->refs, 3);
    a->handle = nullptr;  // the object goes: the node lives on in s
    mg::release(a);
    CHECK_EQ(a->refs, 2);
    mg::release(s);
    CHECK_EQ(hook_calls.retain, 0);
    CHECK_EQ(hook_calls.release, 0);
}

// Note [Counts in place]: the hooks see only the release that would take the count to zero.
TEST(counts_in_place_call_the_hooks_for_the_last_release_only) {
    HooksScope scope;
    install_counting_hooks();
    mg::hooks.counts_in_place = true;
    std::intptr_t python_object = 1;  // stands for the Value that owns a: its count comes first
    Node* a = mg::new_leaf(1.0);
    a->handle = &python_object;
    a->flags |= mg::owned_by_object;
    Node* s = mg::add(a, a);
    Node* t = mg::mul_constant(a, 3.0);
    CHECK_EQ(python_object, 4);
    mg::release(s);
    CHECK_EQ(python_object, 2);
    mg::release(t);
    CHECK_EQ(python_object, 1);
    CHECK_EQ(hook_calls.retain, 0);
    CHECK_EQ(hook_calls.release, 0);
    mg::release(a);  // the last reference: the binding's hook frees the object
    CHECK_EQ(hook_calls.release, 1);
    CHECK(hook_calls.last_handle == &python_object);
    CHECK_EQ(python_object, 1);
    a->handle = nullptr;
    a->flags &= static_cast<std::uint8_t>(~mg::owned_by_object);
    mg::release(a);
}

TEST(python_backward_replaces_the_builtin_rule) {
    HooksScope scope;
    install_counting_hooks();
    Owned own;
    Node* a = own(mg::new_leaf(3.0));
    Node* b = own(mg::new_leaf(4.0));
    Node* p = own(mg::mul(a, b));
    p->flags |= mg::has_python_backward;
    CHECK_STATUS(mg::backward(p), Status::ok);
    CHECK_EQ(hook_calls.python_backward, 1);
    CHECK_SAME(a->grad, 0.0);
    CHECK_STATUS(mg::apply_builtin_rule(p), Status::ok);  // ignores the flag
    CHECK_SAME(a->grad, 4.0);
    CHECK_EQ(hook_calls.python_backward, 1);

    mg::hooks.run_python_backward = [](Node*) { return Status::callback_failed; };
    Node* c = own(mg::new_leaf(5.0));
    Node* root = own(mg::add(p, c));
    CHECK_STATUS(mg::backward(root), Status::callback_failed);
    CHECK_SAME(p->grad, 2.0);
    CHECK_SAME(c->grad, 1.0);
    CHECK_SAME(a->grad, 4.0);
    p->flags = 0;
}

// What the backward hooks below saw.
Node* hook_child = nullptr;
std::uint32_t hook_child_refs = 0;

TEST(backward_keeps_nodes_alive_while_a_python_backward_runs) {
    HooksScope scope;
    // Like a _backward that drops the node's children: their last reference goes away while
    // they are still to be visited.
    mg::hooks.run_python_backward = [](Node* n) {
        hook_child = kid(n, 0);
        hook_child_refs = hook_child->refs;
        mg::set_children(n, nullptr, 0, false);
        return Status::ok;
    };
    Node* x = mg::new_leaf(0.5);
    Node* y = mg::tanh(x);
    Node* root = mg::new_leaf(0.0);
    CHECK(mg::set_children(root, &y, 1, false));
    mg::release(y);  // root is y's only owner
    root->flags |= mg::has_python_backward;
    CHECK_STATUS(mg::backward(root), Status::ok);
    CHECK(hook_child == y);
    CHECK_EQ(hook_child_refs, 2);  // root and the pass's pin
    CHECK(root->op == Op::leaf);
    CHECK_EQ(x->refs, 1);  // y was freed when the pass ended
    CHECK_EQ(root->refs, 1);
    CHECK_SAME(x->grad, 0.0);
    mg::release(root);
    mg::release(x);
}

TEST(backward_runs_inside_a_python_backward) {
    HooksScope scope;
    // A _backward that first runs backward() on its child, then passes 2 * its grad down.
    mg::hooks.run_python_backward = [](Node* n) {
        Node* child = kid(n, 0);
        const Status status = mg::backward(child);
        child->grad += 2.0 * n->grad;
        return status;
    };
    Owned own;
    const double x = 1.5, y = -2.0;
    Node* a = own(mg::new_leaf(x));
    Node* b = own(mg::new_leaf(y));
    Node* m = own(mg::mul(a, b));
    Node* root = own(mg::new_leaf(0.0));
    CHECK(mg::set_children(root, &m, 1, false));
    root->flags |= mg::has_python_backward;
    CHECK_STATUS(mg::backward(root), Status::ok);
    // Inner pass: m.grad = 1, a.grad = b, b.grad = a. Then m.grad = 3 and the outer pass adds
    // 3b and 3a.
    CHECK_SAME(m->grad, 3.0);
    CHECK_SAME(a->grad, 4.0 * y);
    CHECK_SAME(b->grad, 4.0 * x);
    // The engine's shared state is free again: a plain pass works as before.
    root->flags = 0;
    CHECK_STATUS(mg::backward(m), Status::ok);
    CHECK_SAME(a->grad, 5.0 * y);
}

// ---------------------------------------------------------------------------------------------
// Programs

// x, w; m1 = w*x; m2 = x*x; s = m1 + m2; t = s + m1; root = t*w. m1 has two parents, so its
// grad and x's sum terms from both; the program runs its own order.
struct SharedGraph {
    Node *x, *w, *m1, *m2, *s, *t, *root;
    SharedGraph(double xv, double wv) {
        x = mg::new_leaf(xv);
        w = mg::new_leaf(wv);
        m1 = mg::mul(w, x);
        m2 = mg::mul(x, x);
        s = mg::add(m1, m2);
        t = mg::add(s, m1);
        root = mg::mul(t, w);
    }
    ~SharedGraph() {
        for (Node* n : {root, t, s, m2, m1, w, x}) mg::release(n);
    }
};

// The program of root's graph, which has no custom node.
mg::Program* compiled(Node* root) {
    Node* refused = nullptr;
    mg::Program* program = mg::Program::compile(root, &refused);
    CHECK(program && !refused);
    return program;
}

TEST(program_replays_with_shared_nodes) {
    SharedGraph g(2.0, 3.0);
    mg::Program* program = compiled(g.root);
    REQUIRE(program);
    CHECK_EQ(program->size(), std::size_t{7});
    CHECK(program->root() == g.root);
    CHECK_STATUS(program->backward(), Status::ok);
    mg::settle();
    // t.grad = w; s.grad = 3; m1.grad = 3 + 3; m2.grad = 3; x.grad = 2*3 + 2*3 + w*6;
    // w.grad = t + x*6
    CHECK_SAME(g.t->grad, 3.0);
    CHECK_SAME(g.m1->grad, 6.0);
    CHECK_SAME(g.x->grad, 30.0);
    CHECK_SAME(g.w->grad, 28.0);

    g.x->data = -1.0;
    g.w->data = 0.5;
    g.x->grad = g.w->grad = 0.0;
    CHECK_STATUS(program->forward(), Status::ok);
    CHECK_STATUS(program->backward(), Status::ok);
    // Nodes without a Python object show the replay once settled (Note [Deferred stores]).
    CHECK_SAME(g.m1->data, 6.0);
    CHECK(mg::unsettled == program);
    mg::settle();
    CHECK(mg::unsettled == nullptr);
    // m1 = -0.5, m2 = 1, s = 0.5, t = 0, root = 0; t.grad = 0.5, m1.grad = 1, m2.grad = 0.5,
    // x.grad = -0.5 - 0.5 + 0.5*1, w.grad = t + x*1
    CHECK_SAME(g.m1->data, -0.5);
    CHECK_SAME(g.s->data, 0.5);
    CHECK_SAME(g.root->data, 0.0);
    CHECK_SAME(g.t->grad, 0.5);
    CHECK_SAME(g.m1->grad, 1.0);
    CHECK_SAME(g.m2->grad, 0.5);
    CHECK_SAME(g.x->grad, -0.5);
    CHECK_SAME(g.w->grad, -1.0);
    delete program;
}

// sigmoid comes after custom in the op table: the schedule sorts its runs into a bucket of its
// own (Note [Op table]: op_count sizes them), and the replay equals backward() bit for bit.
TEST(a_replay_runs_an_op_listed_after_custom) {
    static_assert(static_cast<std::size_t>(Op::sigmoid) > static_cast<std::size_t>(Op::custom));
    Owned own;
    Node* w = own(mg::new_leaf(0.75));
    std::vector<Node*> xs;
    Node* root = nullptr;
    for (int i = 0; i < 16; ++i) {
        Node* x = own(mg::new_leaf(0.25 * i - 2.0));
        xs.push_back(x);
        Status status = Status::callback_failed;
        Node* s = own(mg::unary_node(Op::sigmoid, own(mg::mul(x, w)), &status));
        CHECK_STATUS(status, Status::ok);
        root = root ? own(mg::add(root, s)) : s;
    }
    CHECK_STATUS(mg::backward(root), Status::ok);
    std::vector<double> want;
    for (Node* x : xs) want.push_back(x->grad);
    const double want_w = w->grad;
    mg::Program* program = compiled(root);
    REQUIRE(program);
    program->zero_grad();
    CHECK_STATUS(program->forward(), Status::ok);
    CHECK_STATUS(program->backward(), Status::ok);
    delete program;  // stores every grad
    for (std::size_t i = 0; i < xs.size(); ++i) CHECK_SAME(xs[i]->grad, want[i]);
    CHECK_SAME(w->grad, want_w);
}

TEST(a_dropped_program_stores_its_results) {
    SharedGraph g(2.0, 3.0);
    mg::Program* program = compiled(g.root);
    REQUIRE(program);
    g.x->data = 1.0;
    CHECK_STATUS(program->forward(), Status::ok);
    delete program;
    CHECK(mg::unsettled == nullptr);
    CHECK_SAME(g.m1->data, 3.0);
    CHECK_SAME(g.t->data, 7.0);
    CHECK_SAME(g.root->data, 21.0);
}

TEST(walking_the_graph_settles_a_program) {
    SharedGraph g(2.0, 3.0);
    mg::Program* program = compiled(g.root);
    REQUIRE(program);
    g.w->data = 1.0;
    CHECK_STATUS(program->forward(), Status::ok);
    // backward() from an inner node walks the graph: it sees the replayed numbers
    CHECK_STATUS(mg::backward(g.s), Status::ok);
    CHECK(mg::unsettled == nullptr);
    CHECK_SAME(g.s->data, 6.0);  // m1 = 2, m2 = 4
    CHECK_SAME(g.m1->grad, 1.0);
    CHECK_SAME(g.x->grad, 1.0 + 2.0 + 2.0);  // w*1 from m1, x*1 twice from m2
    delete program;
}

TEST(a_forward_that_fails_keeps_the_nodes_after_the_failing_one) {
    Node* x = mg::new_leaf(2.0);
    Node* y = mg::new_leaf(3.0);
    Status status = Status::ok;
    Node* lg = mg::log(x, &status);
    Node* yy = mg::mul(y, y);
    Node* root = mg::add(lg, yy);  // micrograd's order: x, log, y, y*y, +
    mg::Program* program = compiled(root);
    REQUIRE(program);
    x->data = -1.0;
    y->data = 4.0;
    CHECK_STATUS(program->forward(), Status::math_domain_error);
    CHECK(mg::unsettled == nullptr);  // a failure stores everything at once
    CHECK_SAME(yy->data, 9.0);        // after the failing node: untouched
    CHECK_SAME(root->data, std::log(2.0) + 9.0);
    x->data = 1.0;
    CHECK_STATUS(program->forward(), Status::ok);
    mg::settle();
    CHECK_SAME(lg->data, 0.0);
    CHECK_SAME(yy->data, 16.0);
    CHECK_SAME(root->data, 16.0);
    delete program;
    for (Node* n : {root, yy, lg, y, x}) mg::release(n);
}

TEST(a_forward_fails_at_the_first_failing_node_made) {
    // Note [Creation order]: log(x) is made before exp(y), but comes after it in the
    // topological order of exp(y) + log(x). A rebuild fails at the log, so must the replay.
    Node* x = mg::new_leaf(1.0);
    Node* y = mg::new_leaf(1.0);
    Status status = Status::ok;
    Node* lg = mg::log(x, &status);
    Node* ex = mg::exp(y, &status);
    Node* root = mg::add(ex, lg);
    mg::Program* program = compiled(root);
    REQUIRE(program);
    x->data = 0.0;
    y->data = 1000.0;
    CHECK_STATUS(program->forward(), Status::math_domain_error);
    CHECK_SAME(ex->data, std::exp(1.0));  // made after the failing node: untouched
    y->data = 2.0;
    x->data = -1.0;  // now the exp succeeds, made after the log that fails
    CHECK_STATUS(program->forward(), Status::math_domain_error);
    CHECK_SAME(ex->data, std::exp(1.0));
    x->data = 1.0;
    CHECK_STATUS(program->forward(), Status::ok);
    mg::settle();
    CHECK_SAME(ex->data, std::exp(2.0));
    CHECK_SAME(root->data, std::exp(2.0));
    delete program;
    for (Node* n : {root, ex, lg, y, x}) mg::release(n);
}

TEST(a_forward_fails_in_topological_order_where_the_stamps_do_not_give_one) {
    // Note [Creation order]: over more than 2**32 creations, a node's stamp may make it look
    // older than its operand. The replay then fails where the topological order does: at the
    // exp (before the log in exp(y * y) + log(x)), though the log looks made first.
    const std::uint32_t saved = mg::nodes_made;
    Status status = Status::ok;
    Node* x = mg::new_leaf(1.0);
    Node* y = mg::new_leaf(1.0);
    mg::nodes_made = 3000;
    Node* yy = mg::mul(y, y);
    mg::nodes_made = 2000;
    Node* ex = mg::exp(yy, &status);  // looks older than yy
    mg::nodes_made = 1000;
    Node* lg = mg::log(x, &status);
    mg::nodes_made = 4000;
    Node* root = mg::add(ex, lg);
    mg::nodes_made = saved;
    CHECK_STATUS(status, Status::ok);
    mg::Program* program = compiled(root);
    REQUIRE(program);
    x->data = 0.0;    // the log fails
    y->data = 100.0;  // and the exp overflows
    CHECK_STATUS(program->forward(), Status::math_range_error);
    CHECK_SAME(yy->data, 10000.0);  // before the exp: updated
    CHECK_SAME(lg->data, 0.0);      // after it: untouched
    CHECK_SAME(root->data, std::exp(1.0));
    delete program;
    for (Node* n : {root, lg, ex, yy, y, x}) mg::release(n);
}

TEST(a_pass_out_of_memory_before_its_redo_changes_nothing) {
    // The orders a failed pass is redone in are listed when one first fails (Note [Failed
    // passes]). Out of memory then, the pass throws std::bad_alloc having changed nothing, and
    // the next one fails where a rebuild does.
    Owned own;
    Status status = Status::ok;
    Node* x = own(mg::new_leaf(1.0));
    Node* y = own(mg::new_leaf(1.0));
    Node* lg = own(mg::log(x, &status));
    Node* ex = own(mg::exp(y, &status));
    Node* root = own(mg::add(ex, lg));
    CHECK_STATUS(status, Status::ok);
    mg::Program* program = compiled(root);
    REQUIRE(program);
    x->data = 0.0;     // the log, made first, fails
    y->data = 1000.0;  // and the exp overflows
    CHECK(runs_out_of_memory([&] { program->forward(); }));
    CHECK(mg::unsettled == nullptr);
    CHECK_SAME(ex->data, std::exp(1.0));
    CHECK_SAME(lg->data, 0.0);
    CHECK_SAME(root->data, std::exp(1.0));
    CHECK_STATUS(program->forward(), Status::math_domain_error);
    CHECK_SAME(ex->data, std::exp(1.0));  // made after the failing log: untouched
    delete program;

    // backward: the log's rule divides by x, now 0, so it fails for certain.
    Node* u = own(mg::new_leaf(3.0));
    Node* m = own(mg::mul(u, u));
    Node* sum = own(mg::add(m, lg));
    program = compiled(sum);
    REQUIRE(program);
    CHECK(runs_out_of_memory([&] { program->backward(); }));
    CHECK(mg::unsettled == nullptr);
    for (Node* n : {sum, m, lg, u, x}) CHECK_SAME(n->grad, 0.0);
    CHECK_STATUS(program->backward(), Status::division_by_zero);
    mg::settle();
    // Reverse topological order: sum, lg (fails); m and u are never reached.
    CHECK_SAME(sum->grad, 1.0);
    CHECK_SAME(lg->grad, 1.0);
    CHECK_SAME(m->grad, 1.0);
    CHECK_SAME(u->grad, 0.0);
    CHECK_SAME(x->grad, 0.0);
    delete program;
}

TEST(a_wide_graph_that_fails_replays_in_runs_and_fails_where_a_rebuild_does) {
    // Eight lanes, made one after the other: a = exp(x), b = log(a); then a tree of '+'. The
    // runs compute every exp before any log, so with lane 0's exp giving 0 (its log fails)
    // and lane 1's exp overflowing, the fast pass fails at lane 1's exp; the rebuild fails
    // first at lane 0's log, and so must the replay (Note [Failed passes]).
    constexpr int lanes = 8;
    Node *x[lanes], *a[lanes], *b[lanes];
    Status status = Status::ok;
    for (int i = 0; i < lanes; ++i) {
        x[i] = mg::new_leaf(1.0 + i);
        a[i] = mg::exp(x[i], &status);
        b[i] = mg::log(a[i], &status);
    }
    std::vector<Node*> sums(b, b + lanes), made;
    while (sums.size() > 1) {
        std::vector<Node*> next;
        for (std::size_t k = 0; k < sums.size(); k += 2)
            next.push_back(mg::add(sums[k], sums[k + 1]));
        made.insert(made.end(), next.begin(), next.end());
        sums.swap(next);
    }
    Node* root = sums[0];
    CHECK_STATUS(status, Status::ok);
    mg::Program* program = compiled(root);
    REQUIRE(program);
    CHECK_EQ(program->runs(), std::size_t{3});  // exp, log, then the levels of '+'
    CHECK_STATUS(program->forward(), Status::ok);
    mg::settle();
    const double root_before = root->data;
    x[0]->data = -1000.0;
    x[1]->data = 1000.0;
    x[2]->data = 0.5;
    CHECK_STATUS(program->forward(), Status::math_domain_error);
    CHECK(mg::unsettled == nullptr);
    CHECK_SAME(a[0]->data, 0.0);  // made before the failing log: updated
    CHECK_SAME(a[0]->grad, 0.0);
    CHECK_SAME(b[0]->data, std::log(std::exp(1.0)));  // the failing node and later: untouched
    CHECK_SAME(a[2]->data, std::exp(3.0));
    CHECK_SAME(root->data, root_before);
    x[0]->data = 1.0;  // now lane 1's exp is the first to fail
    CHECK_STATUS(program->forward(), Status::math_range_error);
    CHECK_SAME(b[0]->data, 1.0);
    CHECK_SAME(a[1]->data, std::exp(2.0));
    x[1]->data = 2.0;
    CHECK_STATUS(program->forward(), Status::ok);
    mg::settle();
    CHECK_SAME(a[2]->data, std::exp(0.5));
    CHECK_SAME(b[2]->data, std::log(std::exp(0.5)));
    delete program;
    mg::release(root);
    for (Node* n : made) {
        if (n != root) mg::release(n);
    }
    for (int i = 0; i < lanes; ++i) {
        for (Node* n : {b[i], a[i], x[i]}) mg::release(n);
    }
}

TEST(a_tanh_holding_a_huge_value_keeps_micrograds_order) {
    // Its rule squares the value it holds, which overflows: the replayed backward stops where
    // root.backward() stops, at the last tanh made (the first rule micrograd applies).
    Node* xs[3];
    Node* ts[3];
    for (int i = 0; i < 3; ++i) {
        xs[i] = mg::new_leaf(i + 1.0);
        ts[i] = mg::tanh(xs[i]);
        ts[i]->data = 1e200;
    }
    Node* partial = mg::add(ts[0], ts[1]);
    Node* root = mg::add(partial, ts[2]);
    mg::Program* program = compiled(root);
    REQUIRE(program);
    CHECK_STATUS(program->backward(), Status::pow_out_of_range);
    CHECK(mg::unsettled == nullptr);
    CHECK_SAME(ts[0]->grad, 0.0);
    CHECK_SAME(ts[1]->grad, 0.0);
    CHECK_SAME(ts[2]->grad, 1.0);
    delete program;
    for (Node* n : {root, partial}) mg::release(n);
    for (int i = 0; i < 3; ++i) {
        mg::release(ts[i]);
        mg::release(xs[i]);
    }
}

}  // namespace

int main(int argc, char** argv) {
    const char* filter = argc > 1 ? argv[1] : "";
    int passed = 0, failed = 0;
    for (const TestCase& test : registry()) {
        if (!std::strstr(test.name, filter)) continue;
        failed_checks = 0;
        test.run();
        std::printf("%s %s\n", failed_checks ? "FAIL" : "ok  ", test.name);
        std::fflush(stdout);  // a sanitizer may end the process before stdio flushes
        ++(failed_checks ? failed : passed);
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
