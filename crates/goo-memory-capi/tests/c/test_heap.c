/* The heap allocator from C: sized calls, zeroing, alignment, realloc across classes, exact
 * stats, frees from another thread, and a refused double free; large blocks (above 16 KiB, or
 * aligned above 4096): resized and aligned, freed across threads with exact totals, and every
 * bad free or realloc of one refused (no crash, nothing counted). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "goo/runtime/memory.h"

enum { N = 4096 };
static void* blocks[N];
static GooAllocator* heap;

static size_t size_of_block(int i) { return 1 + (size_t)(i * 97) % 5000; }

enum { LN = 400 };
static void* large[2][LN];
static size_t size_of_large(int k, int i) { return 16385 + (size_t)(i * 7919 + k * 104729) % 150000; }

static void* alloc_large(void* arg) {
    int k = *(int*)arg;
    for (int i = 0; i < LN; i++) {
        large[k][i] = goo_memory_alloc_with(heap, size_of_large(k, i));
        CHECK(large[k][i] != NULL);
        ((unsigned char*)large[k][i])[0] = (unsigned char)k;
    }
    return NULL;
}

/* Frees the other thread's large blocks. */
static void* free_large(void* arg) {
    int k = 1 - *(int*)arg;
    for (int i = 0; i < LN; i++) {
        CHECK_EQ(((unsigned char*)large[k][i])[0], (unsigned char)k);
        goo_memory_free_with(heap, large[k][i], size_of_large(k, i));
    }
    return NULL;
}

static void run_large_threads(void) {
    GooAllocStats before = goo_get_alloc_stats(heap);
    pthread_t t[2];
    int ks[2] = {0, 1};
    for (int k = 0; k < 2; k++) CHECK(pthread_create(&t[k], NULL, alloc_large, &ks[k]) == 0);
    for (int k = 0; k < 2; k++) pthread_join(t[k], NULL);
    size_t total = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < LN; i++) total += size_of_large(k, i);
    GooAllocStats s = goo_get_alloc_stats(heap);
    CHECK_EQ(s.allocation_count, before.allocation_count + 2 * LN);
    CHECK_EQ(s.bytes_allocated, before.bytes_allocated + total);
    CHECK(s.bytes_reserved >= s.bytes_allocated);
    for (int k = 0; k < 2; k++) CHECK(pthread_create(&t[k], NULL, free_large, &ks[k]) == 0);
    for (int k = 0; k < 2; k++) pthread_join(t[k], NULL);
    s = goo_get_alloc_stats(heap);
    CHECK_EQ(s.allocation_count, before.allocation_count);
    CHECK_EQ(s.bytes_allocated, before.bytes_allocated);
    CHECK_EQ(s.total_frees, before.total_frees + 2 * LN);
}

/* Large blocks: resized to and from the classes, aligned, and every bad free or realloc of one
 * refused with the block left alone. */
static void check_large_blocks(void) {
    size_t refused = goo_heap_refused_count();
    /* small -> large -> larger -> smaller -> small, contents and zeroing kept */
    unsigned char* r = goo_memory_alloc_with(heap, 100);
    memset(r, 1, 100);
    size_t sizes[] = {50000, 200000, 20000, 16385, 300};
    size_t old = 100;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        r = goo_memory_realloc_ex(heap, r, old, sizes[k], 0, GOO_ALLOC_ZERO);
        CHECK(r != NULL);
        CHECK(r[0] == 1 && r[99] == 1);
        if (sizes[k] > old) CHECK(r[old] == 0 && r[sizes[k] - 1] == 0);
        old = sizes[k];
    }
    goo_memory_free_with(heap, r, old);
    /* aligned at and above the classes' 4096 */
    size_t aligns[] = {4096, 8192, 65536};
    size_t asizes[] = {100, 20000, 100000};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            unsigned char* p = goo_memory_alloc_ex(heap, asizes[j], aligns[i], GOO_ALLOC_DEFAULT);
            CHECK(p != NULL && (uintptr_t)p % aligns[i] == 0);
            memset(p, 7, asizes[j]);
            p = goo_memory_realloc_ex(heap, p, asizes[j], 2 * asizes[j], aligns[i], GOO_ALLOC_ZERO);
            CHECK(p != NULL && (uintptr_t)p % aligns[i] == 0);
            CHECK(p[asizes[j] - 1] == 7 && p[asizes[j]] == 0 && p[2 * asizes[j] - 1] == 0);
            if (j == 0)
                goo_memory_free_with(heap, p, 2 * asizes[j]); /* without its alignment: taken back */
            else
                goo_memory_free_ex(heap, p, 2 * asizes[j], aligns[i]);
        }
    }
    /* the current allocator's aligned calls (the heap by default) */
    for (int i = 0; i < 3; i++) {
        void* p = goo_memory_alloc_aligned(100000, aligns[i]);
        CHECK(p != NULL && (uintptr_t)p % aligns[i] == 0);
        goo_memory_free_aligned(p, 100000, aligns[i]);
    }
    CHECK_EQ(goo_heap_refused_count(), refused);

    GooAllocStats before = goo_get_alloc_stats(heap);
    unsigned char* L = goo_memory_alloc_with(heap, 100000);
    CHECK(L != NULL);
    memset(L, 5, 100000);
    /* wrong sizes: larger, one byte off, smaller, a small one */
    goo_memory_free_with(heap, L, 5000000);
    goo_memory_free_with(heap, L, 99999);
    goo_memory_free_with(heap, L, 100001);
    goo_memory_free_with(heap, L, 1000);
    CHECK_EQ(goo_heap_refused_count(), refused + 4);
    GooAllocStats s = goo_get_alloc_stats(heap);
    CHECK_EQ(s.allocation_count, before.allocation_count + 1);
    CHECK_EQ(s.bytes_allocated, before.bytes_allocated + 100000);
    CHECK_EQ(s.total_frees, before.total_frees);
    CHECK(s.bytes_reserved >= s.bytes_allocated && s.bytes_reserved < ((size_t)1 << 40));
    /* no live large block: the inside of one, a static, a stack and a foreign malloc buffer */
    static char static_buf[200000] __attribute__((aligned(64)));
    char local[64];
    void* foreign = malloc(100000);
    CHECK(foreign != NULL);
    goo_memory_free_with(heap, L + 16, 100000);
    goo_memory_free_with(heap, L + 50000, 100000);
    goo_memory_free_with(heap, static_buf, 100000);
    goo_memory_free_with(heap, local, 100000);
    goo_memory_free_with(heap, foreign, 100000);
    free(foreign); /* still malloc's */
    CHECK_EQ(goo_heap_refused_count(), refused + 9);
    /* resizes naming a wrong old size, or of the inside: NULL, the block untouched */
    CHECK(goo_memory_realloc_with(heap, L, (size_t)64 << 20, (size_t)128 << 20) == NULL);
    CHECK(goo_memory_realloc_with(heap, L, 100016, 20) == NULL);
    CHECK(goo_memory_realloc_with(heap, L + 64, 100000, 200000) == NULL);
    CHECK_EQ(goo_heap_refused_count(), refused + 12);
    CHECK(L[0] == 5 && L[50000] == 5 && L[99999] == 5);
    s = goo_get_alloc_stats(heap);
    CHECK_EQ(s.allocation_count, before.allocation_count + 1);
    CHECK_EQ(s.bytes_allocated, before.bytes_allocated + 100000);
    /* a double free */
    goo_memory_free_with(heap, L, 100000);
    goo_memory_free_with(heap, L, 100000);
    CHECK_EQ(goo_heap_refused_count(), refused + 13);
    s = goo_get_alloc_stats(heap);
    CHECK_EQ(s.allocation_count, before.allocation_count);
    CHECK_EQ(s.bytes_allocated, before.bytes_allocated);
    CHECK_EQ(s.total_frees, before.total_frees + 1);
}

/* goo_heap_collect gives back the spans whose blocks are all free, at once: 1,024 blocks of
 * 4 KiB (16 a span), all freed, then collected; the blocks handed out next are the heap's. */
static void check_collect(void) {
    enum { CN = 1024, CS = 4000 };
    static void* c[CN];
    for (int i = 0; i < CN; i++) {
        c[i] = goo_memory_alloc_with(heap, CS);
        CHECK(c[i] != NULL);
        memset(c[i], 1, CS);
    }
    size_t reserved = goo_get_alloc_stats(heap).bytes_reserved;
    for (int i = 0; i < CN; i++) goo_memory_free_with(heap, c[i], CS);
    /* The heap gave back none of the spans its cache still held blocks of, nor its reserve;
     * others, if the frees took longer than its purge delay (under valgrind). */
    size_t given = goo_heap_collect();
    CHECK(given >= 65536);
    /* Now all of the class's spans are gone, but its first, which earlier requests may have
     * carved in part. */
    CHECK(goo_get_alloc_stats(heap).bytes_reserved + (size_t)(CN / 16 - 1) * 65536 <= reserved);
    CHECK_EQ(goo_heap_collect(), 0); /* nothing left to give */
    for (int i = 0; i < CN; i++) {
        c[i] = goo_memory_alloc_with(heap, CS);
        CHECK(c[i] != NULL);
        memset(c[i], 2, CS);
    }
    for (int i = 0; i < CN; i++) goo_memory_free_with(heap, c[i], CS);
}

static void* free_half(void* arg) {
    int start = *(int*)arg;
    for (int i = start; i < N; i += 2) {
        CHECK_EQ(((unsigned char*)blocks[i])[0], (unsigned char)i);
        goo_memory_free_with(heap, blocks[i], size_of_block(i));
    }
    return NULL;
}

int main(void) {
    heap = goo_heap_allocator_create();
    CHECK(heap != NULL);
    CHECK(heap->track_stats);
    for (int i = 0; i < N; i++) {
        blocks[i] = goo_memory_alloc_with(heap, size_of_block(i));
        CHECK(blocks[i] != NULL);
        CHECK(((uintptr_t)blocks[i] % 16) == 0);
        memset(blocks[i], i, size_of_block(i));
    }
    GooAllocStats s = goo_get_alloc_stats(heap);
    CHECK_EQ(s.allocation_count, N);
    CHECK(s.bytes_reserved >= s.bytes_allocated);
    /* Two other threads free every block. */
    pthread_t t[2];
    int starts[2] = {0, 1};
    for (int k = 0; k < 2; k++) CHECK(pthread_create(&t[k], NULL, free_half, &starts[k]) == 0);
    for (int k = 0; k < 2; k++) pthread_join(t[k], NULL);
    s = goo_get_alloc_stats(heap);
    CHECK_EQ(s.allocation_count, 0);
    CHECK_EQ(s.bytes_allocated, 0);
    CHECK_EQ(s.total_frees, N);

    /* zeroed, aligned, resized */
    unsigned char* z = goo_memory_alloc_ex(heap, 300, 0, GOO_ALLOC_ZERO);
    for (int i = 0; i < 300; i++) CHECK_EQ(z[i], 0);
    memset(z, 7, 300);
    z = goo_memory_realloc_ex(heap, z, 300, 70000, 0, GOO_ALLOC_ZERO);
    CHECK(z != NULL);
    CHECK_EQ(z[299], 7);
    CHECK_EQ(z[69999], 0);
    z = goo_memory_realloc_with(heap, z, 70000, 20);
    CHECK_EQ(z[19], 7);
    goo_memory_free_with(heap, z, 20);
    void* al = goo_memory_alloc_ex(heap, 100, 4096, GOO_ALLOC_DEFAULT);
    CHECK(((uintptr_t)al % 4096) == 0);
    goo_memory_free_ex(heap, al, 100, 4096);

    /* A double free is refused: the block is handed out once. */
    void* p = goo_memory_alloc_with(heap, 64);
    goo_memory_free_with(heap, p, 64);
    goo_memory_free_with(heap, p, 64);
    void* a = goo_memory_alloc_with(heap, 64);
    void* b = goo_memory_alloc_with(heap, 64);
    CHECK(a != b);
    goo_memory_free_with(heap, a, 64);
    goo_memory_free_with(heap, b, 64);

    /* Wrong sizes are refused, the C library never sees a heap block: a small block freed
     * or resized naming a large size, and an interior pointer. */
    char* w = goo_memory_alloc_with(heap, 48);
    CHECK(w != NULL);
    goo_memory_free_with(heap, w, 1 << 20);
    CHECK(goo_memory_realloc_with(heap, w, 1 << 20, 16) == NULL);
    goo_memory_free_with(heap, w + 16, 32);
    w[47] = 1; /* still live, still the program's */
    void* c = goo_memory_alloc_with(heap, 48);
    CHECK(c != w);
    goo_memory_free_with(heap, c, 48);
    goo_memory_free_with(heap, w, 48);

    /* A size of another class is refused, also where some alignment would give the block's
     * class (memory.h); only a block an aligned request got may be freed naming its size
     * without the alignment. */
    size_t refused = goo_heap_refused_count();
    GooAllocStats before = goo_get_alloc_stats(heap);
    size_t sizes[][2] = {{4096, 1}, {64, 48}, {64, 33}, {8192, 4097}, {256, 129}, {1024, 600}, {128, 65}};
    size_t n = sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < n; i++) {
        char* q = goo_memory_alloc_with(heap, sizes[i][0]);
        goo_memory_free_with(heap, q, sizes[i][1]);                            /* refused */
        CHECK(goo_memory_realloc_with(heap, q, sizes[i][1], 8) == NULL);       /* refused */
        CHECK_EQ(goo_get_alloc_stats(heap).bytes_allocated, before.bytes_allocated + sizes[i][0]);
        goo_memory_free_with(heap, q, sizes[i][0]);
    }
    CHECK_EQ(goo_heap_refused_count(), refused + 2 * n);
    char* aligned = goo_memory_alloc_ex(heap, 100, 64, GOO_ALLOC_DEFAULT); /* a 128-byte block */
    CHECK(((uintptr_t)aligned % 64) == 0);
    goo_memory_free_with(heap, aligned, 100); /* taken back, no alignment named */
    CHECK_EQ(goo_heap_refused_count(), refused + 2 * n);
    GooAllocStats after = goo_get_alloc_stats(heap);
    CHECK_EQ(after.bytes_allocated, before.bytes_allocated);
    CHECK_EQ(after.allocation_count, before.allocation_count);

    check_large_blocks();
    run_large_threads();
    check_collect();

    heap->destroy(heap);
    return 0;
}
