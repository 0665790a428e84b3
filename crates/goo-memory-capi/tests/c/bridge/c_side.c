/* The C side of the bridge test: an allocator written in C (used by Rust collections), and C
 * code that allocates through allocators Rust hands it. Built as a shared object by
 * tests/bridge.rs and loaded with dlopen. */
#include <stdlib.h>
#include <string.h>

#include "goo/runtime/memory.h"

static long live_blocks;
static long calls;

static void* counting_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)ctx;
    (void)options;
    void* p = NULL;
    if (posix_memalign(&p, alignment < sizeof(void*) ? sizeof(void*) : alignment, size) != 0) return NULL;
    live_blocks++;
    calls++;
    return p;
}

static void counting_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)ctx;
    (void)size;
    (void)alignment;
    live_blocks--;
    calls++;
    free(ptr);
}

static GooAllocator counting = {counting_alloc, NULL, counting_free, NULL, GOO_ALLOC_STRATEGY_NULL, NULL, NULL,
                                true, {0, 0, 0, 0, 0, 0, 0}};

GooAllocator* bridge_counting_allocator(void) { return &counting; }
long bridge_counting_live(void) { return live_blocks; }
long bridge_counting_calls(void) { return calls; }

typedef void* (*AllocWith)(GooAllocator*, size_t);
typedef void (*FreeWith)(GooAllocator*, void*, size_t);

/* Allocates through `a` both ways a C program would: its vtable directly, and the library's
 * front door (passed in, so this object does not link the library). Returns 0 on success. */
int bridge_use_allocator(GooAllocator* a, size_t size, AllocWith alloc_with, FreeWith free_with) {
    void* blocks[32];
    for (int i = 0; i < 16; i++) {
        blocks[i] = a->alloc(a->context, size, 0, GOO_ALLOC_DEFAULT);
        if (!blocks[i]) return 1;
        memset(blocks[i], i, size);
    }
    for (int i = 16; i < 32; i++) {
        blocks[i] = alloc_with(a, size);
        if (!blocks[i]) return 2;
        memset(blocks[i], i, size);
    }
    for (int i = 0; i < 32; i++)
        if (((unsigned char*)blocks[i])[size - 1] != (unsigned char)i) return 3;
    for (int i = 31; i >= 16; i--) free_with(a, blocks[i], size);
    for (int i = 15; i >= 0; i--) a->free(a->context, blocks[i], size, 0);
    return 0;
}
