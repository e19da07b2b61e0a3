// Where nodes live: 64-byte slots in 256 KiB blocks, handed out in address order.
#pragma once

#include "engine.hpp"

namespace mg {

Node* allocate_node();
void free_node(Node* n);

}  // namespace mg
