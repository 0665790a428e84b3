/* Debug allocator (issue #20): double frees, in the quarantine and after it, with the three
 * sites (allocated, freed, freed again), given with GOO_ALLOC_HERE / GOO_FREE_HERE or found as
 * return addresses; the second free is refused (stats unchanged); GOO_DEBUG_ABORT aborts. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdlib.h>

#include "goo/runtime/debug.h"
#include "child.h"
#include "debug_report.h"

static GooAllocator* dbg;
static int alloc_line, free_line, again_line;

static void free_twice_here(void* arg) {
    (void)arg;
    void* p = GOO_ALLOC_HERE(dbg, 48); alloc_line = __LINE__;
    CHECK(p != NULL);
    GOO_FREE_HERE(dbg, p, 48); free_line = __LINE__;
    GOO_FREE_HERE(dbg, p, 48); again_line = __LINE__;
}

/* Plain calls: the sites are the return addresses, symbolized from this program's debug info. */
static void free_twice_plain(void* arg) {
    (void)arg;
    void* p = goo_memory_alloc_with(dbg, 24); alloc_line = __LINE__;
    CHECK(p != NULL);
    goo_memory_free_with(dbg, p, 24); free_line = __LINE__;
    goo_memory_free_with(dbg, p, 24); again_line = __LINE__;
}

static void sites_named(void) {
    dbg = goo_debug_allocator_create(NULL, 0);
    CHECK(dbg != NULL);
    CHECK(goo_allocator_is_debug(dbg));
    const char* out = capture_stderr(free_twice_here, NULL);
    CHECK(strstr(out, "double free of the block") != NULL);
    CHECK(HAS_SITE(out, "allocated at", alloc_line));
    CHECK(HAS_SITE(out, "freed at", free_line));
    CHECK(HAS_SITE(out, "freed again at", again_line));
    CHECK_EQ(goo_debug_error_count(dbg), 1);
    GooAllocStats s = goo_get_alloc_stats(dbg);
    CHECK_EQ(s.total_allocations, 1);
    CHECK_EQ(s.total_frees, 1); /* the second free was refused */
    CHECK_EQ(s.allocation_count, 0);

    out = capture_stderr(free_twice_plain, NULL);
    CHECK(strstr(out, "double free of the block") != NULL);
    CHECK(HAS_SITE(out, "allocated at", alloc_line));
    CHECK(HAS_SITE(out, "freed at", free_line));
    CHECK(HAS_SITE(out, "freed again at", again_line));
    CHECK(strstr(out, "free_twice_plain") != NULL); /* the function, symbolized */
    CHECK_EQ(goo_debug_error_count(dbg), 2);
    CHECK_EQ(goo_debug_check(dbg), 0);
    goo_allocator_destroy(dbg);
}

/* A quarantine of 0 bytes gives each block back at once; the record of its sites remains. */
static void after_the_quarantine(void) {
    CHECK(setenv("GOO_DEBUG_QUARANTINE", "0", 1) == 0);
    dbg = goo_debug_allocator_create(NULL, 0);
    CHECK(unsetenv("GOO_DEBUG_QUARANTINE") == 0);
    CHECK(dbg != NULL);
    const char* out = capture_stderr(free_twice_here, NULL);
    CHECK(strstr(out, "double free of the block") != NULL);
    CHECK(strstr(out, "which has left the quarantine since") != NULL);
    CHECK(HAS_SITE(out, "allocated at", alloc_line));
    CHECK(HAS_SITE(out, "freed at", free_line));
    CHECK(HAS_SITE(out, "freed again at", again_line));
    CHECK_EQ(goo_debug_error_count(dbg), 1);
    CHECK_EQ(goo_get_alloc_stats(dbg).total_frees, 1);
    goo_allocator_destroy(dbg);
}

/* An empty GOO_DEBUG_QUARANTINE is unset, as the other knobs' empty values are: no message. */
static void make_with_an_empty_quarantine_value(void* arg) {
    *(GooAllocator**)arg = goo_debug_allocator_create(NULL, 0);
}

static void an_empty_quarantine_value(void) {
    CHECK(setenv("GOO_DEBUG_QUARANTINE", "", 1) == 0);
    GooAllocator* d = NULL;
    const char* out = capture_stderr(make_with_an_empty_quarantine_value, &d);
    CHECK(unsetenv("GOO_DEBUG_QUARANTINE") == 0);
    CHECK(d != NULL);
    CHECK(strcmp(out, "") == 0);
    goo_allocator_destroy(d);
}

static void aborting_double_free(void) {
    dbg = goo_debug_allocator_create(NULL, GOO_DEBUG_ABORT);
    CHECK(dbg != NULL);
    free_twice_here(NULL);
    fprintf(stderr, "still running\n");
}

static void aborts(void) {
    char out[8192];
    CHECK_EQ(in_child(aborting_double_free, out, sizeof out), SIGABRT);
    CHECK(strstr(out, "double free of the block") != NULL);
    CHECK(HAS_SITE(out, "freed again at", again_line)); /* the same lines as before */
    CHECK(strstr(out, "aborting (GOO_DEBUG_ABORT)") != NULL);
    CHECK(strstr(out, "still running") == NULL);
}

int main(void) {
    an_empty_quarantine_value();
    sites_named();
    after_the_quarantine();
    aborts();
    printf("test_debug_double_free: ok\n");
    return 0;
}
