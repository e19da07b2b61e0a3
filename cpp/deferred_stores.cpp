// The state of Note [Deferred stores] (deferred_stores.hpp).
#include "deferred_stores.hpp"

namespace mg {

DeferredStores* unsettled = nullptr;
std::uint64_t exposures = 0;
std::uint64_t inner_grad_writes = 0;

}  // namespace mg
