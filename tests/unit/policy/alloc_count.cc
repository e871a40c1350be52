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
// The over-aligned forms too (the registry's per-reader slots are cache-line aligned), so
// that every allocation and free of the binary is counted symmetrically.
__attribute__((noinline)) void* operator new(size_t n, std::align_val_t a) {
  sr::test::allocs.fetch_add(1, std::memory_order_relaxed);
  size_t al = static_cast<size_t>(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
  throw std::bad_alloc();
}
__attribute__((noinline)) void operator delete(void* p, std::align_val_t) noexcept {
  if (p) sr::test::frees.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}
__attribute__((noinline)) void operator delete(void* p, size_t, std::align_val_t) noexcept {
  if (p) sr::test::frees.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}
// The nothrow form too (std::stable_partition's temporary buffer): left to the runtime it
// came from another allocator than the free() above (ASan's alloc-dealloc-mismatch, issue 12),
// and its allocations went uncounted.
__attribute__((noinline)) void* operator new(size_t n, const std::nothrow_t&) noexcept {
  sr::test::allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
__attribute__((noinline)) void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  sr::test::allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
