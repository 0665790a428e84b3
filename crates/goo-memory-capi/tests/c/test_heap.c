/* The heap allocator from C: sized calls, zeroing, alignment, realloc across classes, exact
 * stats, frees from another thread, and a refused double free. */
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

    heap->destroy(heap);
    return 0;
}
