// Where nodes live: 64-byte slots in 256 KiB blocks, handed out in address order.
#pragma once

#include "engine.hpp"

namespace mg {

Node* allocate_node();
void free_node(Node* n);
// Calls fn on every node allocated and not yet freed, in no particular order.
void for_each_node(void (*fn)(Node*));

}  // namespace mg
