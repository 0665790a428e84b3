/* Limits on live bytes, from C: every allocator kind refuses past its limit (NULL, counted,
 * callbacks told), keeps it with stats off, takes it back to 0; a GC handler that frees memory
 * makes the retry fit; a C-made allocator is limited too (its stats exact, under threads too);
 * a region's limit covers its subtree, and a scope's memory counts against its parent's limit. */
#include <pthread.h>
#include <stdatomic.h>
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
 * again; with stats on and off (a limited allocator counts live bytes even with stats off,
 * one written in C too). */
static void limit_holds(GooAllocator* a, size_t unit) {
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
        CHECK_EQ(goo_get_alloc_stats(a).bytes_allocated, 10 * unit);
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

/* An allocator written in C that knows its own live bytes and their peak. */
static atomic_long c_live, c_peak;

static void* c_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)ctx, (void)alignment, (void)options;
    long live = atomic_fetch_add(&c_live, (long)size) + (long)size;
    long peak = atomic_load(&c_peak);
    while (live > peak && !atomic_compare_exchange_weak(&c_peak, &peak, live)) {
    }
    return malloc(size);
}
static void c_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)ctx, (void)alignment;
    atomic_fetch_sub(&c_live, (long)size);
    free(ptr);
}

/* A C-made allocator limited while its stats are off counts its blocks all the same, so
 * turning the stats on and freeing them leaves them at zero; blocks counted before a stats
 * reset and freed after leave them at zero too, never below. */
static void c_made_counts(void) {
    GooAllocator a = {0};
    a.alloc = c_alloc;
    a.free = c_free;
    CHECK(goo_allocator_set_limit(&a, 1000));
    void* p[4];
    for (int i = 0; i < 4; i++) CHECK((p[i] = goo_memory_alloc_with(&a, 100)) != NULL);
    a.track_stats = true;
    GooAllocStats s = goo_get_alloc_stats(&a);
    CHECK_EQ(s.bytes_allocated, 400);
    CHECK_EQ(s.allocation_count, 4);
    goo_memory_reset_stats(&a);
    for (int i = 0; i < 4; i++) goo_memory_free_with(&a, p[i], 100);
    s = goo_get_alloc_stats(&a);
    CHECK_EQ(s.bytes_allocated, 0);
    CHECK_EQ(s.allocation_count, 0);
    CHECK_EQ(s.total_frees, 4);
    CHECK(goo_allocator_set_limit(&a, 0));
}

/* Two threads on a limited C-made allocator: its stats never show more live bytes than the
 * limit (a free is counted before its room goes back to the limit). */
enum { SHARE_ROUNDS = 20000, SHARE_BLOCKS = 10, SHARE_LIMIT = 1000 };
static GooAllocator shared_c;

static void* share_worker(void* arg) {
    (void)arg;
    void* mine[SHARE_BLOCKS];
    for (int r = 0; r < SHARE_ROUNDS; r++) {
        int n = 0;
        while (n < SHARE_BLOCKS && (mine[n] = goo_memory_alloc_with(&shared_c, 100)) != NULL) n++;
        while (n > 0) goo_memory_free_with(&shared_c, mine[--n], 100);
    }
    return NULL;
}

static void c_made_limit_under_threads(void) {
    shared_c.alloc = c_alloc;
    shared_c.free = c_free;
    shared_c.track_stats = true;
    CHECK(goo_allocator_set_limit(&shared_c, SHARE_LIMIT));
    atomic_store(&c_peak, 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, share_worker, NULL) == 0);
    for (int i = 0; i < 2; i++) CHECK(pthread_join(t[i], NULL) == 0);
    GooAllocStats s = goo_get_alloc_stats(&shared_c);
    CHECK(atomic_load(&c_peak) <= SHARE_LIMIT);
    CHECK(s.max_bytes_allocated <= SHARE_LIMIT);
    CHECK_EQ(s.bytes_allocated, 0);
    CHECK_EQ(s.total_allocations, s.total_frees);
    CHECK(goo_allocator_set_limit(&shared_c, 0));
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

static GooAllocator* sibling;
static void* sibling_block;

static void free_sibling(void* user_data, size_t bytes_needed) {
    (void)user_data, (void)bytes_needed;
    goo_memory_free_with(sibling, sibling_block, 500);
    sibling_block = NULL;
}

/* A region's limit covers its subtree: a grandchild's allocation that would take the live
 * bytes of the root's subtree past the root's limit fails as any refusal does (NULL, counted in
 * the grandchild, callbacks told, the strategy applied), and fits once a sibling frees. */
static void subtree_limit(void) {
    GooAllocator* root = goo_region_allocator_create(4096, true);
    GooAllocator* a = goo_region_create_child(root, 0);
    GooAllocator* b = goo_region_create_child(root, 0);
    GooAllocator* a1 = goo_region_create_child(a, 0);
    CHECK(root && a && b && a1);
    CHECK(goo_allocator_set_limit(root, 1000));
    void* in_b = goo_memory_alloc_with(b, 600);
    void* in_a1 = goo_memory_alloc_with(a1, 300);
    CHECK(in_b != NULL && in_a1 != NULL);
    unsigned told = failures_seen;
    CHECK(goo_memory_alloc_with(a1, 101) == NULL); /* 1001 > 1000 */
    CHECK_EQ(goo_get_alloc_stats(a1).failed_allocations, 1);
    CHECK_EQ(goo_get_alloc_stats(root).failed_allocations, 0);
    CHECK_EQ(failures_seen, told + 1);
    CHECK_EQ(goo_region_subtree_stats(root).bytes_allocated, 900);
    void* last = goo_memory_alloc_with(a1, 100); /* 1000: up to the limit exactly */
    CHECK(last != NULL);
    goo_memory_free_with(a1, last, 100);

    /* The sibling frees: the same request fits. */
    goo_memory_free_with(b, in_b, 600);
    void* more = goo_memory_alloc_with(a1, 101);
    CHECK(more != NULL);
    CHECK_EQ(goo_region_subtree_stats(root).bytes_allocated, 401);

    /* A limit in the middle covers its own subtree (a's: 401 live), under the root's. */
    CHECK(goo_allocator_set_limit(a, 500));
    CHECK(goo_memory_alloc_with(a1, 100) == NULL);
    CHECK(goo_memory_alloc_with(a, 100) == NULL);
    CHECK((more = goo_memory_alloc_with(a, 99)) != NULL); /* a: 500 */
    CHECK((sibling_block = goo_memory_alloc_with(b, 500)) != NULL); /* root: 1000 */
    CHECK(goo_memory_alloc_with(b, 1) == NULL);
    CHECK(goo_allocator_set_limit(a, 0));
    CHECK(goo_memory_alloc_with(a1, 1) == NULL); /* the root's still holds */
    CHECK_EQ(goo_region_subtree_stats(root).bytes_allocated, 1000);

    /* The strategy applies: a GC handler that frees the sibling's block makes the retry fit. */
    sibling = b;
    a1->strategy = GOO_ALLOC_STRATEGY_GC;
    goo_memory_set_gc_handler(free_sibling, NULL);
    size_t failed = goo_get_alloc_stats(a1).failed_allocations;
    CHECK(goo_memory_alloc_with(a1, 500) != NULL);
    CHECK(sibling_block == NULL);
    CHECK_EQ(goo_get_alloc_stats(a1).failed_allocations, failed);
    CHECK_EQ(goo_region_subtree_stats(root).bytes_allocated, 1000);
    goo_memory_set_gc_handler(NULL, NULL);

    /* Stats off in a child: its blocks still count against the root's limit. */
    b->track_stats = false;
    CHECK(goo_memory_alloc_with(b, 1) == NULL);
    CHECK(goo_allocator_set_limit(root, 0));
    CHECK(goo_memory_alloc_with(b, 10000) != NULL); /* no limit left */
    goo_region_allocator_destroy(root);
}

/* A scope takes chunks from its parent through the parent's front door: they count against
 * the parent's limit, and a chunk the parent refuses fails the scope's request. */
static void scope_under_limit(void) {
    GooAllocator* parent = goo_arena_allocator_create(0);
    CHECK(parent != NULL);
    CHECK(goo_allocator_set_limit(parent, 16 * 1024));
    GooAllocator* scope = goo_scoped_allocator_create(parent);
    CHECK(scope != NULL);
    size_t served = 0;
    for (int i = 0; i < 64; i++) {
        if (goo_memory_alloc_with(scope, 1000) == NULL) break;
        served += 1000;
        CHECK(goo_get_alloc_stats(parent).bytes_allocated <= 16 * 1024);
    }
    CHECK(served > 0 && served < 16 * 1024);
    CHECK_EQ(goo_get_alloc_stats(scope).failed_allocations, 1);
    /* One failure in the parent: the request's own chunk. The larger chunk the scope asked
     * for first, and did without, is no failure. */
    CHECK_EQ(goo_get_alloc_stats(parent).failed_allocations, 1);
    goo_allocator_destroy(scope);
    CHECK_EQ(goo_get_alloc_stats(parent).bytes_allocated, 0);
    goo_allocator_destroy(parent);

    /* The scope's next chunk (2 KiB) does not fit under the parent's limit, a chunk for the
     * block at hand does: the request succeeds, and the parent, whose strategy is PANIC, saw no
     * failure (it would have aborted). */
    parent = goo_system_allocator_create();
    CHECK(parent != NULL && goo_allocator_set_limit(parent, 1500));
    parent->strategy = GOO_ALLOC_STRATEGY_PANIC;
    scope = goo_scoped_allocator_create(parent);
    CHECK(scope != NULL);
    for (int i = 0; i < 8; i++) CHECK(goo_memory_alloc_with(scope, 100) != NULL);
    CHECK_EQ(goo_get_alloc_stats(parent).failed_allocations, 0);
    CHECK(goo_get_alloc_stats(parent).bytes_allocated <= 1500);
    goo_allocator_destroy(scope);
    goo_allocator_destroy(parent);
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
    limit_holds(system, 100);
    limit_holds(heap, 100);
    limit_holds(arena, 100);
    limit_holds(pool, 64);
    limit_holds(region, 100);
    limit_holds(child, 100);
    limit_holds(scope, 100);
    CHECK_EQ(failures_seen, 14); /* one refusal per allocator and round, each told */

    /* An allocator written in C. */
    GooAllocator custom = {0};
    custom.alloc = c_alloc;
    custom.free = c_free;
    custom.track_stats = true;
    limit_holds(&custom, 100);
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

    c_made_counts();
    c_made_limit_under_threads();
    subtree_limit();
    scope_under_limit();

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
