/* An allocator written in C: it gets stats, zeroing and strategies from the front door.
 * RETRY is checked in-process; PANIC and NOFAIL are checked in a child process. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "goo/runtime/memory.h"
#include "check.h"
#include "child.h"

/* A counting malloc-backed allocator that can be told to fail its next N requests. */
typedef struct {
    int fail_next;
    int allocs, frees, reallocs;
} Counting;

static void* counting_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    Counting* c = (Counting*)ctx;
    (void)options;
    if (c->fail_next > 0) {
        c->fail_next--;
        return NULL;
    }
    c->allocs++;
    void* p = NULL;
    if (posix_memalign(&p, alignment < sizeof(void*) ? sizeof(void*) : alignment, size) != 0) return NULL;
    memset(p, 0xcd, size); /* never zeroes: the front door must */
    return p;
}

static void* counting_realloc(void* ctx, void* ptr, size_t old_size, size_t new_size, size_t alignment,
                              GooAllocOptions options) {
    Counting* c = (Counting*)ctx;
    if (c->fail_next > 0) {
        c->fail_next--;
        return NULL;
    }
    c->reallocs++;
    void* n = counting_alloc(ctx, new_size, alignment, options);
    c->allocs--;
    if (!n) return NULL;
    memcpy(n, ptr, old_size < new_size ? old_size : new_size);
    free(ptr);
    return n;
}

static void counting_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)size;
    (void)alignment;
    ((Counting*)ctx)->frees++;
    free(ptr);
}

static Counting counting_state;
static GooAllocator counting = {
    counting_alloc, counting_realloc, counting_free, NULL, GOO_ALLOC_STRATEGY_NULL, NULL, &counting_state,
    true, {0, 0, 0, 0, 0, 0, 0}};

static int oom_calls;
static void on_oom(void) { oom_calls++; }

static int gc_calls;
static size_t gc_needed;
static void on_gc(void* user, size_t needed) {
    gc_calls++;
    gc_needed = needed;
    *(int*)user = 0; /* "collecting" makes the next attempt succeed */
}

static void stats_and_zeroing(void) {
    unsigned char* p = (unsigned char*)goo_memory_alloc_ex(&counting, 256, 64, GOO_ALLOC_ZERO);
    CHECK(p != NULL);
    CHECK(((uintptr_t)p % 64) == 0);
    for (int i = 0; i < 256; i++) CHECK_EQ(p[i], 0);
    p = (unsigned char*)goo_memory_realloc_ex(&counting, p, 256, 1024, 64, GOO_ALLOC_ZERO);
    CHECK(p != NULL);
    for (int i = 0; i < 1024; i++) CHECK_EQ(p[i], 0);
    GooAllocStats s = goo_get_alloc_stats(&counting);
    CHECK_EQ(s.bytes_allocated, 1024);
    CHECK_EQ(s.allocation_count, 1);
    CHECK_EQ(s.max_bytes_allocated, 1024);
    CHECK_EQ(counting.stats.bytes_allocated, 1024); /* C allocators count in place */
    goo_memory_free_ex(&counting, p, 1024, 64);
    s = goo_get_alloc_stats(&counting);
    CHECK_EQ(s.bytes_allocated, 0);
    CHECK_EQ(s.total_frees, 1);
    CHECK_EQ(counting_state.frees, 1);
}

static void null_strategy(void) {
    GooAllocStats before = goo_get_alloc_stats(&counting);
    counting_state.fail_next = 1;
    CHECK(goo_memory_alloc_with(&counting, 32) == NULL);
    CHECK_EQ(goo_get_alloc_stats(&counting).failed_allocations, before.failed_allocations + 1);
    CHECK_EQ(counting_state.fail_next, 0); /* tried exactly once */
}

static void retry_strategy(void) {
    GooAllocStats before = goo_get_alloc_stats(&counting);
    counting.strategy = GOO_ALLOC_STRATEGY_RETRY;
    counting.out_of_mem_fn = on_oom;
    /* fails twice, then the second retry succeeds */
    counting_state.fail_next = 2;
    oom_calls = 0;
    void* p = goo_memory_alloc_with(&counting, 48);
    CHECK(p != NULL);
    CHECK_EQ(oom_calls, 2);
    goo_memory_free_with(&counting, p, 48);
    CHECK_EQ(goo_get_alloc_stats(&counting).failed_allocations, before.failed_allocations);
    /* fails forever: bounded retries, then NULL and one failure counted */
    counting_state.fail_next = 1000;
    oom_calls = 0;
    CHECK(goo_memory_alloc_with(&counting, 48) == NULL);
    CHECK_EQ(oom_calls, 3);
    CHECK_EQ(goo_get_alloc_stats(&counting).failed_allocations, before.failed_allocations + 1);
    /* realloc retries too, and the block survives a failed realloc */
    counting_state.fail_next = 0;
    char* q = (char*)goo_memory_alloc_with(&counting, 8);
    strcpy(q, "survive");
    counting_state.fail_next = 1000;
    CHECK(goo_memory_realloc_with(&counting, q, 8, 4096) == NULL);
    CHECK(strcmp(q, "survive") == 0);
    counting_state.fail_next = 0;
    goo_memory_free_with(&counting, q, 8);
    /* without an allocator handler, the global one is used */
    counting.out_of_mem_fn = NULL;
    goo_set_out_of_mem_handler(on_oom);
    counting_state.fail_next = 1;
    oom_calls = 0;
    p = goo_memory_alloc_with(&counting, 16);
    CHECK(p != NULL);
    CHECK_EQ(oom_calls, 1);
    goo_memory_free_with(&counting, p, 16);
    goo_set_out_of_mem_handler(NULL);
    /* with neither handler, the request is asked once and fails as with NULL (the header says so) */
    counting_state.fail_next = 2;
    before = goo_get_alloc_stats(&counting);
    CHECK(goo_memory_alloc_with(&counting, 16) == NULL);
    CHECK_EQ(counting_state.fail_next, 1);
    CHECK_EQ(goo_get_alloc_stats(&counting).failed_allocations, before.failed_allocations + 1);
    counting_state.fail_next = 0;
    counting.strategy = GOO_ALLOC_STRATEGY_NULL;
}

static void gc_strategy(void) {
    counting.strategy = GOO_ALLOC_STRATEGY_GC;
    goo_memory_set_gc_handler(on_gc, &counting_state.fail_next);
    counting_state.fail_next = 5;
    void* p = goo_memory_alloc_with(&counting, 777);
    CHECK(p != NULL);
    CHECK_EQ(gc_calls, 1);
    CHECK_EQ(gc_needed, 777);
    goo_memory_free_with(&counting, p, 777);
    goo_memory_set_gc_handler(NULL, NULL);
    counting.strategy = GOO_ALLOC_STRATEGY_NULL;
}

/* A hook or handler that clears itself (freeing its data) is not called again: each retry
 * reads the registered one afresh. */
static int self_clearing_calls;
static void self_clearing_gc(void* user_data, size_t needed) {
    (void)needed;
    self_clearing_calls++;
    CHECK_EQ(*(int*)user_data, 42);
    goo_memory_set_gc_handler(NULL, NULL);
    free(user_data);
}
static void self_clearing_oom(void) {
    self_clearing_calls++;
    goo_set_out_of_mem_handler(NULL);
}

static void handlers_that_clear_themselves(void) {
    GooAllocator* heap = goo_heap_allocator_create();
    CHECK(goo_allocator_set_limit(heap, 1000));
    heap->strategy = GOO_ALLOC_STRATEGY_GC;
    int* data = (int*)malloc(sizeof *data);
    *data = 42;
    goo_memory_set_gc_handler(self_clearing_gc, data);
    CHECK(goo_memory_alloc_with(heap, 5000) == NULL);
    CHECK_EQ(self_clearing_calls, 1);
    heap->strategy = GOO_ALLOC_STRATEGY_RETRY;
    goo_set_out_of_mem_handler(self_clearing_oom);
    self_clearing_calls = 0;
    CHECK(goo_memory_alloc_with(heap, 5000) == NULL);
    CHECK_EQ(self_clearing_calls, 1);
    CHECK_EQ(goo_get_alloc_stats(heap).failed_allocations, 2);
    heap->destroy(heap);
}

static void panic_child(void) {
    counting.strategy = GOO_ALLOC_STRATEGY_PANIC;
    counting_state.fail_next = 1;
    goo_memory_alloc_with(&counting, 12345);
}

static void nofail_child(void) {
    counting_state.fail_next = 1;
    goo_memory_alloc_ex(&counting, 54321, 0, GOO_ALLOC_NOFAIL);
}

static void panic_on_bad_input_child(void) {
    counting.strategy = GOO_ALLOC_STRATEGY_PANIC;
    goo_memory_alloc_with(&counting, SIZE_MAX);
}

static void aborting_strategies(void) {
    char buf[1024];
    CHECK_EQ(in_child(panic_child, buf, sizeof buf), SIGABRT);
    CHECK(strstr(buf, "12345 bytes") != NULL);
    CHECK(strstr(buf, "PANIC") != NULL);
    CHECK_EQ(in_child(nofail_child, buf, sizeof buf), SIGABRT);
    CHECK(strstr(buf, "54321 bytes") != NULL);
    CHECK(strstr(buf, "NOFAIL") != NULL);
    CHECK_EQ(in_child(panic_on_bad_input_child, buf, sizeof buf), SIGABRT);
    CHECK(strstr(buf, "invalid request") != NULL);
}

/* A vtable with only alloc: realloc is alloc+copy+free (free missing: leaks, by contract). */
static void partial_vtables(void) {
    GooAllocator only_alloc = counting;
    only_alloc.realloc = NULL;
    only_alloc.track_stats = false;
    char* p = (char*)goo_memory_alloc_with(&only_alloc, 4);
    strcpy(p, "abc");
    int frees = counting_state.frees;
    p = (char*)goo_memory_realloc_with(&only_alloc, p, 4, 64);
    CHECK(strcmp(p, "abc") == 0);
    CHECK_EQ(counting_state.frees, frees + 1);
    goo_memory_free_with(&only_alloc, p, 64);

    GooAllocator empty;
    memset(&empty, 0, sizeof empty);
    CHECK(goo_memory_alloc_with(&empty, 16) == NULL);
    CHECK(goo_memory_realloc_with(&empty, NULL, 0, 16) == NULL);
    goo_memory_free_with(&empty, NULL, 16);
    CHECK_EQ(goo_get_alloc_stats(&empty).failed_allocations, 2);
}

/* An allocator that remembers the alignment it allocated each block at and checks that a free
 * or a resize names the same (memory.h: "Free a live block of the given size and alignment"). */
enum { TRACKED = 8 };
static struct {
    void* ptr;
    size_t alignment;
} tracked[TRACKED];
static int alignment_mismatches;

static void track(void* p, size_t alignment) {
    for (int i = 0; i < TRACKED; i++)
        if (!tracked[i].ptr) {
            tracked[i].ptr = p;
            tracked[i].alignment = alignment;
            return;
        }
    CHECK(!"too many blocks");
}

static void untrack(void* p, size_t alignment) {
    for (int i = 0; i < TRACKED; i++)
        if (tracked[i].ptr == p) {
            if (tracked[i].alignment != alignment) alignment_mismatches++;
            tracked[i].ptr = NULL;
            return;
        }
    CHECK(!"an unknown block");
}

static void* aligned_alloc_fn(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)ctx, (void)options;
    void* p = NULL;
    if (posix_memalign(&p, alignment < sizeof(void*) ? sizeof(void*) : alignment, size) != 0) return NULL;
    track(p, alignment);
    return p;
}

static void aligned_free_fn(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)ctx, (void)size;
    untrack(ptr, alignment);
    free(ptr);
}

static void* aligned_realloc_fn(void* ctx, void* ptr, size_t old_size, size_t new_size, size_t alignment,
                                GooAllocOptions options) {
    void* p = aligned_alloc_fn(ctx, new_size, alignment, options);
    if (!p) return NULL;
    memcpy(p, ptr, old_size < new_size ? old_size : new_size);
    aligned_free_fn(ctx, ptr, old_size, alignment);
    return p;
}

/* At natural alignment a block under 16 bytes has its own (4 for 4 bytes): a resize across it
 * frees each block at the alignment it was allocated at, with or without a realloc function. */
static void alignments_of_resizes(void) {
    for (int with_realloc = 0; with_realloc < 2; with_realloc++) {
        GooAllocator a = {0};
        a.alloc = aligned_alloc_fn;
        a.free = aligned_free_fn;
        a.realloc = with_realloc ? aligned_realloc_fn : NULL;
        a.track_stats = true;
        char* p = (char*)goo_memory_alloc_with(&a, 4);
        CHECK(p != NULL);
        memcpy(p, "abc", 4);
        p = (char*)goo_memory_realloc_with(&a, p, 4, 200);
        CHECK(p != NULL && strcmp(p, "abc") == 0);
        p = (char*)goo_memory_realloc_with(&a, p, 200, 4);
        CHECK(p != NULL && strcmp(p, "abc") == 0);
        p = (char*)goo_memory_realloc_with(&a, p, 4, 8);
        CHECK(p != NULL && strcmp(p, "abc") == 0);
        goo_memory_free_with(&a, p, 8);
        CHECK_EQ(alignment_mismatches, 0);
        GooAllocStats s = goo_get_alloc_stats(&a);
        CHECK_EQ(s.allocation_count, 0);
        CHECK_EQ(s.bytes_allocated, 0);
    }
}

int main(void) {
    alignments_of_resizes();
    stats_and_zeroing();
    null_strategy();
    retry_strategy();
    gc_strategy();
    handlers_that_clear_themselves();
    aborting_strategies();
    partial_vtables();
    printf("test_custom: ok\n");
    return 0;
}
