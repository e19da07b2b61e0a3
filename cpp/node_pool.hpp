// Where nodes live: 64-byte slots in 256 KiB blocks, handed out in address order. Blocks that
// fall empty go back to the system beyond a small reserve (Note [Giving blocks back]).
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine.hpp"

namespace mg {

Node* allocate_node();

// Frees nodes, gathering those of the same 64 slots (4 KiB of one block) to write their bits and
// count once. A teardown frees its nodes mostly in runs within a few such spans (a layer's and
// the one below it, in turn), and a write to the block's header for each node made a chain of
// dependent loads and stores: with one write per span, dropping W2's graph took 18% less time,
// W5's 22%. The last four spans are gathered, each in the entry its address picks. The pool sees
// the frees at flush(), which must come before anything else uses it (before a call into Python)
// and comes at the latest when the freer goes. Sanitizer builds (one heap allocation per node)
// free each node at once.
#ifdef MICROGRAD_CPP_PLAIN_HEAP
void free_node(Node* n);
class NodeFreer {
  public:
    void free(Node* n) { free_node(n); }
    void flush() {}
};
#else
class NodeFreer {
  public:
    NodeFreer() = default;
    NodeFreer(const NodeFreer&) = delete;
    NodeFreer& operator=(const NodeFreer&) = delete;
    ~NodeFreer() { flush(); }
    void free(Node* n) {
        const auto address = reinterpret_cast<std::uintptr_t>(n);
        const std::uintptr_t span = address & ~span_mask;
        Entry& e = entries_[(span / span_bytes) % entry_count];
        if (span != e.span) {
            e.flush();
            e.span = span;
        }
        e.bits |= std::uint64_t{1} << ((address & span_mask) / slot_size);
    }
    void flush() {
        for (Entry& e : entries_) e.flush();
    }

  private:
    static constexpr std::uintptr_t slot_size = 64;  // the pool's slot
    static constexpr std::uintptr_t span_bytes = 64 * slot_size;
    static constexpr std::uintptr_t span_mask = span_bytes - 1;
    static constexpr std::size_t entry_count = 4;
    // Frees the slots whose bits are set among the 64 that begin at `span`.
    static void free_span(std::uintptr_t span, std::uint64_t bits);
    struct Entry {
        std::uintptr_t span = 0;
        std::uint64_t bits = 0;
        void flush() {
            if (bits) free_span(span, bits);
            bits = 0;
        }
    };
    Entry entries_[entry_count];
};
#endif

// Calls fn on every node allocated and not yet freed, in no particular order.
void for_each_node(void (*fn)(Node*));

struct PoolStats {
    std::size_t live_nodes;    // allocated and not yet freed
    std::size_t blocks;        // held now, empty ones included
    std::size_t empty_blocks;  // held with no node in them: the reserve
    std::uint64_t maps;        // blocks ever obtained from the system
    std::uint64_t releases;    // blocks ever given back
};
// Sanitizer builds (one heap allocation per node) report live nodes only, and no blocks.
PoolStats pool_stats();

}  // namespace mg
