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

static void say_closed(void* what) { printf("cleanup ran: closed %s\n", (const char*)what); }

static int events_seen;
static bool count_event(const GooMemoryEvent* event, void* user_data) {
    (void)event;
    (void)user_data;
    events_seen++;
    return true;
}

int main(void) {
    goo_memory_init();

    /* The basic calls: allocate from the default allocator, read its stats, free. */
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

    /* A pool of 64-byte objects, 100 per block. */
    GooAllocator* pool = goo_pool_allocator_create(64, 100);
    void* obj = goo_memory_alloc_with(pool, 64);
    goo_memory_free_with(pool, obj, 64);
    GooPoolStats ps;
    goo_pool_allocator_get_stats(pool, &ps);
    printf("pool: %zu objects in %zu block(s), %zu free\n", ps.total_objects, ps.blocks, ps.free_objects);
    pool->destroy(pool);

    /* An arena: bump allocation, a checkpoint, bulk free. */
    GooAllocator* arena = goo_arena_allocator_create(4096);
    goo_allocator_set_name(arena, "parser arena");
    for (int i = 0; i < 1000; i++) goo_memory_alloc_with(arena, 24); /* AST nodes: never freed one by one */
    GooArenaMark mark = goo_arena_mark(arena);
    for (int i = 0; i < 500; i++) goo_memory_alloc_with(arena, 24); /* a speculative parse ... */
    goo_arena_rewind(arena, mark);                                  /* ... backtracked */
    print_stats("arena after rewind", arena);

    /* A region tree with a cleanup tied to the child's life, and the tree report. */
    GooAllocator* module = goo_region_allocator_create(8192, true);
    goo_region_set_name(module, "module");
    GooAllocator* function = goo_region_create_child(module, 1024);
    goo_region_set_name(function, "function");
    goo_memory_alloc_with(module, 100);
    goo_memory_alloc_with(function, 40);
    goo_region_add_cleanup(function, say_closed, "function's temp file");
    char tree[512];
    goo_region_report(module, tree, sizeof tree);
    printf("region tree:\n%s", tree);
    module->destroy(module); /* destroys the child first, which runs its cleanup */

    /* A scope: what is still live at its end is freed (and reported as implicit frees). */
    GooAllocator* scope = goo_scope_begin();
    void* a = goo_memory_alloc(128);
    void* b = goo_memory_alloc(256);
    goo_memory_free(a, 128);
    printf("scope holds %zu block(s), %zu bytes at its end\n", goo_scope_live_count(scope), goo_scope_live_bytes(scope));
    (void)b;
    goo_scope_end(scope); /* b is freed here */

    /* A callback that watches every allocation, then the registry's report. */
    uint64_t id = goo_memory_add_callback(GOO_EVENT_ALLOC | GOO_EVENT_FREE, count_event, NULL);
    void* c = goo_memory_alloc(10);
    goo_memory_free(c, 10);
    goo_memory_remove_callback(id);
    printf("callback saw %d events\n\nregistry report:\n", events_seen);
    goo_memory_stats_report(stdout, GOO_REPORT_TEXT);
    arena->destroy(arena);

    goo_memory_cleanup(); /* reports leaks of tracked allocators, if any */
    return 0;
}
