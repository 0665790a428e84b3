/* Debug allocator (issue #20): frees and reallocs of pointers it never returned (the program's
 * own memory, malloc's, a pointer inside a live block) are reported with the sites and refused:
 * nothing is freed, the stats do not change; GOO_DEBUG_ABORT in the environment aborts. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdlib.h>

#include "goo/runtime/debug.h"
#include "child.h"
#include "debug_report.h"

static GooAllocator* dbg;
static char* block;
static int alloc_line, bad_line, inside_line, realloc_line;

static void foreign_frees(void* arg) {
    (void)arg;
    char local[32];
    GOO_FREE_HERE(dbg, local, sizeof local); bad_line = __LINE__;
    void* theirs = malloc(16);
    CHECK(theirs != NULL);
    goo_memory_free_with(dbg, theirs, 16);
    free(theirs);
}

static void inside_free(void* arg) {
    (void)arg;
    goo_memory_free_with(dbg, block + 8, 8); inside_line = __LINE__;
}

static void foreign_realloc(void* arg) {
    int* local = (int*)arg;
    void* p = goo_memory_realloc_with(dbg, local, sizeof *local, 64); realloc_line = __LINE__;
    CHECK(p == NULL);
}

static void refused(void) {
    dbg = goo_debug_allocator_create(NULL, 0);
    CHECK(dbg != NULL);
    block = (char*)GOO_ALLOC_HERE(dbg, 40); alloc_line = __LINE__;
    CHECK(block != NULL);
    memset(block, 7, 40);
    GooAllocStats before = goo_get_alloc_stats(dbg);

    const char* out = capture_stderr(foreign_frees, NULL);
    CHECK(strstr(out, "which this allocator never returned") != NULL);
    CHECK(HAS_SITE(out, "freed at", bad_line));
    CHECK(strstr(out, "free of ") != NULL);
    CHECK_EQ(goo_debug_error_count(dbg), 2);

    out = capture_stderr(inside_free, NULL);
    CHECK(strstr(out, "8 bytes inside the block") != NULL);
    CHECK(HAS_SITE(out, "allocated at", alloc_line));
    CHECK(HAS_SITE(out, "freed at", inside_line));
    CHECK_EQ(goo_debug_error_count(dbg), 3);

    int local = 5;
    out = capture_stderr(foreign_realloc, &local);
    CHECK(strstr(out, "realloc of ") != NULL);
    CHECK(strstr(out, "which this allocator never returned") != NULL);
    CHECK(HAS_SITE(out, "reallocated at", realloc_line));
    CHECK_EQ(local, 5);
    CHECK_EQ(goo_debug_error_count(dbg), 4);

    GooAllocStats after = goo_get_alloc_stats(dbg);
    CHECK_EQ(after.allocation_count, before.allocation_count);
    CHECK_EQ(after.total_frees, before.total_frees);
    CHECK_EQ(after.bytes_allocated, before.bytes_allocated);
    for (int i = 0; i < 40; i++) CHECK_EQ(block[i], 7);
    CHECK_EQ(goo_debug_check(dbg), 0);
    goo_memory_free_with(dbg, block, 40);
    CHECK_EQ(goo_debug_error_count(dbg), 4);
    CHECK_EQ(goo_get_alloc_stats(dbg).allocation_count, 0);
    goo_allocator_destroy(dbg);
}

static void aborting_bad_free(void) {
    CHECK(setenv("GOO_DEBUG_ABORT", "1", 1) == 0);
    dbg = goo_debug_allocator_create(NULL, 0);
    CHECK(dbg != NULL);
    foreign_frees(NULL);
    fprintf(stderr, "still running\n");
}

int main(void) {
    refused();
    char out[8192];
    CHECK_EQ(in_child(aborting_bad_free, out, sizeof out), SIGABRT);
    CHECK(strstr(out, "which this allocator never returned") != NULL);
    CHECK(HAS_SITE(out, "freed at", bad_line));
    CHECK(strstr(out, "aborting (GOO_DEBUG_ABORT)") != NULL);
    CHECK(strstr(out, "still running") == NULL);
    printf("test_debug_bad_free: ok\n");
    return 0;
}
