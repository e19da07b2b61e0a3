#include "node_pool.hpp"

#include <cstdint>
#include <cstdlib>
#include <new>
#include <unordered_set>
#ifdef _MSC_VER
#include <intrin.h>
#include <malloc.h>
#else
#include <sys/mman.h>
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
PoolStats pool_stats() { return {live.size(), 0, 0, 0, 0}; }

#else

// Note [Address-ordered allocation]
// Graphs are built and walked in creation order, so a node's neighbours in time should be its
// neighbours in memory. A plain free list loses that after the first graph is freed: it hands
// slots back in teardown order. Instead each block keeps a bitmap of its free slots and hands
// out the lowest one, so a new graph fills memory in the order it is built, whatever was freed
// before. Blocks are aligned to their size, so a node finds its block by masking its address.
//
// Note [Giving blocks back]
// A block whose last node is freed is unmapped, so that a big graph's memory goes back to the
// system when it is dropped, unless the pool is short of its reserve of empty blocks: a loop
// that drops and rebuilds a graph every step reuses the same blocks instead of mapping them
// again (and faulting their pages in: ~2 us a page here) each step. The pool's use goes in
// cycles: it grows while a graph is built, and shrinks by a quarter of its peak or more when a
// graph is dropped (by half, when the next step's graph is built before the last one goes). The
// reserve is the smaller of the peaks of blocks in use of this cycle and the last, between 2 and
// 256 MiB: what two steps in a row both needed. So a graph dropped after smaller ones leaves at
// most 2 MiB behind, while the second and later steps of a loop keep theirs; once the reserve
// shrinks, the empty blocks beyond it go back as soon as another block falls empty. Blocks are
// unmapped rather than madvise'd away: an unmapped block leaves the lists (for_each_node walks only
// the blocks held) and the address space too; both ways cost the same page faults when memory is
// needed again. A block is mapped on its own, aligned to its size (Note [Address-ordered
// allocation]).
namespace {

// The rare paths stay out of line, so that the common ones need no registers saved.
#if defined(_MSC_VER)
#define MG_OUT_OF_LINE __declspec(noinline)
#else
#define MG_OUT_OF_LINE __attribute__((noinline, cold))
#endif

constexpr std::size_t slot_bytes = 64;
constexpr std::size_t block_bytes = std::size_t{1} << 18;
constexpr std::size_t slots_per_block = block_bytes / slot_bytes;
constexpr std::size_t bitmap_words = slots_per_block / 64;
constexpr std::size_t fewest_reserved = (std::size_t{2} << 20) / block_bytes;
constexpr std::size_t most_reserved = (std::size_t{256} << 20) / block_bytes;

struct Block {
    std::uint64_t free_bits[bitmap_words];  // bit set: slot free
    Block* next_with_space;                 // in the list of blocks that have free slots
    Block* prev_with_space;
    Block* next;  // in the list of every block
    Block* prev;
    std::uint32_t free_count;
    std::uint32_t first_word;  // no free slot before this word
    bool has_space_listed;
};
constexpr std::size_t header_slots = (sizeof(Block) + slot_bytes - 1) / slot_bytes;
constexpr auto empty_free_count = static_cast<std::uint32_t>(slots_per_block - header_slots);
static_assert(sizeof(Node) <= slot_bytes, "a node must fit its slot");
static_assert(header_slots < 64, "the header's slots are in the bitmap's first word");

Block* current = nullptr;      // where nodes are allocated now
Block* with_space = nullptr;   // other blocks with free slots, most recently freed into first
Block* every_block = nullptr;  // every block held

std::size_t held = 0;                             // blocks mapped and not given back
std::size_t empty = 0;                            // of them, empty ones other than `current`
std::size_t cycle_peak = 0, last_cycle_peak = 0;  // blocks in use: Note [Giving blocks back]
bool shrunk = false;  // by a quarter of the cycle's peak: the next growth starts a new cycle
std::uint64_t maps = 0, releases = 0;

void* map_block() {
#ifdef _MSC_VER
    return _aligned_malloc(block_bytes, block_bytes);
#else
    // Twice the size, then the ends cut off, so that the block is aligned to its size.
    void* span =
        mmap(nullptr, 2 * block_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (span == MAP_FAILED) return nullptr;
    const auto start = reinterpret_cast<std::uintptr_t>(span);
    const std::uintptr_t aligned = (start + block_bytes - 1) & ~(block_bytes - 1);
    const std::uintptr_t end = aligned + block_bytes;
    if (aligned > start) munmap(span, aligned - start);
    if (start + 2 * block_bytes > end)
        munmap(reinterpret_cast<void*>(end), start + block_bytes - aligned);
    return reinterpret_cast<void*>(aligned);
#endif
}

void unmap_block(void* memory) {
#ifdef _MSC_VER
    _aligned_free(memory);
#else
    munmap(memory, block_bytes);
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

std::uint32_t count_set_bits(std::uint64_t bits) {
#ifdef _MSC_VER
    return static_cast<std::uint32_t>(__popcnt64(bits));
#else
    return static_cast<std::uint32_t>(__builtin_popcountll(bits));
#endif
}

Block* new_block() {
    void* memory = map_block();
    if (!memory) throw std::bad_alloc();
    auto* b = static_cast<Block*>(memory);
    for (std::uint64_t& word : b->free_bits) word = ~std::uint64_t{0};
    for (std::size_t i = 0; i < header_slots; ++i) b->free_bits[0] &= ~(std::uint64_t{1} << i);
    b->next_with_space = b->prev_with_space = nullptr;
    b->prev = nullptr;
    b->next = every_block;
    if (every_block) every_block->prev = b;
    every_block = b;
    b->free_count = empty_free_count;
    b->first_word = 0;
    b->has_space_listed = false;
    ++held;
    ++maps;
    return b;
}

void unlist_with_space(Block* b) {
    (b->prev_with_space ? b->prev_with_space->next_with_space : with_space) = b->next_with_space;
    if (b->next_with_space) b->next_with_space->prev_with_space = b->prev_with_space;
    b->has_space_listed = false;
}

void give_back(Block* b) {
    if (b->has_space_listed) unlist_with_space(b);
    (b->prev ? b->prev->next : every_block) = b->next;
    if (b->next) b->next->prev = b->prev;
    --held;
    --empty;
    ++releases;
    unmap_block(b);
}

// The pool grows by a block (a new one, or one that was empty).
void note_growth() {
    const std::size_t in_use = held - empty;
    if (shrunk) {
        last_cycle_peak = cycle_peak;
        cycle_peak = 0;
        shrunk = false;
    }
    if (in_use > cycle_peak) cycle_peak = in_use;
}

// Gives back empty blocks other than `current` until no more than `reserve` are left.
void give_back_beyond(std::size_t reserve) {
    for (Block* b = every_block; b && empty > reserve;) {
        Block* next = b->next;
        if (b != current && b->free_count == empty_free_count) give_back(b);
        b = next;
    }
}

// b, not `current`, has just lost its last node.
MG_OUT_OF_LINE void block_emptied(Block* b) {
    ++empty;
    if (4 * (held - empty) <= 3 * cycle_peak) shrunk = true;
    std::size_t reserve = cycle_peak < last_cycle_peak ? cycle_peak : last_cycle_peak;
    if (reserve < fewest_reserved) reserve = fewest_reserved;
    if (reserve > most_reserved) reserve = most_reserved;
    if (empty <= reserve) return;
    give_back(b);
    if (empty > reserve) give_back_beyond(reserve);  // the reserve has shrunk
}

MG_OUT_OF_LINE Block* next_current() {
    Block* b;
    if (with_space) {
        b = with_space;
        unlist_with_space(b);
        if (b->free_count == empty_free_count) --empty;
    } else {
        b = new_block();
    }
    note_growth();
    return b;
}

}  // namespace

Node* allocate_node() {
    while (!current || current->free_count == 0) current = next_current();
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

void NodeFreer::free_span(std::uintptr_t span, std::uint64_t bits) {
    static_assert(slot_size == slot_bytes, "a span is one word of a block's bitmap");
    Block* b = reinterpret_cast<Block*>(span & ~(block_bytes - 1));  // blocks are size-aligned
    const auto w = static_cast<std::uint32_t>((span & (block_bytes - 1)) / (64 * slot_bytes));
    b->free_bits[w] |= bits;
    b->free_count += count_set_bits(bits);
    if (w < b->first_word) b->first_word = w;
    if (b == current) return;
    if (!b->has_space_listed) {
        b->has_space_listed = true;
        b->prev_with_space = nullptr;
        b->next_with_space = with_space;
        if (with_space) with_space->prev_with_space = b;
        with_space = b;
    }
    if (b->free_count == empty_free_count) block_emptied(b);
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

PoolStats pool_stats() {
    std::size_t free_slots = 0;
    for (Block* b = every_block; b; b = b->next) free_slots += b->free_count;
    return {held * empty_free_count - free_slots, held, empty, maps, releases};
}

#endif

}  // namespace mg
