// Replaced global operator new/delete that count calls (see alloc_count.hh).
#include "alloc_count.hh"

#include <cstdlib>
#include <new>

namespace sr::test {
std::atomic<uint64_t> allocs{0};
std::atomic<uint64_t> frees{0};
}  // namespace sr::test

// noinline: GCC otherwise "sees" malloc'd memory reach free through inlined delete and warns.
__attribute__((noinline)) void* operator new(size_t n) {
  sr::test::allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
__attribute__((noinline)) void* operator new[](size_t n) {
  sr::test::allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
__attribute__((noinline)) void operator delete(void* p) noexcept {
  if (p) sr::test::frees.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}
__attribute__((noinline)) void operator delete(void* p, size_t) noexcept {
  if (p) sr::test::frees.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}
__attribute__((noinline)) void operator delete[](void* p) noexcept {
  if (p) sr::test::frees.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}
__attribute__((noinline)) void operator delete[](void* p, size_t) noexcept {
  if (p) sr::test::frees.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}
