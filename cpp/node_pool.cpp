#include "node_pool.hpp"

#include <cstdint>
#include <cstdlib>
#include <new>
#include <unordered_set>
#ifdef _MSC_VER
#include <intrin.h>
#include <malloc.h>
#endif

namespace mg {

#ifdef MICROGRAD_CPP_PLAIN_HEAP

// Sanitizer builds: one heap allocation per node, so that every node's lifetime is checked.
namespace {
std::unordered_set<Node*> live;
}

Node* allocate_node() {
    auto* n = static_cast<Node*>(::operator new(sizeof(Node)));
    try {
        live.insert(n);
    } catch (...) {
        ::operator delete(n);
        throw;
    }
    return n;
}
void free_node(Node* n) {
    live.erase(n);
    ::operator delete(n);
}
void for_each_node(void (*fn)(Node*)) {
    for (Node* n : live) fn(n);
}

#else

// Note [Address-ordered allocation]
// Graphs are built and walked in creation order, so a node's neighbours in time should be its
// neighbours in memory. A plain free list loses that after the first graph is freed: it hands
// slots back in teardown order. Instead each block keeps a bitmap of its free slots and hands
// out the lowest one, so a new graph fills memory in the order it is built, whatever was freed
// before. Blocks are aligned to their size, so a node finds its block by masking its address.
namespace {

constexpr std::size_t slot_bytes = 64;
constexpr std::size_t block_bytes = std::size_t{1} << 18;
constexpr std::size_t slots_per_block = block_bytes / slot_bytes;
constexpr std::size_t bitmap_words = slots_per_block / 64;

struct Block {
    std::uint64_t free_bits[bitmap_words];  // bit set: slot free
    Block* next_with_space;                 // in the stack of blocks that have free slots
    Block* next;                            // in the list of every block
    std::uint32_t free_count;
    std::uint32_t first_word;  // no free slot before this word
    bool has_space_listed;
};
constexpr std::size_t header_slots = (sizeof(Block) + slot_bytes - 1) / slot_bytes;
static_assert(sizeof(Node) <= slot_bytes, "a node must fit its slot");
static_assert(header_slots < 64, "the header's slots are in the bitmap's first word");

Block* current = nullptr;      // where nodes are allocated now
Block* with_space = nullptr;   // other blocks with free slots, most recently freed into first
Block* every_block = nullptr;  // blocks are never given back

void* aligned_block() {
#ifdef _MSC_VER
    return _aligned_malloc(block_bytes, block_bytes);
#else
    return std::aligned_alloc(block_bytes, block_bytes);
#endif
}

std::uint32_t lowest_set_bit(std::uint64_t bits) {
#ifdef _MSC_VER
    unsigned long index;
    _BitScanForward64(&index, bits);
    return static_cast<std::uint32_t>(index);
#else
    return static_cast<std::uint32_t>(__builtin_ctzll(bits));
#endif
}

Block* new_block() {
    void* memory = aligned_block();
    if (!memory) throw std::bad_alloc();
    auto* b = static_cast<Block*>(memory);
    for (std::uint64_t& word : b->free_bits) word = ~std::uint64_t{0};
    for (std::size_t i = 0; i < header_slots; ++i) b->free_bits[0] &= ~(std::uint64_t{1} << i);
    b->next_with_space = nullptr;
    b->next = every_block;
    every_block = b;
    b->free_count = static_cast<std::uint32_t>(slots_per_block - header_slots);
    b->first_word = 0;
    b->has_space_listed = false;
    return b;
}

Block* block_of(Node* n) {
    return reinterpret_cast<Block*>(reinterpret_cast<std::uintptr_t>(n) & ~(block_bytes - 1));
}

}  // namespace

Node* allocate_node() {
    while (!current || current->free_count == 0) {
        if (with_space) {
            current = with_space;
            with_space = current->next_with_space;
            current->has_space_listed = false;
        } else {
            current = new_block();
        }
    }
    std::uint32_t w = current->first_word;
    while (current->free_bits[w] == 0) ++w;
    const std::uint64_t bits = current->free_bits[w];
    const std::uint32_t bit = lowest_set_bit(bits);
    current->free_bits[w] = bits & (bits - 1);
    current->first_word = w;
    --current->free_count;
    char* base = reinterpret_cast<char*>(current);
    return reinterpret_cast<Node*>(base + (std::size_t{w} * 64 + bit) * slot_bytes);
}

void free_node(Node* n) {
    Block* b = block_of(n);
    const std::size_t slot =
        (reinterpret_cast<std::uintptr_t>(n) - reinterpret_cast<std::uintptr_t>(b)) / slot_bytes;
    const auto w = static_cast<std::uint32_t>(slot / 64);
    b->free_bits[w] |= std::uint64_t{1} << (slot % 64);
    ++b->free_count;
    if (w < b->first_word) b->first_word = w;
    if (b != current && !b->has_space_listed) {
        b->has_space_listed = true;
        b->next_with_space = with_space;
        with_space = b;
    }
}

void for_each_node(void (*fn)(Node*)) {
    for (Block* b = every_block; b; b = b->next) {
        char* base = reinterpret_cast<char*>(b);
        for (std::size_t w = 0; w < bitmap_words; ++w) {
            std::uint64_t used = ~b->free_bits[w];
            if (w == 0) used &= ~((std::uint64_t{1} << header_slots) - 1);  // the header's
            for (; used; used &= used - 1) {
                const std::size_t slot = w * 64 + lowest_set_bit(used);
                fn(reinterpret_cast<Node*>(base + slot * slot_bytes));
            }
        }
    }
}

#endif

}  // namespace mg
