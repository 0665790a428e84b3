/* Debug allocator (issue #20): writes past the end or before the start of a block land in its
 * guards and are reported with the block's site: by goo_debug_check (which counts the damaged
 * blocks, reporting each once), at the free (with the free's site) and at a realloc (the block
 * is still resized); a damaged block stays damaged in the quarantine. GOO_DEBUG_ABORT aborts. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>

#include "goo/runtime/debug.h"
#include "child.h"
#include "debug_report.h"

static GooAllocator* dbg;
static char* p;
static char* q;
static int p_line, q_line, free_line, realloc_line;

/* One line for q's allocation, here and in the child. */
static void alloc_q(void) {
    q = (char*)GOO_ALLOC_HERE(dbg, 24); q_line = __LINE__;
    CHECK(q != NULL);
}

static void check_now(void* arg) {
    *(size_t*)arg = goo_debug_check(dbg);
}

static void free_q(void* arg) {
    (void)arg;
    GOO_FREE_HERE(dbg, q, 24); free_line = __LINE__;
}

static void realloc_p(void* arg) {
    (void)arg;
    p = (char*)goo_memory_realloc_with(dbg, p, 20, 40); realloc_line = __LINE__;
}

static void reported(void) {
    dbg = goo_debug_allocator_create(NULL, 0);
    CHECK(dbg != NULL);
    p = (char*)GOO_ALLOC_HERE(dbg, 20); p_line = __LINE__;
    CHECK(p != NULL);
    alloc_q();
    size_t found = 99;
    CHECK(strcmp(capture_stderr(check_now, &found), "") == 0);
    CHECK_EQ(found, 0);

    memset(p, 'x', 20);
    p[20] = 'y';
    p[22] = 'y'; /* inside the padding up to 16 bytes: still a guard */
    const char* out = capture_stderr(check_now, &found);
    CHECK_EQ(found, 1);
    CHECK(strstr(out, "of 20 bytes (alignment 16) has bytes written past its end (up to 3 bytes after it)") != NULL);
    CHECK(strstr(out, "found by goo_debug_check") != NULL);
    CHECK(HAS_SITE(out, "allocated at", p_line));
    CHECK_EQ(goo_debug_error_count(dbg), 1);
    /* Found again, not reported again. */
    out = capture_stderr(check_now, &found);
    CHECK_EQ(found, 1);
    CHECK(strcmp(out, "") == 0);
    CHECK_EQ(goo_debug_error_count(dbg), 1);

    q[-3] = 0;
    out = capture_stderr(free_q, NULL);
    CHECK(strstr(out, "has bytes written before its start (up to 3 bytes before it), found when it was freed") != NULL);
    CHECK(HAS_SITE(out, "allocated at", q_line));
    CHECK(HAS_SITE(out, "freed at", free_line));
    CHECK_EQ(goo_debug_error_count(dbg), 2);
    CHECK_EQ(goo_get_alloc_stats(dbg).allocation_count, 1); /* the free still happened */

    /* A realloc of the damaged block: reported once (already), and still resized. */
    out = capture_stderr(realloc_p, NULL);
    CHECK(strcmp(out, "") == 0);
    CHECK(p != NULL);
    for (int i = 0; i < 20; i++) CHECK_EQ(p[i], 'x');
    /* Both damaged blocks are in the quarantine now: still found, not reported again. */
    out = capture_stderr(check_now, &found);
    CHECK_EQ(found, 2);
    CHECK(strcmp(out, "") == 0);
    goo_memory_free_with(dbg, p, 40);
    CHECK_EQ(goo_debug_error_count(dbg), 2);
    CHECK_EQ(goo_get_alloc_stats(dbg).allocation_count, 0);
    goo_allocator_destroy(dbg);
}

static void aborting_overflow(void) {
    dbg = goo_debug_allocator_create(NULL, GOO_DEBUG_ABORT);
    CHECK(dbg != NULL);
    alloc_q();
    q[24] = 1;
    free_q(NULL);
    fprintf(stderr, "still running\n");
}

int main(void) {
    reported();
    char out[8192];
    CHECK_EQ(in_child(aborting_overflow, out, sizeof out), SIGABRT);
    CHECK(strstr(out, "has bytes written past its end (up to 1 bytes after it), found when it was freed") != NULL);
    CHECK(HAS_SITE(out, "allocated at", q_line));
    CHECK(HAS_SITE(out, "freed at", free_line));
    CHECK(strstr(out, "aborting (GOO_DEBUG_ABORT)") != NULL);
    CHECK(strstr(out, "still running") == NULL);
    printf("test_debug_overflow: ok\n");
    return 0;
}
