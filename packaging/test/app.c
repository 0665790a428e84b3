/* A user's first program against an installed goo-memory (scripts/test-install.sh builds it
 * with pkg-config, pkg-config --static and CMake, then runs it): the public headers, the
 * built-in default allocator, a system allocator with stats, an arena and a pool. Exits 0
 * and prints "ok" only when every result is as the headers promise. */
#include <stdio.h>
#include <string.h>

#include <goo_memory.h>

#define REQUIRE(cond)                                                       \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                       \
        }                                                                   \
    } while (0)

int main(void) {
    REQUIRE(goo_memory_init());

    void* mem = goo_memory_alloc(1024);
    REQUIRE(mem != NULL);
    memset(mem, 0xab, 1024);
    goo_memory_free(mem, 1024);

    GooAllocator* heap = goo_system_allocator_create();
    REQUIRE(heap != NULL);
    void* p = goo_memory_alloc_with(heap, 64);
    REQUIRE(p != NULL);
    GooAllocStats s = goo_get_alloc_stats(heap);
    REQUIRE(s.bytes_allocated == 64 && s.allocation_count == 1);
    goo_memory_free_with(heap, p, 64);
    s = goo_get_alloc_stats(heap);
    REQUIRE(s.bytes_allocated == 0 && s.total_frees == 1);
    heap->destroy(heap);

    GooAllocator* arena = goo_arena_allocator_create(4096);
    REQUIRE(arena != NULL);
    for (int i = 0; i < 100; i++) REQUIRE(goo_memory_alloc_with(arena, 48) != NULL);
    goo_arena_allocator_destroy(arena);

    GooAllocator* pool = goo_pool_allocator_create(64, 100);
    REQUIRE(pool != NULL);
    void* obj = goo_memory_alloc_with(pool, 64);
    REQUIRE(obj != NULL);
    goo_memory_free_with(pool, obj, 64);
    goo_pool_allocator_destroy(pool);

    /* An impossible request fails cleanly (NULL), as the default strategy says. */
    REQUIRE(goo_memory_alloc((size_t)-1) == NULL);

    goo_memory_cleanup();
    puts("ok");
    return 0;
}
