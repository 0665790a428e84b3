/* Limits on live bytes, from C: every allocator kind refuses past its limit (NULL, counted,
 * callbacks told), keeps it with stats off, takes it back to 0; a GC handler that frees memory
 * makes the retry fit; a C-made allocator is limited too. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "goo/runtime/arena.h"
#include "goo/runtime/memory.h"
#include "goo/runtime/pool.h"
#include "goo/runtime/region.h"
#include "goo/runtime/scoped.h"
#include "goo/runtime/stats.h"
#include "check.h"

static unsigned failures_seen;

static bool on_failure(const GooMemoryEvent* e, void* user_data) {
    (void)user_data;
    if (e->kind == GOO_EVENT_FAILURE) failures_seen++;
    return true;
}

/* Up to the limit in blocks of `unit` bytes, one more byte refused, everything freed, room
 * again; with stats on and off (a library allocator counts live bytes while limited even with
 * stats off; one written in C counts them in the library's table of limits). */
static void limit_holds(GooAllocator* a, size_t unit, bool library) {
    void* blocks[10];
    CHECK(goo_allocator_set_limit(a, 10 * unit));
    CHECK_EQ(goo_allocator_get_limit(a), 10 * unit);
    for (int round = 0; round < 2; round++) {
        a->track_stats = round == 0;
        size_t failed = goo_get_alloc_stats(a).failed_allocations;
        for (int i = 0; i < 10; i++) {
            blocks[i] = goo_memory_alloc_with(a, unit);
            CHECK(blocks[i] != NULL);
        }
        CHECK(goo_memory_alloc_with(a, 1) == NULL);
        CHECK_EQ(goo_get_alloc_stats(a).failed_allocations, failed + 1);
        CHECK_EQ(goo_get_alloc_stats(a).bytes_allocated, library || round == 0 ? 10 * unit : 0);
        for (int i = 9; i >= 0; i--) goo_memory_free_with(a, blocks[i], unit);
        CHECK_EQ(goo_get_alloc_stats(a).bytes_allocated, 0);
    }
    a->track_stats = true;
    CHECK(goo_allocator_set_limit(a, 0));
    CHECK_EQ(goo_allocator_get_limit(a), 0);
    void* more[11]; /* past the old limit */
    for (int i = 0; i < 11; i++) CHECK((more[i] = goo_memory_alloc_with(a, unit)) != NULL);
    for (int i = 10; i >= 0; i--) goo_memory_free_with(a, more[i], unit);
}

static void* c_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)ctx, (void)alignment, (void)options;
    return malloc(size);
}
static void c_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)ctx, (void)size, (void)alignment;
    free(ptr);
}

static GooAllocator* held_from;
static void* held[4];

static void give_back(void* user_data, size_t bytes_needed) {
    (void)user_data, (void)bytes_needed;
    for (int i = 0; i < 4; i++) {
        goo_memory_free_with(held_from, held[i], 64);
        held[i] = NULL;
    }
}

int main(void) {
    CHECK(goo_memory_add_callback(GOO_EVENT_FAILURE, on_failure, NULL) != 0);

    GooAllocator* system = goo_system_allocator_create();
    GooAllocator* heap = goo_heap_allocator_create();
    GooAllocator* arena = goo_arena_allocator_create(0);
    GooAllocator* pool = goo_pool_allocator_create(64, 0);
    GooAllocator* region = goo_region_allocator_create(4096, true);
    GooAllocator* child = goo_region_create_child(region, 0);
    GooAllocator* scope = goo_scoped_allocator_create(NULL);
    CHECK(system && heap && arena && pool && region && child && scope);
    limit_holds(system, 100, true);
    limit_holds(heap, 100, true);
    limit_holds(arena, 100, true);
    limit_holds(pool, 64, true);
    limit_holds(region, 100, true);
    limit_holds(child, 100, true);
    limit_holds(scope, 100, true);
    CHECK_EQ(failures_seen, 14); /* one refusal per allocator and round, each told */

    /* An allocator written in C. */
    GooAllocator custom = {0};
    custom.alloc = c_alloc;
    custom.free = c_free;
    custom.track_stats = true;
    limit_holds(&custom, 100, false);
    CHECK(goo_allocator_set_limit(&custom, 0));

    /* The GC strategy: the handler frees what the test holds, and the retry fits. */
    held_from = system;
    system->strategy = GOO_ALLOC_STRATEGY_GC;
    goo_memory_set_gc_handler(give_back, NULL);
    CHECK(goo_allocator_set_limit(system, 256));
    for (int i = 0; i < 4; i++) CHECK((held[i] = goo_memory_alloc_with(system, 64)) != NULL);
    void* p = goo_memory_alloc_with(system, 64);
    CHECK(p != NULL);
    CHECK(held[0] == NULL);
    goo_memory_free_with(system, p, 64);
    goo_memory_set_gc_handler(NULL, NULL);

    /* Bad input. */
    CHECK(!goo_allocator_set_limit(NULL, 1));
    CHECK_EQ(goo_allocator_get_limit(NULL), 0);

    goo_allocator_destroy(scope);
    goo_allocator_destroy(region);
    goo_allocator_destroy(pool);
    goo_allocator_destroy(arena);
    goo_allocator_destroy(heap);
    goo_allocator_destroy(system);
    goo_memory_cleanup();
    return 0;
}
