/* The spec's usage example and every function of the modern API, through the built-in default
 * and through a created system allocator. Also compiled as C++. */
#include <stdint.h>
#include <string.h>

#include "goo/runtime/memory.h"
#include "check.h"

static void spec_basic_usage(void) {
    /* Exactly as in the spec. */
    goo_memory_init();
    void* mem = goo_memory_alloc(1024);
    CHECK(mem != NULL);
    memset(mem, 0xab, 1024);
    goo_memory_free(mem, 1024);
    goo_memory_cleanup();
}

static void every_function(void) {
    CHECK(goo_memory_init());
    CHECK(goo_memory_init()); /* idempotent */
    GooAllocator* def = goo_get_default_allocator();
    CHECK(def != NULL);
    CHECK(goo_get_thread_allocator() == NULL);
    GooAllocStats before = goo_get_alloc_stats(NULL);

    /* alloc / zeroed / realloc / free through the current allocator */
    unsigned char* p = (unsigned char*)goo_memory_alloc(100);
    CHECK(p != NULL);
    CHECK(((uintptr_t)p % 16) == 0);
    GooAllocStats s = goo_get_alloc_stats(NULL);
    CHECK_EQ(s.bytes_allocated, before.bytes_allocated + 100);
    CHECK_EQ(s.allocation_count, before.allocation_count + 1);
    for (int i = 0; i < 100; i++) p[i] = (unsigned char)i;
    p = (unsigned char*)goo_memory_realloc(p, 100, 5000);
    CHECK(p != NULL);
    for (int i = 0; i < 100; i++) CHECK_EQ(p[i], i);
    s = goo_get_alloc_stats(def);
    CHECK_EQ(s.bytes_allocated, before.bytes_allocated + 5000);
    goo_memory_free(p, 5000);

    unsigned char* z = (unsigned char*)goo_memory_alloc_zeroed(4096);
    CHECK(z != NULL);
    for (int i = 0; i < 4096; i++) CHECK_EQ(z[i], 0);
    goo_memory_free(z, 4096);

    /* aligned */
    size_t aligns[] = {1, 2, 8, 16, 32, 64, 4096, 65536};
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        void* a = goo_memory_alloc_aligned(24, aligns[i]);
        CHECK(a != NULL);
        CHECK(((uintptr_t)a % aligns[i]) == 0);
        memset(a, 1, 24);
        goo_memory_free_aligned(a, 24, aligns[i]);
    }

    /* size 0: non-NULL, not counted, free is a no-op */
    GooAllocStats mid = goo_get_alloc_stats(NULL);
    void* zero = goo_memory_alloc(0);
    CHECK(zero != NULL);
    goo_memory_free(zero, 0);
    goo_memory_free(NULL, 10);
    s = goo_get_alloc_stats(NULL);
    CHECK_EQ(s.total_allocations, mid.total_allocations);
    /* realloc(NULL) allocates; realloc to 0 frees and returns NULL */
    void* r = goo_memory_realloc(NULL, 0, 32);
    CHECK(r != NULL);
    CHECK(goo_memory_realloc(r, 32, 0) == NULL);
    CHECK(goo_memory_realloc(NULL, 0, 0) == NULL); /* no block, size 0: nothing allocated */
    s = goo_get_alloc_stats(NULL);
    CHECK_EQ(s.allocation_count, mid.allocation_count);
    CHECK_EQ(s.bytes_allocated, mid.bytes_allocated);

    /* a system allocator of our own: separate stats */
    GooAllocator* sys = goo_system_allocator_create();
    CHECK(sys != NULL);
    CHECK(sys != def);
    CHECK(sys->track_stats);
    void* q = goo_memory_alloc_with(sys, 64);
    CHECK(q != NULL);
    q = goo_memory_realloc_with(sys, q, 64, 128);
    CHECK(q != NULL);
    s = goo_get_alloc_stats(sys);
    CHECK_EQ(s.bytes_allocated, 128);
    CHECK_EQ(s.max_bytes_allocated, 128);
    CHECK_EQ(s.total_allocations, 1);
    CHECK_EQ(sys->stats.bytes_allocated, 128); /* the embedded snapshot was refreshed */
    goo_memory_free_with(sys, q, 128);
    void* arr = goo_memory_alloc_array(sys, 10, 8, 0, GOO_ALLOC_ZERO);
    CHECK(arr != NULL);
    CHECK_EQ(((uint64_t*)arr)[9], 0);
    void* ex = goo_memory_realloc_ex(sys, arr, 80, 800, 0, GOO_ALLOC_ZERO);
    CHECK(ex != NULL);
    CHECK_EQ(((unsigned char*)ex)[799], 0);
    goo_memory_free_ex(sys, ex, 800, 0);
    void* big = goo_memory_alloc_ex(sys, 100, 256, GOO_ALLOC_DEFAULT);
    CHECK(((uintptr_t)big % 256) == 0);
    goo_memory_free_ex(sys, big, 100, 256);
    s = goo_get_alloc_stats(sys);
    CHECK_EQ(s.bytes_allocated, 0);
    CHECK_EQ(s.allocation_count, 0);
    CHECK_EQ(s.total_allocations, 3);
    CHECK_EQ(s.total_frees, 3);
    CHECK_EQ(s.max_bytes_allocated, 800);
    goo_memory_reset_stats(sys);
    s = goo_get_alloc_stats(sys);
    CHECK_EQ(s.total_allocations, 0);
    CHECK_EQ(s.max_bytes_allocated, 0);

    /* default and thread allocators */
    goo_set_default_allocator(sys);
    CHECK(goo_get_default_allocator() == sys);
    void* d = goo_memory_alloc(40);
    CHECK_EQ(goo_get_alloc_stats(sys).bytes_allocated, 40);
    goo_memory_free(d, 40);
    GooAllocator* mine = goo_system_allocator_create();
    goo_set_thread_allocator(mine);
    CHECK(goo_get_thread_allocator() == mine);
    void* t = goo_memory_alloc(24);
    CHECK_EQ(goo_get_alloc_stats(mine).bytes_allocated, 24);
    CHECK_EQ(goo_get_alloc_stats(NULL).bytes_allocated, 24); /* NULL = current = thread's */
    goo_memory_free(t, 24);
    goo_set_thread_allocator(NULL);
    goo_set_default_allocator(NULL);
    CHECK(goo_get_default_allocator() == def);
    mine->destroy(mine);
    goo_allocator_destroy(sys);
    goo_allocator_destroy(NULL);

    /* copy and set */
    char buf[32];
    goo_memory_set(buf, 'x', sizeof buf);
    CHECK(buf[31] == 'x');
    goo_memory_copy(buf + 1, buf, 8); /* overlapping is fine */
    goo_memory_copy(buf, "hello", 6);
    CHECK(strcmp(buf, "hello") == 0);
    goo_memory_copy(NULL, NULL, 0);
    goo_memory_set(NULL, 0, 0);

    goo_memory_cleanup();
    CHECK(goo_get_default_allocator() == def);
}

int main(void) {
    spec_basic_usage();
    every_function();
    printf("test_basic: ok\n");
    return 0;
}
