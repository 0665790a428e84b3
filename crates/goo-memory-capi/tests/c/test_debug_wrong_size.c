/* Debug allocator (issue #20): a free or realloc naming the wrong size or alignment is reported
 * with both sites and refused (the block stays live and intact, the stats unchanged); the right
 * free then works. GOO_DEBUG_ABORT aborts. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdint.h>

#include "goo/runtime/debug.h"
#include "child.h"
#include "debug_report.h"

static GooAllocator* dbg;
static unsigned char* p;
static unsigned char* q;
static int alloc_line, aligned_line, free_line, realloc_line, align_free_line;

static void wrong_size_free(void* arg) {
    (void)arg;
    GOO_FREE_HERE(dbg, p, 32); free_line = __LINE__;
}

static void wrong_size_realloc(void* arg) {
    (void)arg;
    void* r = goo_memory_realloc_with(dbg, p, 50, 200); realloc_line = __LINE__;
    CHECK(r == NULL);
}

static void wrong_alignment_free(void* arg) {
    (void)arg;
    goo_memory_free_ex(dbg, q, 100, 32); align_free_line = __LINE__;
}

static void refused(void) {
    dbg = goo_debug_allocator_create(NULL, 0);
    CHECK(dbg != NULL);
    p = (unsigned char*)GOO_ALLOC_HERE(dbg, 64); alloc_line = __LINE__;
    CHECK(p != NULL);
    for (int i = 0; i < 64; i++) p[i] = (unsigned char)i;
    q = (unsigned char*)goo_memory_alloc_ex(dbg, 100, 64, 0); aligned_line = __LINE__;
    CHECK(q != NULL && (uintptr_t)q % 64 == 0);

    const char* out = capture_stderr(wrong_size_free, NULL);
    CHECK(strstr(out, "freed with the wrong size") != NULL);
    CHECK(strstr(out, "of 64 bytes (alignment 16) was freed as 32 bytes") != NULL);
    CHECK(strstr(out, "the block stays live") != NULL);
    CHECK(HAS_SITE(out, "allocated at", alloc_line));
    CHECK(HAS_SITE(out, "freed at", free_line));
    CHECK_EQ(goo_get_alloc_stats(dbg).allocation_count, 2);

    out = capture_stderr(wrong_size_realloc, NULL);
    CHECK(strstr(out, "reallocated with the wrong size") != NULL);
    CHECK(HAS_SITE(out, "allocated at", alloc_line));
    CHECK(HAS_SITE(out, "reallocated at", realloc_line));

    out = capture_stderr(wrong_alignment_free, NULL);
    CHECK(strstr(out, "freed with the wrong alignment") != NULL);
    CHECK(strstr(out, "(alignment 64) was freed as 100 bytes, alignment 32") != NULL);
    CHECK(HAS_SITE(out, "allocated at", aligned_line));
    CHECK(HAS_SITE(out, "freed at", align_free_line));

    CHECK_EQ(goo_debug_error_count(dbg), 3);
    GooAllocStats s = goo_get_alloc_stats(dbg);
    CHECK_EQ(s.allocation_count, 2);
    CHECK_EQ(s.total_frees, 0);
    CHECK_EQ(s.bytes_allocated, 164);
    for (int i = 0; i < 64; i++) CHECK_EQ(p[i], i);

    /* The right calls work. */
    p = (unsigned char*)goo_memory_realloc_with(dbg, p, 64, 128);
    CHECK(p != NULL);
    for (int i = 0; i < 64; i++) CHECK_EQ(p[i], i);
    goo_memory_free_with(dbg, p, 128);
    goo_memory_free_ex(dbg, q, 100, 64);
    CHECK_EQ(goo_debug_error_count(dbg), 3);
    CHECK_EQ(goo_debug_check(dbg), 0);
    CHECK_EQ(goo_get_alloc_stats(dbg).allocation_count, 0);
    goo_allocator_destroy(dbg);
}

/* Natural alignment (0) grows with the size: a resize from 4 to 100 bytes names alignment 16
 * for a block allocated at 4, and that is right. */
static void natural_alignment_resizes(void) {
    dbg = goo_debug_allocator_create(NULL, GOO_DEBUG_ABORT);
    CHECK(dbg != NULL);
    char* s = (char*)goo_memory_alloc_with(dbg, 4);
    CHECK(s != NULL);
    memcpy(s, "abc", 4);
    s = (char*)goo_memory_realloc_with(dbg, s, 4, 100);
    CHECK(s != NULL && strcmp(s, "abc") == 0);
    s = (char*)goo_memory_realloc_with(dbg, s, 100, 2);
    CHECK(s != NULL && s[0] == 'a');
    goo_memory_free_with(dbg, s, 2);
    CHECK_EQ(goo_debug_error_count(dbg), 0);
    CHECK_EQ(goo_get_alloc_stats(dbg).allocation_count, 0);
    goo_allocator_destroy(dbg);
}

static void aborting_wrong_size(void) {
    dbg = goo_debug_allocator_create(NULL, GOO_DEBUG_ABORT);
    CHECK(dbg != NULL);
    p = (unsigned char*)GOO_ALLOC_HERE(dbg, 64);
    CHECK(p != NULL);
    wrong_size_free(NULL);
    fprintf(stderr, "still running\n");
}

/* A refused resize is the misuse it is, not a lack of memory: it returns NULL and counts as a
 * failed request, but no RETRY or GC handler runs for it (a retry would repeat it); PANIC still
 * aborts, as its caller counts on never seeing NULL. */
static int out_of_memory_calls;
static void out_of_memory(void) { out_of_memory_calls++; }

static void quiet_realloc(void* arg) {
    void** r = arg;
    *r = goo_memory_realloc_with(dbg, p, 16, 64);
}

static void with_strategy(GooAllocStrategy strategy) {
    dbg = goo_debug_allocator_create(NULL, 0);
    CHECK(dbg != NULL);
    dbg->strategy = strategy;
    dbg->out_of_mem_fn = out_of_memory;
    p = goo_memory_alloc_with(dbg, 32);
    CHECK(p != NULL);
}

static void panic_on_misuse(void) {
    with_strategy(GOO_ALLOC_STRATEGY_PANIC);
    void* r = p;
    quiet_realloc(&r);
    fprintf(stderr, "still running\n");
}

static void refused_resize_runs_no_handler(void) {
    const GooAllocStrategy strategies[] = {GOO_ALLOC_STRATEGY_NULL, GOO_ALLOC_STRATEGY_RETRY, GOO_ALLOC_STRATEGY_GC};
    for (size_t i = 0; i < sizeof strategies / sizeof strategies[0]; i++) {
        with_strategy(strategies[i]);
        void* r = p;
        const char* out = capture_stderr(quiet_realloc, &r);
        CHECK(r == NULL);
        CHECK(strstr(out, "reallocated with the wrong size") != NULL);
        CHECK_EQ(goo_debug_error_count(dbg), 1);
        CHECK_EQ(out_of_memory_calls, 0);
        CHECK_EQ(goo_get_alloc_stats(dbg).failed_allocations, 1);
        CHECK_EQ(goo_get_alloc_stats(dbg).allocation_count, 1);
        goo_memory_free_with(dbg, p, 32);
        goo_allocator_destroy(dbg);
    }
    char out[8192];
    CHECK_EQ(in_child(panic_on_misuse, out, sizeof out), SIGABRT);
    CHECK(strstr(out, "reallocated with the wrong size") != NULL);
    CHECK(strstr(out, "a misused block, refused (reported above) [strategy PANIC]") != NULL);
    CHECK(strstr(out, "still running") == NULL);
}

int main(void) {
    refused();
    refused_resize_runs_no_handler();
    natural_alignment_resizes();
    char out[8192];
    CHECK_EQ(in_child(aborting_wrong_size, out, sizeof out), SIGABRT);
    CHECK(strstr(out, "freed with the wrong size") != NULL);
    CHECK(HAS_SITE(out, "freed at", free_line));
    CHECK(strstr(out, "aborting (GOO_DEBUG_ABORT)") != NULL);
    CHECK(strstr(out, "still running") == NULL);
    printf("test_debug_wrong_size: ok\n");
    return 0;
}
