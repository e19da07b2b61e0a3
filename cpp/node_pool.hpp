// Where nodes live: 64-byte slots in 256 KiB blocks, handed out in address order. Blocks that
// fall empty go back to the system beyond a small reserve (Note [Giving blocks back]).
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine.hpp"

namespace mg {

Node* allocate_node();
void free_node(Node* n);
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
