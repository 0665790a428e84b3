/* The arena through the C ABI: bump allocation, free/realloc of the last block, reset keeping
 * one chunk, checkpoints (nested, stale, invalidated), limits, alignment, stats; the temporary
 * arena cannot be destroyed. */
#include <stdint.h>
#include <string.h>

#include "goo/runtime/memory.h"
#include "check.h"

static void basics(void) {
    GooAllocator* arena = goo_arena_allocator_create(1024);
    CHECK(arena != NULL);
    char* a = (char*)goo_memory_alloc_with(arena, 100);
    char* b = (char*)goo_memory_alloc_with(arena, 100);
    CHECK(a && b && b >= a + 100);
    memset(a, 1, 100);
    memset(b, 2, 100);
    /* free of the most recent block gives its bytes back: the next block reuses them */
    goo_memory_free_with(arena, b, 100);
    char* c = (char*)goo_memory_alloc_with(arena, 50);
    CHECK(c == b);
    /* realloc of the most recent block grows in place */
    char* c2 = (char*)goo_memory_realloc_with(arena, c, 50, 300);
    CHECK(c2 == c);
    /* realloc of an older block moves and keeps the contents */
    char* a2 = (char*)goo_memory_realloc_with(arena, a, 100, 200);
    CHECK(a2 != a);
    for (int i = 0; i < 100; i++) CHECK_EQ(a2[i], 1);
    /* other frees are accepted and counted */
    goo_memory_free_with(arena, c2, 300);
    GooAllocStats s = goo_get_alloc_stats(arena);
    CHECK_EQ(s.bytes_allocated, 200);
    CHECK_EQ(s.allocation_count, 1);
    CHECK(s.bytes_reserved >= 1024);
    /* alignment: everything up to the page size and beyond */
    for (size_t align = 1; align <= 65536; align *= 2) {
        void* p = goo_memory_alloc_ex(arena, 24, align, GOO_ALLOC_ZERO);
        CHECK(p != NULL);
        CHECK(((uintptr_t)p % align) == 0);
        CHECK_EQ(((unsigned char*)p)[23], 0);
    }
    /* a block larger than a chunk gets a dedicated chunk */
    void* big = goo_memory_alloc_with(arena, 1 << 20);
    CHECK(big != NULL);
    memset(big, 3, 1 << 20);
    size_t chunks = goo_arena_allocator_chunk_count(arena);
    CHECK(chunks >= 2);
    /* ... which goes back to the parent as soon as the block is freed */
    size_t held = goo_get_alloc_stats(arena).bytes_reserved;
    goo_memory_free_with(arena, big, 1 << 20);
    CHECK_EQ(goo_arena_allocator_chunk_count(arena), chunks - 1);
    CHECK(goo_get_alloc_stats(arena).bytes_reserved < held - (1 << 20) + 1);
    big = goo_memory_alloc_with(arena, 1 << 20);
    memset(big, 3, 1 << 20);
    CHECK(goo_arena_allocator_reset(arena));
    CHECK_EQ(goo_arena_allocator_chunk_count(arena), 1);
    s = goo_get_alloc_stats(arena);
    CHECK_EQ(s.bytes_allocated, 0);
    CHECK_EQ(s.allocation_count, 0);
    CHECK_EQ(s.total_allocations, s.total_frees);
    /* the kept chunk is the largest: a reused arena stops calling its parent */
    size_t reserved = s.bytes_reserved;
    CHECK(reserved >= (1 << 20));
    for (int i = 0; i < 1000; i++) CHECK(goo_memory_alloc_with(arena, 512) != NULL);
    CHECK_EQ(goo_get_alloc_stats(arena).bytes_reserved, reserved);
    arena->destroy(arena);
}

static void checkpoints(void) {
    GooAllocator* sys = goo_system_allocator_create();
    GooAllocator* arena = goo_arena_allocator_create_ex(sys, 256, 0);
    void* keep = goo_memory_alloc_with(arena, 64);
    memset(keep, 7, 64);
    GooArenaMark outer = goo_arena_mark(arena);
    goo_memory_alloc_with(arena, 100);
    GooArenaMark inner = goo_arena_mark(arena);
    for (int i = 0; i < 100; i++) goo_memory_alloc_with(arena, 200); /* new chunks */
    size_t chunks_before = goo_arena_allocator_chunk_count(arena);
    CHECK(chunks_before > 2);
    CHECK(goo_arena_rewind(arena, inner));
    CHECK(goo_arena_allocator_chunk_count(arena) < chunks_before);
    GooAllocStats s = goo_get_alloc_stats(arena);
    CHECK_EQ(s.allocation_count, 2);
    CHECK_EQ(s.bytes_allocated, 164);
    CHECK(goo_arena_rewind(arena, outer));
    CHECK_EQ(goo_get_alloc_stats(arena).allocation_count, 1);
    CHECK_EQ(((unsigned char*)keep)[63], 7);
    /* the inner mark was invalidated by the rewind to the outer one */
    goo_memory_alloc_with(arena, 8);
    CHECK(!goo_arena_rewind(arena, inner));
    /* a mark from before a reset is refused, not obeyed */
    GooArenaMark stale = goo_arena_mark(arena);
    goo_arena_allocator_reset(arena);
    CHECK(!goo_arena_rewind(arena, stale));
    /* a mark of a non-arena, and rewinding a non-arena */
    GooArenaMark bogus = goo_arena_mark(sys);
    CHECK(!goo_arena_rewind(arena, bogus));
    CHECK(!goo_arena_rewind(sys, outer));
    CHECK(!goo_arena_allocator_reset(sys));
    goo_arena_allocator_destroy(sys); /* not an arena: ignored */
    /* destroy returns every chunk to the parent */
    goo_arena_allocator_destroy(arena);
    s = goo_get_alloc_stats(sys);
    CHECK_EQ(s.allocation_count, 0);
    CHECK_EQ(s.bytes_allocated, 0);
    sys->destroy(sys);
}

/* Two marks taken after a mark a rewind returns to are invalidated for good: however far the
 * arena grows again (past their positions, into new chunks), rewinding to either is refused,
 * with a message, and changes nothing. */
static void marks_invalidated_by_an_earlier_rewind(void) {
    GooAllocator* arena = goo_arena_allocator_create(1024);
    GooArenaMark first = goo_arena_mark(arena);
    goo_memory_alloc_with(arena, 100);
    GooArenaMark second = goo_arena_mark(arena);
    goo_memory_alloc_with(arena, 100);
    GooArenaMark third = goo_arena_mark(arena);
    goo_memory_alloc_with(arena, 100);
    CHECK(goo_arena_rewind(arena, first));
    const size_t sizes[] = {400, 900, 5000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        CHECK(goo_memory_alloc_with(arena, sizes[i]) != NULL);
        GooAllocStats before = goo_get_alloc_stats(arena);
        size_t chunks = goo_arena_allocator_chunk_count(arena);
        CHECK(!goo_arena_rewind(arena, third));
        CHECK(!goo_arena_rewind(arena, second));
        CHECK_EQ(goo_get_alloc_stats(arena).allocation_count, before.allocation_count);
        CHECK_EQ(goo_get_alloc_stats(arena).bytes_allocated, before.bytes_allocated);
        CHECK_EQ(goo_arena_allocator_chunk_count(arena), chunks);
    }
    CHECK(goo_arena_rewind(arena, first)); /* the mark rewound to stays valid */
    CHECK_EQ(goo_get_alloc_stats(arena).allocation_count, 0);
    goo_arena_allocator_destroy(arena);
}

/* A mark names its arena: another arena's mark is refused and changes nothing, even one taken
 * at the same position (an empty arena's start, which an arena's own mark there also has). */
static void marks_of_another_arena_are_refused(void) {
    GooAllocator* a = goo_arena_allocator_create(256);
    GooAllocator* b = goo_arena_allocator_create(256);
    GooArenaMark a_start = goo_arena_mark(a);
    char* p = goo_memory_alloc_with(a, 100);
    CHECK(p != NULL);
    memset(p, 7, 100);
    GooArenaMark b_start = goo_arena_mark(b);
    GooArenaMark temp_start = goo_temp_mark();
    CHECK(!goo_arena_rewind(a, b_start));
    CHECK(!goo_arena_rewind(a, temp_start));
    CHECK_EQ(goo_get_alloc_stats(a).allocation_count, 1);
    char* q = goo_memory_alloc_with(a, 100);
    CHECK(q != NULL && q != p && p[0] == 7);
    goo_memory_alloc_with(b, 50);
    CHECK(!goo_arena_rewind(b, a_start));
    CHECK_EQ(goo_get_alloc_stats(b).allocation_count, 1);
    CHECK(goo_arena_rewind(a, a_start)); /* its own mark still works */
    CHECK_EQ(goo_get_alloc_stats(a).allocation_count, 0);
    goo_arena_allocator_destroy(a);
    goo_arena_allocator_destroy(b);
}

/* The temporary arena is the library's: destroying it is refused (it stays usable). */
static void temp_arena_is_not_destroyed(void) {
    GooAllocator* temp = goo_temp_allocator();
    void* p = goo_temp_alloc(32);
    CHECK(p != NULL);
    goo_arena_allocator_destroy(temp);
    goo_allocator_destroy(temp);
    temp->destroy(temp);
    CHECK(goo_temp_allocator() == temp);
    CHECK_EQ(goo_get_alloc_stats(temp).allocation_count, 1);
    memset(p, 1, 32);
    CHECK(goo_temp_alloc(32) != NULL);
    goo_temp_reset();
}

static int oom_calls;
static void on_oom(void) { oom_calls++; }

static void limits_and_bad_input(void) {
    GooAllocator* arena = goo_arena_allocator_create_ex(NULL, 1024, 8192);
    arena->strategy = GOO_ALLOC_STRATEGY_RETRY;
    arena->out_of_mem_fn = on_oom;
    size_t ok = 0;
    while (goo_memory_alloc_with(arena, 1000) != NULL) ok++;
    CHECK(ok >= 4 && ok <= 8);
    CHECK_EQ(oom_calls, 3);
    GooAllocStats s = goo_get_alloc_stats(arena);
    CHECK_EQ(s.failed_allocations, 1);
    CHECK(s.bytes_reserved <= 8192);
    arena->strategy = GOO_ALLOC_STRATEGY_NULL;
    CHECK(goo_memory_alloc_with(arena, SIZE_MAX) == NULL);
    CHECK(goo_memory_alloc_ex(arena, 8, 12, 0) == NULL);
    CHECK(goo_memory_alloc_array(arena, SIZE_MAX / 8, 16, 0, 0) == NULL);
    CHECK_EQ(goo_get_alloc_stats(arena).failed_allocations, 4);
    /* still usable after a reset */
    goo_arena_allocator_reset(arena);
    CHECK(goo_memory_alloc_with(arena, 1000) != NULL);
    goo_arena_allocator_destroy(arena);
}

int main(void) {
    basics();
    checkpoints();
    marks_invalidated_by_an_earlier_rewind();
    marks_of_another_arena_are_refused();
    temp_arena_is_not_destroyed();
    limits_and_bad_input();
    printf("test_arena: ok\n");
    return 0;
}
