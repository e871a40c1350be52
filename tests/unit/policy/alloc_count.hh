// Heap allocation counters of the policy test binary (global operator new/delete replaced in
// alloc_count.cc): allocations per lookup, and tables really freed by the registry.
#pragma once
#include <atomic>
#include <cstdint>

namespace sr::test {
extern std::atomic<uint64_t> allocs;  // operator new calls
extern std::atomic<uint64_t> frees;   // operator delete calls with a non-null pointer
}  // namespace sr::test
