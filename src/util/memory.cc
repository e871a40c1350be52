// util::release_memory (memory.hh). The lookup runs once per process; a missing
// mi_collect means the process runs on glibc's allocator.
#include "sealrelay/util/memory.hh"

#include <dlfcn.h>
#include <malloc.h>

namespace sr::util {

void release_memory() {
  using collect_fn = void (*)(bool);
  static const collect_fn collect = reinterpret_cast<collect_fn>(::dlsym(RTLD_DEFAULT, "mi_collect"));
  if (collect) collect(true);
  else ::malloc_trim(0);
}

}  // namespace sr::util
