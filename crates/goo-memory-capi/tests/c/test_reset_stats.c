/* goo_memory_reset_stats restarts the totals from the blocks live now and keeps the live bytes
 * and blocks: their frees are still counted right, and a limit still counts them. It zeroed
 * them, which left every later count short by what was live at the reset (the live bytes read
 * 0 with a block live) and let a limit pass by as much: with 60 bytes live under a limit of
 * 100, a reset of the stats let 60 more through, and every allocator but one written in C
 * (whose limit keeps a count of its own) did so. */
#include <pthread.h>
#include <stdlib.h>

#include "check.h"
#include "goo/runtime/memory.h"

static void* c_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)ctx;
    (void)options;
    return aligned_alloc(alignment < 16 ? 16 : alignment, (size + 15) & ~(size_t)15);
}

static void c_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)ctx;
    (void)size;
    (void)alignment;
    free(ptr);
}

static void expect(GooAllocator* a, size_t bytes, size_t peak, size_t count, size_t allocs, size_t frees) {
    GooAllocStats s = goo_get_alloc_stats(a);
    CHECK_EQ(s.bytes_allocated, bytes);
    CHECK_EQ(s.max_bytes_allocated, peak);
    CHECK_EQ(s.allocation_count, count);
    CHECK_EQ(s.total_allocations, allocs);
    CHECK_EQ(s.total_frees, frees);
    CHECK_EQ(s.failed_allocations, 0);
    /* The snapshot in the struct is the same. */
    CHECK_EQ(a->stats.bytes_allocated, bytes);
}

static void one_kind(GooAllocator* a) {
    void* p = goo_memory_alloc_with(a, 60);
    CHECK(p != NULL);
    CHECK(goo_memory_alloc_ex(a, 8, 3, GOO_ALLOC_DEFAULT) == NULL); /* a failure: restarts at 0 */
    goo_memory_reset_stats(a);
    expect(a, 60, 60, 1, 1, 0);
    goo_memory_free_with(a, p, 60);
    expect(a, 0, 60, 0, 1, 1);
    void* q = goo_memory_alloc_with(a, 40);
    CHECK(q != NULL);
    expect(a, 40, 60, 1, 2, 1);
    goo_memory_free_with(a, q, 40);

    /* Under a limit: the live bytes at the reset still count. */
    CHECK(goo_allocator_set_limit(a, 100));
    p = goo_memory_alloc_with(a, 60);
    CHECK(p != NULL);
    goo_memory_reset_stats(a);
    CHECK(goo_memory_alloc_with(a, 60) == NULL);
    goo_memory_reset_stats(a);
    goo_memory_free_with(a, p, 60);
    p = goo_memory_alloc_with(a, 100);
    CHECK(p != NULL);
    CHECK(goo_memory_alloc_with(a, 1) == NULL);
    goo_memory_free_with(a, p, 100);
    CHECK(goo_allocator_set_limit(a, 0));
    goo_memory_reset_stats(a);
    expect(a, 0, 0, 0, 0, 0);
}

/* A block counted on one thread's shard, the stats reset on another, the block freed on a
 * third: the merged counts come out right. */
static GooAllocator* shared;
static void* block;
static void* allocate(void* arg) {
    (void)arg;
    block = goo_memory_alloc_with(shared, 64);
    return NULL;
}
static void* release(void* arg) {
    (void)arg;
    goo_memory_free_with(shared, block, 64);
    return NULL;
}
static void across_threads(GooAllocator* a) {
    shared = a;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, allocate, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(block != NULL);
    goo_memory_reset_stats(a);
    expect(a, 64, 64, 1, 1, 0);
    CHECK(pthread_create(&t, NULL, release, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    expect(a, 0, 64, 0, 1, 1);
    void* p = goo_memory_alloc_with(a, 16);
    expect(a, 16, 64, 1, 2, 1);
    goo_memory_free_with(a, p, 16);
}

int main(void) {
    GooAllocator custom = {0};
    custom.alloc = c_alloc;
    custom.free = c_free;
    custom.track_stats = true;
    GooAllocator* system = goo_system_allocator_create();
    GooAllocator* heap = goo_heap_allocator_create();
    GooAllocator* arena = goo_arena_allocator_create(0);
    GooAllocator* shared_arena = goo_arena_allocator_create_shared(0);
    GooAllocator* pool = goo_pool_allocator_create(128, 0);
    GooAllocator* shared_pool = goo_pool_allocator_create_shared(128, 0);
    GooAllocator* root = goo_region_allocator_create(0, true);
    GooAllocator* child = goo_region_create_child(root, 0);
    GooAllocator* scope = goo_scoped_allocator_create(NULL);
    GooAllocator* inner = goo_system_allocator_create();
    GooAllocator* locked = goo_locked_allocator_create(inner);
    GooAllocator* kinds[] = {&custom, system, heap, arena, shared_arena, pool, shared_pool, root, child, scope,
                             locked};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        CHECK(kinds[i] != NULL);
        one_kind(kinds[i]);
    }
    across_threads(system);
    across_threads(heap);
    across_threads(shared_pool);
    across_threads(locked);

    locked->destroy(locked);
    inner->destroy(inner);
    CHECK(goo_scope_end(scope));
    goo_region_allocator_destroy(root);
    goo_pool_allocator_destroy(shared_pool);
    goo_pool_allocator_destroy(pool);
    goo_arena_allocator_destroy(shared_arena);
    goo_arena_allocator_destroy(arena);
    heap->destroy(heap);
    system->destroy(system);
    return 0;
}
