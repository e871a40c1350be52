// util::release_memory: give memory freed after a peak back to the OS. The daemon links
// mimalloc, which keeps freed pages of a thread's heap resident until that thread collects
// them; a shard that has just finished a large message (megabytes of buffers) asks for it
// here. Found at run time (dlsym), so libraries and tests that run on glibc's malloc need
// no mimalloc: there it is malloc_trim(). Call it on the thread whose heap should shrink.
#pragma once

namespace sr::util {

// Collect this thread's heap now (mimalloc: mi_collect(true); glibc: malloc_trim(0)).
void release_memory();

}  // namespace sr::util
