// CHECK for libFuzzer targets: an invariant that fails prints itself and aborts, so
// libFuzzer saves the input as a crash (asserts may be compiled out; this never is).
#pragma once
#include <cstdio>
#include <cstdlib>

#define CHECK(cond)                                                                         \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)
