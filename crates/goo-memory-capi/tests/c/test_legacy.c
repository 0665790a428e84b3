/* The unsized legacy API, over the built-in default and over a sized custom default allocator
 * that verifies every free/realloc passes back exactly the size it handed out. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "goo_memory.h"
#include "goo/runtime/debug.h"
#include "goo/runtime/pool.h"
#include "check.h"

/* Sized allocator: stores the size in front of each block and checks it on free/realloc. */
typedef struct {
    int live;
    int size_mismatches;
} Sized;

static void* sized_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)options;
    CHECK(alignment <= 16);
    unsigned char* raw = (unsigned char*)malloc(size + 16);
    if (!raw) return NULL;
    memcpy(raw, &size, sizeof size);
    ((Sized*)ctx)->live++;
    return raw + 16;
}

static void sized_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)alignment;
    unsigned char* raw = (unsigned char*)ptr - 16;
    size_t stored;
    memcpy(&stored, raw, sizeof stored);
    if (stored != size) ((Sized*)ctx)->size_mismatches++;
    ((Sized*)ctx)->live--;
    free(raw);
}

static void* sized_realloc(void* ctx, void* ptr, size_t old_size, size_t new_size, size_t alignment,
                           GooAllocOptions options) {
    void* n = sized_alloc(ctx, new_size, alignment, options);
    if (!n) return NULL;
    memcpy(n, ptr, old_size < new_size ? old_size : new_size);
    sized_free(ctx, ptr, old_size, alignment);
    return n;
}

static void exercise(void) {
    char* a = (char*)goo_runtime_alloc(10);
    CHECK(a != NULL);
    CHECK(((uintptr_t)a % 16) == 0);
    strcpy(a, "legacy");
    a = (char*)goo_runtime_realloc(a, 100000);
    CHECK(a != NULL);
    CHECK(strcmp(a, "legacy") == 0);
    a = (char*)goo_runtime_realloc(a, 3);
    CHECK(memcmp(a, "leg", 3) == 0);
    goo_runtime_free(a);

    void* b = goo_alloc(0); /* unique, freeable */
    CHECK(b != NULL);
    goo_free(b);
    void* c = goo_realloc(NULL, 64); /* realloc(NULL, n) allocates */
    CHECK(c != NULL);
    CHECK(goo_realloc(c, 0) == NULL); /* realloc(p, 0) frees */
    goo_free(NULL);
    goo_runtime_free(NULL);
    CHECK(goo_runtime_alloc(SIZE_MAX) == NULL);
    CHECK(goo_runtime_alloc(SIZE_MAX - 8) == NULL);
    void* d = goo_runtime_alloc(8);
    CHECK(goo_runtime_realloc(d, SIZE_MAX - 4) == NULL); /* d survives */
    goo_runtime_free(d);

    /* __attribute__((cleanup)) helper */
    void* e = goo_alloc(32);
    goo_memory_cleanup_ptr(&e);
    CHECK(e == NULL);
    goo_memory_cleanup_ptr(&e);
    goo_memory_cleanup_ptr(NULL);
}

/* Small legacy blocks of a heap allocator, the call-free level's case: every block usable and
 * aligned, exact stats; a second free of one, whether it starts on a page or not, is refused by
 * the heap, whose tag says it is free. */
static void small_heap_blocks(void) {
    enum { M = 3000 };
    static char* b[M];
    GooAllocator* heap = goo_heap_allocator_create();
    CHECK(heap != NULL);
    goo_set_thread_allocator(heap);
    int on_page = -1, off_page = -1;
    for (int i = 0; i < M; i++) {
        size_t n = 1 + (size_t)(i * 37) % 700;
        b[i] = (char*)goo_alloc(n);
        CHECK(b[i] != NULL);
        CHECK(((uintptr_t)b[i] & 15) == 0);
        memset(b[i], i & 0xff, n);
        if ((((uintptr_t)b[i] - 16) & 4095) == 0)
            on_page = i;
        else
            off_page = i;
    }
    CHECK(on_page >= 0 && off_page >= 0);
    CHECK_EQ(goo_get_alloc_stats(heap).allocation_count, M);
    for (int i = 0; i < M; i++) {
        size_t n = 1 + (size_t)(i * 37) % 700;
        CHECK_EQ((unsigned char)b[i][0], (unsigned char)(i & 0xff));
        CHECK_EQ((unsigned char)b[i][n - 1], (unsigned char)(i & 0xff));
        goo_free(b[i]);
    }
    GooAllocStats s = goo_get_alloc_stats(heap);
    CHECK_EQ(s.allocation_count, 0);
    CHECK_EQ(s.bytes_allocated, 0);
    CHECK_EQ(s.total_allocations, M);
    /* A second free of either: the header is read (the heap's memory stays mapped, so blocks
     * that start on a page are not listed), and the heap's tag refuses it. */
    size_t refused = goo_heap_refused_count();
    goo_free(b[on_page]);
    CHECK_EQ(goo_heap_refused_count(), refused + 1);
    goo_free(b[off_page]);
    CHECK_EQ(goo_heap_refused_count(), refused + 2);
    s = goo_get_alloc_stats(heap);
    CHECK_EQ(s.allocation_count, 0);
    CHECK_EQ(s.total_frees, M);
    goo_set_thread_allocator(NULL);
    goo_allocator_destroy(heap);
}

int main(void) {
    small_heap_blocks();

    /* Over the built-in default. */
    exercise();
    GooAllocStats s = goo_get_alloc_stats(NULL);
    CHECK_EQ(s.allocation_count, 0);
    CHECK_EQ(s.bytes_allocated, 0);
    CHECK_EQ(s.failed_allocations, 3);

    /* Over a sized custom default. */
    Sized state = {0, 0};
    GooAllocator sized = {sized_alloc, sized_realloc, sized_free, NULL, GOO_ALLOC_STRATEGY_NULL, NULL, &state,
                          true, {0, 0, 0, 0, 0, 0, 0}};
    goo_set_default_allocator(&sized);
    exercise();
    CHECK_EQ(state.live, 0);
    CHECK_EQ(state.size_mismatches, 0);
    s = goo_get_alloc_stats(&sized);
    CHECK_EQ(s.allocation_count, 0);
    CHECK(s.total_allocations >= 5);

    /* A block outlives a change of the default: it is freed into the allocator it came from. */
    void* keep = goo_runtime_alloc(77);
    CHECK_EQ(state.live, 1);
    goo_set_default_allocator(NULL);
    keep = goo_runtime_realloc(keep, 99);
    CHECK_EQ(state.live, 1);
    goo_runtime_free(keep);
    CHECK_EQ(state.live, 0);
    CHECK_EQ(state.size_mismatches, 0);

    /* A second free of a legacy block whose header the debug allocator's quarantine filled: the
     * header fails its check, so its allocator pointer is not followed; the debug allocator that
     * freed the block reports the double free (with its sites) and refuses it. */
    GooAllocator* system = goo_system_allocator_create();
    GooAllocator* debug = goo_debug_allocator_create(system, 0);
    CHECK(debug != NULL);
    goo_set_thread_allocator(debug);
    char* twice = goo_alloc(33);
    CHECK(twice != NULL);
    goo_free(twice);
    CHECK_EQ(goo_debug_error_count(debug), 0);
    goo_free(twice);
    CHECK_EQ(goo_debug_error_count(debug), 1);
    CHECK(goo_realloc(twice, 64) == NULL);
    CHECK_EQ(goo_debug_error_count(debug), 2);
    CHECK_EQ(goo_get_alloc_stats(debug).allocation_count, 0);
    goo_set_thread_allocator(NULL);
    goo_allocator_destroy(debug);
    goo_allocator_destroy(system);

    /* A second free or resize of a large legacy block, which the C library unmapped at the first
     * free, is refused without reading its header (it read unmapped memory: a crash). */
    for (int round = 0; round < 2; round++) {
        if (round == 1) goo_set_thread_allocator(goo_system_allocator_create());
        char* large = (char*)goo_alloc(1 << 20);
        CHECK(large != NULL);
        CHECK(((uintptr_t)large & 4095) == 16);
        large[0] = 'L';
        large[(1 << 20) - 1] = 'l';
        goo_free(large);
        goo_free(large);
        CHECK(goo_realloc(large, 10) == NULL);
        /* Across 16 KiB, both ways: the bytes move with the block. */
        char* grow = (char*)goo_alloc(100);
        strcpy(grow, "grows");
        grow = (char*)goo_realloc(grow, 200000);
        CHECK(grow != NULL && strcmp(grow, "grows") == 0);
        CHECK(((uintptr_t)grow & 4095) == 16);
        grow = (char*)goo_realloc(grow, 50);
        CHECK(grow != NULL && strcmp(grow, "grows") == 0);
        goo_free(grow);
        if (round == 1) {
            GooAllocator* sys = goo_get_thread_allocator();
            CHECK_EQ(goo_get_alloc_stats(sys).allocation_count, 0);
            goo_set_thread_allocator(NULL);
            goo_allocator_destroy(sys);
        }
    }
    CHECK_EQ(goo_get_alloc_stats(NULL).allocation_count, 0);

    /* A pool of 16-byte aligned objects serves large legacy blocks at that alignment. */
    GooAllocator* pool = goo_pool_allocator_create(64 * 1024, 4);
    goo_set_thread_allocator(pool);
    void* pooled = goo_alloc(20000);
    CHECK(pooled != NULL);
    memset(pooled, 'p', 20000);
    pooled = goo_realloc(pooled, 30000);
    CHECK(pooled != NULL && ((char*)pooled)[19999] == 'p');
    pooled = goo_realloc(pooled, 100);
    CHECK(pooled != NULL && ((char*)pooled)[99] == 'p');
    goo_free(pooled);
    CHECK_EQ(goo_get_alloc_stats(pool).allocation_count, 0);
    goo_set_thread_allocator(NULL);
    goo_allocator_destroy(pool);

    goo_memory_cleanup();
    printf("test_legacy: ok\n");
    return 0;
}
