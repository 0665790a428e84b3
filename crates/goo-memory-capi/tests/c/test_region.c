/* Regions through the C ABI: carving, large allocations, nested lifetimes, cleanups in reverse
 * order exactly once, stats per region and subtree, the report, misuse caught. */
#include <stdint.h>
#include <string.h>

#include "goo/runtime/memory.h"
#include "check.h"

static char order[64];
static int order_len;
static void record(void* arg) { order[order_len++] = *(const char*)arg; order[order_len] = 0; }

static void carving_and_large(void) {
    GooAllocator* sys = goo_system_allocator_create();
    GooAllocator* r = goo_region_allocator_create_ex(sys, 4096, false);
    for (int i = 0; i < 100; i++) CHECK(goo_memory_alloc_with(r, 100) != NULL);
    GooAllocStats s = goo_get_alloc_stats(r);
    CHECK_EQ(s.bytes_allocated, 10000);
    CHECK_EQ(s.bytes_reserved % 4096, 0); /* whole regions */
    CHECK(s.bytes_reserved >= 12288);
    /* larger than a region and not allowed: a clear failure */
    CHECK(goo_memory_alloc_with(r, 5000) == NULL);
    CHECK_EQ(goo_get_alloc_stats(r).failed_allocations, 1);
    goo_region_allocator_destroy(r);
    CHECK_EQ(goo_get_alloc_stats(sys).allocation_count, 0);

    GooAllocator* big = goo_region_allocator_create_ex(sys, 4096, true);
    void* small = goo_memory_alloc_with(big, 64);
    void* large = goo_memory_alloc_with(big, 100000);
    CHECK(small && large);
    memset(large, 1, 100000);
    size_t held = goo_get_alloc_stats(sys).bytes_allocated;
    goo_memory_free_with(big, large, 100000); /* back at once */
    CHECK(goo_get_alloc_stats(sys).bytes_allocated <= held - 100000);
    big->destroy(big);
    CHECK_EQ(goo_get_alloc_stats(sys).bytes_allocated, 0);
    sys->destroy(sys);
}

static void tree_and_cleanups(void) {
    GooAllocator* sys = goo_system_allocator_create();
    GooAllocator* root = goo_region_allocator_create_ex(sys, 1024, true);
    GooAllocator* a = goo_region_create_child(root, 0);
    GooAllocator* a1 = goo_region_create_child(a, 512);
    GooAllocator* b = goo_region_create_child(root, 2048);
    CHECK(a && a1 && b);
    CHECK(goo_region_set_name(root, "root"));
    CHECK(goo_region_set_name(a, "a"));
    CHECK(goo_region_set_name(a1, "a1"));
    CHECK(goo_region_set_name(b, "b"));
    static const char R1 = '1', R2 = '2', A = 'a', X = 'x', C = 'c', B = 'b';
    goo_region_add_cleanup(root, record, (void*)&R1);
    goo_region_add_cleanup(root, record, (void*)&R2);
    goo_region_add_cleanup(a, record, (void*)&A);
    uint64_t cancelled = goo_region_add_cleanup(a1, record, (void*)&X);
    uint64_t kept = goo_region_add_cleanup(a1, record, (void*)&C);
    uint64_t kept_b = goo_region_add_cleanup(b, record, (void*)&B);
    CHECK(cancelled != 0);
    /* Ids are unique in the process: one passed to the wrong region (a parent, a sibling)
     * cancels nothing there, and the cleanup stays registered where it was. */
    CHECK(kept != kept_b && kept != cancelled);
    CHECK(!goo_region_remove_cleanup(a, kept));
    CHECK(!goo_region_remove_cleanup(b, kept));
    CHECK(!goo_region_remove_cleanup(a1, kept_b));
    CHECK(goo_region_remove_cleanup(a1, cancelled));
    CHECK(!goo_region_remove_cleanup(a1, cancelled));
    CHECK(goo_memory_alloc_with(root, 10) && goo_memory_alloc_with(a, 20) && goo_memory_alloc_with(a1, 30) &&
          goo_memory_alloc_with(b, 40));
    GooAllocStats sub = goo_region_subtree_stats(root);
    CHECK_EQ(sub.bytes_allocated, 100);
    CHECK_EQ(sub.allocation_count, 4);
    CHECK_EQ(goo_region_stats(a).bytes_allocated, 20);
    CHECK_EQ(goo_region_subtree_stats(a).bytes_allocated, 50);

    char report[2048];
    size_t len = goo_region_report(root, report, sizeof report);
    CHECK(len > 0 && len < sizeof report);
    CHECK(strstr(report, "region \"root\"") != NULL);
    CHECK(strstr(report, "\n    region \"a1\"") != NULL); /* depth 2 indented */
    char tiny[8];
    CHECK_EQ(goo_region_report(root, tiny, sizeof tiny), len);
    CHECK_EQ(strlen(tiny), 7);

    /* reset: depth first (a1, a, b, then root), children stay alive and empty */
    CHECK(goo_region_allocator_reset(root));
    CHECK(strcmp(order, "cab21") == 0);
    CHECK_EQ(goo_region_subtree_stats(root).bytes_allocated, 0);
    CHECK(goo_memory_alloc_with(a1, 8) != NULL);
    /* cleanups ran exactly once: a second reset runs nothing */
    order_len = 0;
    order[0] = 0;
    CHECK(goo_region_allocator_reset(root));
    CHECK_EQ(order_len, 0);

    /* destroy a child: its subtree goes, the parent stays */
    goo_region_add_cleanup(a1, record, (void*)&C);
    goo_region_add_cleanup(a, record, (void*)&A);
    goo_region_allocator_destroy(a);
    CHECK(strcmp(order, "ca") == 0);
    goo_region_allocator_destroy(a);  /* twice: refused, nothing corrupted */
    CHECK(goo_region_create_child(a1, 0) == NULL); /* destroyed grandchild: refused */
    CHECK(!goo_region_allocator_reset(a1));
    CHECK_EQ(goo_region_add_cleanup(a, record, (void*)&A), 0);
    CHECK(goo_memory_alloc_with(b, 16) != NULL);
    len = goo_region_report(root, report, sizeof report);
    CHECK(strstr(report, "\"a\"") == NULL && strstr(report, "\"b\"") != NULL);
    /* a destroyed region's stats and report: refused (counted), zeros, an empty string */
    uint64_t refused_before = goo_region_refused_count();
    CHECK_EQ(goo_region_stats(a).total_allocations, 0);
    CHECK_EQ(goo_region_subtree_stats(a).total_allocations, 0);
    memcpy(report, "stale", 6);
    CHECK_EQ(goo_region_report(a, report, sizeof report), 0);
    CHECK(report[0] == '\0');
    CHECK_EQ(goo_region_refused_count(), refused_before + 3);

    /* destroying the root destroys the rest and gives all memory back */
    order_len = 0;
    order[0] = 0;
    goo_region_add_cleanup(b, record, (void*)&B);
    goo_region_add_cleanup(root, record, (void*)&R1);
    root->destroy(root);
    CHECK(strcmp(order, "b1") == 0);
    CHECK_EQ(goo_get_alloc_stats(sys).allocation_count, 0);
    CHECK_EQ(goo_get_alloc_stats(sys).bytes_allocated, 0);
    goo_region_allocator_destroy(sys); /* not a region: refused */
    sys->destroy(sys);
}

/* region.h: a region's room is region_size less its 32-byte header; past it, a region without
 * large allocations refuses. */
static void room_of_a_region(void) {
    GooAllocator* r = goo_region_allocator_create(4096, false);
    CHECK(r != NULL);
    CHECK(goo_memory_alloc_with(r, 4096 - 32) != NULL);
    GooAllocator* fresh = goo_region_allocator_create(4096, false);
    CHECK(fresh != NULL);
    CHECK(goo_memory_alloc_with(fresh, 4096 - 31) == NULL);
    CHECK_EQ(goo_get_alloc_stats(fresh).failed_allocations, 1);
    goo_region_allocator_destroy(fresh);
    goo_region_allocator_destroy(r);
}

/* Many large blocks, each in a dedicated chunk, freed one by one: each free gives its chunk
 * back at once (bytes_reserved falls by exactly the chunk: the block and the 32-byte header),
 * and costs the same however many the region holds. Each free used to walk every dedicated
 * chunk: 20,000 blocks took seconds to free. A small block freed while not the most recent
 * stays (its bytes come back at reset) and changes no reserved byte. */
#define MANY_LARGE 20000
#define LARGE_SIZE 5000
static void many_large_blocks(void) {
    GooAllocator* sys = goo_system_allocator_create();
    GooAllocator* r = goo_region_allocator_create_ex(sys, 4096, true);
    static void* blocks[MANY_LARGE];
    void* first = goo_memory_alloc_with(r, 16); /* a normal chunk, for the small blocks */
    CHECK(first != NULL);
    size_t normal = goo_get_alloc_stats(r).bytes_reserved;
    for (int i = 0; i < MANY_LARGE; i++) {
        blocks[i] = goo_memory_alloc_with(r, LARGE_SIZE);
        CHECK(blocks[i] != NULL);
    }
    CHECK_EQ(goo_get_alloc_stats(r).bytes_reserved, normal + (size_t)MANY_LARGE * (LARGE_SIZE + 32));
    CHECK_EQ(goo_get_alloc_stats(sys).allocation_count, MANY_LARGE + 1);
    /* the first half in allocation order (the oldest chunk each time), the rest newest first */
    for (int k = 0; k < MANY_LARGE; k++) {
        int i = k < MANY_LARGE / 2 ? k : MANY_LARGE - 1 - (k - MANY_LARGE / 2);
        if (k % 1000 == 0) {
            void* s1 = goo_memory_alloc_with(r, 16);
            void* s2 = goo_memory_alloc_with(r, 16);
            CHECK(s1 && s2);
            goo_memory_free_with(r, s1, 16); /* not the most recent: stays */
            goo_memory_free_with(r, s2, 16);
        }
        size_t before = goo_get_alloc_stats(r).bytes_reserved;
        goo_memory_free_with(r, blocks[i], LARGE_SIZE);
        CHECK_EQ(before - goo_get_alloc_stats(r).bytes_reserved, LARGE_SIZE + 32);
        CHECK_EQ(goo_get_alloc_stats(r).allocation_count, (size_t)(MANY_LARGE - k)); /* those left, and first */
    }
    CHECK_EQ(goo_get_alloc_stats(r).bytes_reserved, normal);
    CHECK_EQ(goo_get_alloc_stats(sys).allocation_count, 1);
    goo_region_allocator_destroy(r);
    CHECK_EQ(goo_get_alloc_stats(sys).allocation_count, 0);
    sys->destroy(sys);
}

int main(void) {
    room_of_a_region();
    carving_and_large();
    tree_and_cleanups();
    many_large_blocks();
    printf("test_region: ok\n");
    return 0;
}
