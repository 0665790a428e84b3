/* A double free never hands one block out twice: through a system allocator (whose thread
 * cache would otherwise file the block twice, hiding it from the C library's own check) and
 * through the default allocator (the heap, or the system allocator with GOO_HEAP=system). The
 * second free of a block still free is refused: reported on stderr, not counted as a free, and
 * the next two allocations get two blocks. Both the immediate double free (free p, free p) and
 * one with another free between (free p, free q, free p) are found.
 *
 * Under a memory checker (GOO_VALGRIND=1, as the test harness sets it, or an ASan build) the
 * system allocator caches nothing and the tool itself reports a double free; with
 * GOO_SYSTEM_CACHE=0 it caches nothing either: skipped there. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "goo/runtime/memory.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Under a tool, or with the cache off (GOO_SYSTEM_CACHE=0): the C library gets every free
 * and finds a double free itself (glibc aborts). */
static int caches_nothing(void) {
    const char* valgrind = getenv("GOO_VALGRIND");
    const char* cache = getenv("GOO_SYSTEM_CACHE");
    return UNDER_ASAN || (valgrind && strcmp(valgrind, "1") == 0) || (cache && cache[0] == '0');
}

/* Blocks of `size` bytes freed twice in the two orders, through `a` (NULL: the default). */
static void never_twice(GooAllocator* a, size_t size) {
    GooAllocStats before = goo_get_alloc_stats(a);
    void* p = goo_memory_alloc_with(a, size);
    CHECK(p != NULL);
    goo_memory_free_with(a, p, size);
    goo_memory_free_with(a, p, size); /* refused */
    GooAllocStats s = goo_get_alloc_stats(a);
    CHECK_EQ(s.total_frees, before.total_frees + 1);
    CHECK_EQ(s.allocation_count, before.allocation_count);
    void* x = goo_memory_alloc_with(a, size);
    void* y = goo_memory_alloc_with(a, size);
    CHECK(x != NULL && y != NULL && x != y);
    memset(x, 1, size);
    memset(y, 2, size);

    /* Another free between the two. */
    goo_memory_free_with(a, x, size);
    goo_memory_free_with(a, y, size);
    goo_memory_free_with(a, x, size); /* refused */
    s = goo_get_alloc_stats(a);
    CHECK_EQ(s.total_frees, before.total_frees + 3);
    CHECK_EQ(s.allocation_count, before.allocation_count);
    x = goo_memory_alloc_with(a, size);
    y = goo_memory_alloc_with(a, size);
    void* z = goo_memory_alloc_with(a, size);
    CHECK(x != NULL && y != NULL && z != NULL && x != y && y != z && x != z);
    goo_memory_free_with(a, x, size);
    goo_memory_free_with(a, y, size);
    goo_memory_free_with(a, z, size);
    CHECK_EQ(goo_get_alloc_stats(a).allocation_count, before.allocation_count);
}

int main(void) {
    if (caches_nothing()) return 0;
    GooAllocator* sys = goo_system_allocator_create();
    CHECK(sys != NULL);
    static const size_t sizes[] = {16, 24, 64, 200, 256};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        never_twice(sys, sizes[i]);
        never_twice(NULL, sizes[i]);
    }
    sys->destroy(sys);
    return 0;
}
