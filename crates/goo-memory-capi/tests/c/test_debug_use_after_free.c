/* Debug allocator (issue #20): a freed block holds 0xDD while in the quarantine (a read after
 * free sees it); a write after the free is reported with the allocation and free sites when the
 * block leaves the quarantine, or by goo_debug_check. GOO_DEBUG_ABORT aborts. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdlib.h>

#include "goo/runtime/debug.h"
#include "goo/runtime/scoped.h"
#include "goo/runtime/pool.h"
#include "goo/runtime/arena.h"
#include "goo/runtime/region.h"
#include "child.h"
#include "debug_report.h"

static GooAllocator* dbg;
static unsigned char* p;
static int alloc_line, free_line;

/* One line for the allocation and one for the free, here and in the child. */
static void alloc_p(void) {
    p = (unsigned char*)GOO_ALLOC_HERE(dbg, 64); alloc_line = __LINE__;
    CHECK(p != NULL);
}

static void free_p(void) {
    GOO_FREE_HERE(dbg, p, 64); free_line = __LINE__;
}

static void check_now(void* arg) {
    *(size_t*)arg = goo_debug_check(dbg);
}

/* Frees enough 64-byte blocks to push p out of a 256-byte quarantine. */
static void push_out(void* arg) {
    (void)arg;
    for (int i = 0; i < 5; i++) goo_memory_free_with(dbg, goo_memory_alloc_with(dbg, 64), 64);
}

static void reported(void) {
    CHECK(setenv("GOO_DEBUG_QUARANTINE", "256", 1) == 0);
    dbg = goo_debug_allocator_create(NULL, 0);
    CHECK(unsetenv("GOO_DEBUG_QUARANTINE") == 0);
    CHECK(dbg != NULL);

    alloc_p();
    for (int i = 0; i < 64; i++) CHECK_EQ(p[i], 0xAA); /* fresh memory's pattern */
    free_p();
    for (int i = 0; i < 64; i++) CHECK_EQ(p[i], 0xDD); /* a read after free sees the pattern */
    p[10] = 7;
    size_t found = 0;
    const char* out = capture_stderr(check_now, &found);
    CHECK_EQ(found, 1);
    CHECK(strstr(out, "use after free: the block") != NULL);
    CHECK(strstr(out, "of 64 bytes (alignment 16) written after it was freed (first changed byte at offset 10)") != NULL);
    CHECK(strstr(out, "found by goo_debug_check") != NULL);
    CHECK(HAS_SITE(out, "allocated at", alloc_line));
    CHECK(HAS_SITE(out, "freed at", free_line));
    CHECK_EQ(goo_debug_error_count(dbg), 1);
    /* Reported once, even when it leaves the quarantine. */
    CHECK(strcmp(capture_stderr(push_out, NULL), "") == 0);
    CHECK_EQ(goo_debug_error_count(dbg), 1);

    /* Found when it leaves the quarantine. */
    alloc_p();
    free_p();
    p[63] = 0;
    out = capture_stderr(push_out, NULL);
    CHECK(strstr(out, "written after it was freed (first changed byte at offset 63), found when it left the quarantine") != NULL);
    CHECK(HAS_SITE(out, "allocated at", alloc_line));
    CHECK(HAS_SITE(out, "freed at", free_line));
    CHECK_EQ(goo_debug_error_count(dbg), 2);
    CHECK_EQ(goo_debug_check(dbg), 0);
    CHECK_EQ(goo_get_alloc_stats(dbg).allocation_count, 0);
    goo_allocator_destroy(dbg);
}

/* A destroy of an allocator over a debug allocator frees its memory there: a write into that
 * memory afterwards names the destroy's caller as the free's site, whichever function or the
 * vtable made the destroy. */
static void destroys_name_their_caller(void) {
    for (int kind = 0; kind < 4; kind++) {
        dbg = goo_debug_allocator_create(NULL, 0);
        CHECK(dbg != NULL);
        GooAllocator* a = kind == 0   ? goo_arena_allocator_create_ex(dbg, 256, 0)
                          : kind == 1 ? goo_pool_allocator_create_ex(dbg, 32, 0, 4, 0)
                          : kind == 2 ? goo_arena_allocator_create_ex(dbg, 256, 0)
                                      : goo_scoped_allocator_create(dbg);
        CHECK(a != NULL);
        char* block = goo_memory_alloc_with(a, kind == 3 ? 10000 : 10);
        CHECK(block != NULL);
        int line = 0;
        switch (kind) {
        case 0: goo_arena_allocator_destroy(a); line = __LINE__; break;
        case 1: goo_pool_allocator_destroy(a); line = __LINE__; break;
        case 2: goo_allocator_destroy(a); line = __LINE__; break;
        default: a->destroy(a); line = __LINE__; break;
        }
        block[0] = 1; /* into the freed chunk: the check reports its free */
        size_t found = 0;
        const char* out = capture_stderr(check_now, &found);
        CHECK_EQ(found, 1);
        CHECK(HAS_SITE(out, "freed at", line));
        goo_allocator_destroy(dbg);
    }
}

static void aborting_use_after_free(void) {
    dbg = goo_debug_allocator_create(NULL, GOO_DEBUG_ABORT);
    CHECK(dbg != NULL);
    alloc_p();
    free_p();
    p[0] = 1;
    goo_debug_check(dbg);
    fprintf(stderr, "still running\n");
}

/* The parent reset directly (an arena, a pool, a region): the reset freed the debug
 * allocator's blocks, quarantined ones included. The parent hands their memory out again, and
 * the debug allocator neither reports the new block's writes as a use after free nor gives
 * the old block back into the new one (the pool handed out an object twice). */
static void parent_reset_under_the_debug_allocator(void) {
    for (int kind = 0; kind < 3; kind++) {
        GooAllocator* parent = kind == 0   ? goo_arena_allocator_create(0)
                               : kind == 1 ? goo_pool_allocator_create(128, 16)
                                           : goo_region_allocator_create(0, true);
        GooAllocator* d = goo_debug_allocator_create(parent, 0);
        CHECK(d != NULL);
        unsigned char* kept = (unsigned char*)goo_memory_alloc_with(d, 40);
        unsigned char* b = (unsigned char*)goo_memory_alloc_with(d, 40);
        CHECK(kept != NULL && b != NULL);
        goo_memory_free_with(d, b, 40); /* b in the quarantine */
        bool reset = kind == 0 ? goo_arena_allocator_reset(parent)
                     : kind == 1 ? goo_pool_allocator_reset(parent)
                                 : goo_region_allocator_reset(parent);
        CHECK(reset);
        unsigned char* c = (unsigned char*)goo_memory_alloc_with(d, 40);
        CHECK(c != NULL);
        /* Its next request saw the reset: `kept` is gone from its counts. */
        CHECK_EQ(goo_get_alloc_stats(d).allocation_count, 1);
        memset(c, 'C', 40);
        CHECK_EQ(goo_debug_check(d), 0);
        for (int i = 0; i < 5000; i++) { /* pushes whatever is quarantined out */
            void* x = goo_memory_alloc_with(d, 64);
            CHECK(x != NULL);
            goo_memory_free_with(d, x, 64);
        }
        CHECK_EQ(c[0], 'C');
        CHECK_EQ(c[39], 'C');
        goo_memory_free_with(d, c, 40);
        CHECK_EQ(goo_debug_error_count(d), 0);
        CHECK_EQ(goo_get_alloc_stats(d).allocation_count, 0);
        goo_allocator_destroy(d);
        goo_allocator_destroy(parent);
    }
}

int main(void) {
    parent_reset_under_the_debug_allocator();
    destroys_name_their_caller();
    reported();
    char out[8192];
    CHECK_EQ(in_child(aborting_use_after_free, out, sizeof out), SIGABRT);
    CHECK(strstr(out, "use after free: the block") != NULL);
    CHECK(HAS_SITE(out, "allocated at", alloc_line));
    CHECK(HAS_SITE(out, "freed at", free_line));
    CHECK(strstr(out, "aborting (GOO_DEBUG_ABORT)") != NULL);
    CHECK(strstr(out, "still running") == NULL);
    printf("test_debug_use_after_free: ok\n");
    return 0;
}
