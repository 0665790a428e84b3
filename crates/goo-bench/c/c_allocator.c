/* A plain allocator written in C, for the bridge benchmark: malloc/free behind the Goo vtable
 * signatures. */
#include <stdlib.h>

#include "goo/runtime/memory.h"

void* bench_c_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)ctx;
    (void)alignment;
    (void)options;
    return malloc(size);
}

void bench_c_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)ctx;
    (void)size;
    (void)alignment;
    free(ptr);
}

static GooAllocator bench_c = {bench_c_alloc, NULL, bench_c_free, NULL, GOO_ALLOC_STRATEGY_NULL, NULL, NULL, false,
                               {0, 0, 0, 0, 0, 0, 0}};

GooAllocator* bench_c_allocator(void) { return &bench_c; }
