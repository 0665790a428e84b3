/* goo-memory demo: what a runtime author does with the library, from C.
 * Build and run: scripts/demo.sh */
#include <stdio.h>
#include <string.h>

#include "goo_memory.h"

static void print_stats(const char* label, GooAllocator* a) {
    GooAllocStats s = goo_get_alloc_stats(a);
    printf("%-28s live=%zu bytes in %zu blocks, peak=%zu, allocs=%zu, frees=%zu, failed=%zu\n", label,
           s.bytes_allocated, s.allocation_count, s.max_bytes_allocated, s.total_allocations, s.total_frees,
           s.failed_allocations);
}

static int oom_calls;
static void release_caches(void) { oom_calls++; }

int main(void) {
    goo_memory_init();

    /* The spec's basic usage. */
    void* mem = goo_memory_alloc(1024);
    memset(mem, 0, 1024);
    print_stats("default after alloc(1024)", NULL);
    goo_memory_free(mem, 1024);

    /* A per-subsystem allocator with its own stats, made current for this thread. */
    GooAllocator* compiler_heap = goo_system_allocator_create();
    goo_set_thread_allocator(compiler_heap);
    char* names[100];
    for (int i = 0; i < 100; i++) {
        names[i] = (char*)goo_alloc(32); /* legacy, unsized: size kept in a header */
        snprintf(names[i], 32, "symbol_%d", i);
    }
    names[0] = (char*)goo_realloc(names[0], 4096);
    print_stats("compiler heap, 100 names", compiler_heap);
    for (int i = 0; i < 100; i++) goo_free(names[i]);
    goo_set_thread_allocator(NULL);

    /* Bad input is a clean failure, counted. */
    void* huge = goo_memory_alloc_array(compiler_heap, (size_t)-1 / 2, 4, 0, GOO_ALLOC_DEFAULT);
    printf("array of SIZE_MAX/2 x 4 bytes: %s\n", huge ? "allocated?!" : "NULL (overflow refused)");

    /* Out of memory with the RETRY strategy: the handler gets a chance to free memory. */
    compiler_heap->strategy = GOO_ALLOC_STRATEGY_RETRY;
    compiler_heap->out_of_mem_fn = release_caches;
    void* too_big = goo_memory_alloc_with(compiler_heap, (size_t)1 << 60);
    printf("2^60 bytes with RETRY: %s after %d out-of-memory handler calls\n", too_big ? "allocated?!" : "NULL",
           oom_calls);
    print_stats("compiler heap, at the end", compiler_heap);

    compiler_heap->destroy(compiler_heap);
    goo_memory_cleanup(); /* reports leaks of tracked allocators, if any */
    return 0;
}
