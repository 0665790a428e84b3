/* Threads: per-thread allocators are really per thread, and N threads x M operations on one
 * tracked allocator (a library one, and one written in C) keep exact totals. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "goo/runtime/memory.h"
#include "check.h"

#define THREADS 8
#define OPS 20000

static GooAllocator* shared;

static void* hammer(void* arg) {
    uintptr_t id = (uintptr_t)arg;
    void* held[16] = {0};
    size_t sizes[16] = {0};
    for (int i = 0; i < OPS; i++) {
        int slot = (int)((i * 7 + id) % 16);
        if (held[slot]) {
            goo_memory_free_with(shared, held[slot], sizes[slot]);
            held[slot] = NULL;
        } else {
            sizes[slot] = 1 + (size_t)((i + id) % 200);
            held[slot] = goo_memory_alloc_with(shared, sizes[slot]);
            CHECK(held[slot] != NULL);
        }
    }
    /* Leave exactly one 10-byte block per thread, freed by the main thread. */
    for (int s = 0; s < 16; s++)
        if (held[s]) goo_memory_free_with(shared, held[s], sizes[s]);
    return goo_memory_alloc_with(shared, 10);
}

static void run_shared(GooAllocator* a) {
    shared = a;
    GooAllocStats before = goo_get_alloc_stats(a);
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, hammer, (void*)i) == 0);
    void* left[THREADS];
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], &left[i]) == 0);
    GooAllocStats s = goo_get_alloc_stats(a);
    CHECK_EQ(s.allocation_count - before.allocation_count, THREADS);
    CHECK_EQ(s.bytes_allocated - before.bytes_allocated, THREADS * 10);
    CHECK_EQ(s.total_allocations - before.total_allocations, s.total_frees - before.total_frees + THREADS);
    for (int i = 0; i < THREADS; i++) goo_memory_free_with(a, left[i], 10);
    s = goo_get_alloc_stats(a);
    CHECK_EQ(s.allocation_count, before.allocation_count);
    CHECK_EQ(s.bytes_allocated, before.bytes_allocated);
}

static void* c_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)ctx; (void)alignment; (void)options;
    return malloc(size);
}
static void c_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)ctx; (void)size; (void)alignment;
    free(ptr);
}

/* Per-thread allocators: each thread sets its own and sees only its own. */
static void* own_allocator(void* arg) {
    (void)arg;
    CHECK(goo_get_thread_allocator() == NULL);
    GooAllocator* mine = goo_system_allocator_create();
    goo_set_thread_allocator(mine);
    for (int i = 0; i < 100; i++) {
        void* p = goo_memory_alloc(32);
        CHECK(goo_get_thread_allocator() == mine);
        goo_memory_free(p, 32);
    }
    void* keep = goo_memory_alloc(5);
    GooAllocStats s = goo_get_alloc_stats(mine);
    CHECK_EQ(s.total_allocations, 101);
    CHECK_EQ(s.bytes_allocated, 5);
    goo_memory_free(keep, 5);
    goo_set_thread_allocator(NULL);
    mine->destroy(mine);
    return NULL;
}

int main(void) {
    GooAllocator* sys = goo_system_allocator_create();
    run_shared(sys);
    GooAllocStats s = goo_get_alloc_stats(sys);
    CHECK_EQ(s.total_allocations, s.total_frees);
    sys->destroy(sys);

    GooAllocator c = {c_alloc, NULL, c_free, NULL, GOO_ALLOC_STRATEGY_NULL, NULL, NULL, true,
                      {0, 0, 0, 0, 0, 0, 0}};
    run_shared(&c);
    CHECK_EQ(c.stats.total_allocations, c.stats.total_frees);

    GooAllocator* main_alloc = goo_system_allocator_create();
    goo_set_thread_allocator(main_alloc);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, own_allocator, NULL) == 0);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(goo_get_thread_allocator() == main_alloc);
    CHECK_EQ(goo_get_alloc_stats(main_alloc).total_allocations, 0);
    goo_set_thread_allocator(NULL);
    main_alloc->destroy(main_alloc);
    printf("test_threads: ok\n");
    return 0;
}
